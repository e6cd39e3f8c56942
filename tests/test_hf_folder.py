"""`--model hf:DIR`: tiny transformers models built from a config in the test and saved with
save_pretrained, loaded as transformers itself loads them, from local folders only."""

from __future__ import annotations

import json
import socket
import sys

import pytest
import torch
from safetensors.torch import load_file

import dsl_compress as dc
from cli_runner import run
from hf_models import save_llama
from output_files import read_tensors
from dsl_compress.io.checkpoint import Checkpoint, open_checkpoint
from dsl_compress.io.loading import load_model, load_weights
from dsl_compress.io.manifest import build_manifest

transformers = pytest.importorskip("transformers")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
RULES = "prune Linear.weight sparse_ratio=0.5 granularity=out_channel\n"


def llama(folder, dtype=torch.float32, shard: int | None = None):
    return save_llama(folder, dtype, shard)


def bert(folder):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    model = transformers.BertForMaskedLM(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return model


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: hf: never downloads."""

    def refuse(*args, **kwargs):
        pytest.fail("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


@pytest.mark.parametrize("dtype", DTYPES)
def test_llama_loads_as_from_pretrained_does(tmp_path, dtype, no_network):
    saved = llama(tmp_path / "llama", dtype, shard=3000)
    assert (tmp_path / "llama" / "model.safetensors.index.json").is_file()
    model = load_model(f"hf:{tmp_path / 'llama'}")
    assert type(model) is transformers.LlamaForCausalLM and not model.training
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert all(not t.is_meta and t.dtype == dtype for t in model.parameters())
    assert not any(b.is_meta for b in model.buffers())
    tokens = torch.randint(0, 64, (1, 6))
    assert torch.equal(logits(model, tokens), logits(saved, tokens))


def test_bert_masked_lm_loads_its_tied_decoder(tmp_path, no_network):
    saved = bert(tmp_path / "bert")
    with open_checkpoint(tmp_path / "bert") as ckpt:  # the tie's second name is not stored
        assert "cls.predictions.decoder.weight" not in ckpt
    model = load_model(f"hf:{tmp_path / 'bert'}")
    decoder = model.cls.predictions.decoder
    assert decoder.weight is model.bert.embeddings.word_embeddings.weight
    tokens = torch.randint(0, 50, (1, 5))
    assert torch.equal(logits(model, tokens), logits(saved, tokens))


def test_the_meta_skeleton_has_no_weights_but_real_buffers(tmp_path):
    llama(tmp_path / "llama")
    model = load_model(f"hf:{tmp_path / 'llama'}", meta=True)
    assert all(p.is_meta for p in model.parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert all(not b.is_meta for b in model.buffers())  # rotary inv_freq is computed, not loaded


# ----- the command ------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.rules").write_text(RULES)
    llama(tmp_path / "llama", shard=3000)
    return tmp_path


def test_apply_on_an_hf_folder(folder, capsys, no_network):
    result = run(capsys, "apply", "a.rules", "--model", "hf:llama", "--out", "out")
    assert result.code == 0, result.err
    masks = load_file(str(folder / "out" / "masks.safetensors"))
    assert "model.layers.0.mlp.up_proj.weight" in masks
    assert masks["model.layers.0.mlp.up_proj.weight"].float().mean() == 0.5


def test_lint_and_compile_on_an_hf_folder_read_no_weight(folder, capsys, monkeypatch):
    monkeypatch.setattr(Checkpoint, "read", lambda *a: pytest.fail("a tensor was read"))
    result = run(capsys, "lint", "a.rules", "--model", "hf:llama")
    assert result.code == 1 and "T405" in result.out and "error" not in result.out
    result = run(capsys, "compile", "a.rules", "--model", "hf:llama", "--format", "plan")
    assert result.code == 0 and "model.layers.1.self_attn.q_proj" in result.out


def test_manifest_of_an_hf_folder_reads_no_tensor(folder, capsys, monkeypatch):
    monkeypatch.setattr(Checkpoint, "read", lambda *a: pytest.fail("a tensor was read"))
    result = run(capsys, "manifest", "--model", "hf:llama", "-o", "m.json")
    assert result.code == 0, result.err
    written = json.loads((folder / "m.json").read_text())
    expected = build_manifest(transformers.LlamaForCausalLM.from_pretrained(folder / "llama"))
    assert written == json.loads(json.dumps(expected))


def test_manifest_of_an_hf_folder_checks_its_headers(folder, capsys):
    index = folder / "llama" / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.extra"] = data["weight_map"]["model.norm.weight"]
    index.write_text(json.dumps(data))
    result = run(capsys, "manifest", "--model", "hf:llama", "-o", "m.json")
    assert result.code == 2 and "error[L102]" in result.err and "model.extra" in result.err


def test_weights_given_replace_the_folders_own(folder, capsys):
    other = llama(folder / "other")
    (folder / "llama" / "model.safetensors.index.json").unlink()  # the folder's own: unreadable
    args = ("--model", "hf:llama", "--weights", "other/model.safetensors")
    result = run(capsys, "apply", "a.rules", *args, "--dry-run")
    assert result.code == 0, result.err
    model = load_model("hf:llama", meta=True)
    load_weights(model, folder / "other")
    assert torch.equal(model.lm_head.weight, other.lm_head.weight)


# ----- refusals ---------------------------------------------------------------------------------


def l101(spec: str) -> dc.Diagnostic:
    with pytest.raises(dc.CompressionError) as info:
        load_model(spec)
    (diag,) = info.value.diagnostics
    assert diag.code == "L101" and diag.subject == spec
    return diag


def test_without_transformers_one_line_says_how_to_install(folder, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert "pip install 'dsl-compress[hf]'" in l101("hf:llama").message
    result = run(capsys, "lint", "a.rules", "--model", "hf:llama")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "error[L101]" in result.err and "pip install 'dsl-compress[hf]'" in result.err


def test_a_hub_id_is_refused_and_nothing_is_downloaded(folder, capsys, no_network):
    diag = l101("hf:meta-llama/Llama-3-8B")
    assert "no local folder 'meta-llama/Llama-3-8B'" in diag.message
    assert "never downloads" in diag.message and "--local-dir" in diag.hint
    result = run(capsys, "apply", "a.rules", "--model", "hf:org/name", "--out", "out")
    assert result.code == 2 and "error[L101]" in result.err and not (folder / "out").exists()


def test_a_file_is_not_a_model_folder(folder):
    assert "is a file, not a model folder" in l101("hf:a.rules").message


def test_a_folder_without_config_json(folder):
    (folder / "llama" / "config.json").unlink()
    diag = l101("hf:llama")
    assert "'llama' has no config.json" in diag.message and "save_pretrained" in diag.hint


@pytest.mark.parametrize(
    "architectures, fragment, hint",
    [
        (None, "names no architectures", '"architectures": ["LlamaForCausalLM"]'),
        ([], "names no architectures", "LlamaForCausalLM"),
        (["LlamaForCausalLMM"], "'LlamaForCausalLMM', which transformers", "LlamaForCausalLM"),
        (["AutoConfig"], "'AutoConfig', which transformers", None),
    ],
)
def test_config_architectures_must_name_a_model_class(folder, architectures, fragment, hint):
    config = folder / "llama" / "config.json"
    data = json.loads(config.read_text())
    data.pop("architectures")
    if architectures is not None:
        data["architectures"] = architectures
    config.write_text(json.dumps(data))
    diag = l101("hf:llama")
    assert fragment in diag.message and "config.json" in diag.message
    assert hint is None or hint in (diag.hint or "")


def test_a_config_transformers_cannot_read(folder):
    (folder / "llama" / "config.json").write_text('{"model_type": "no-such-model"}')
    diag = l101("hf:llama")
    assert "reading 'llama/config.json' raised" in diag.message


def test_apply_never_writes_over_the_hf_folder_it_reads(folder, capsys):
    before = sorted(p.name for p in (folder / "llama").iterdir())
    args = ("apply", "a.rules", "--model", "hf:llama", "--out", "llama", "--overwrite")
    result = run(capsys, *args)
    assert result.code == 2 and "error[L105]" in result.err
    assert sorted(p.name for p in (folder / "llama").iterdir()) == before


def test_apply_stream_on_an_hf_folder_equals_the_in_memory_apply(folder, capsys, no_network):
    (folder / "w8.rules").write_text(
        RULES + "quantize lm_head.weight quant_dtype=int8 granularity=out_channel\n"
    )
    memory = run(capsys, "apply", "w8.rules", "--model", "hf:llama", "--out", "memory")
    assert memory.code == 0, memory.err
    args = ("--out", "streamed", "--stream", "--max-shard-size", "4KB")
    streamed = run(capsys, "apply", "w8.rules", "--model", "hf:llama", *args)
    assert streamed.code == 0, streamed.err
    assert streamed.out == memory.out
    for prefix in ("model", "masks", "quant"):
        left = read_tensors(folder / "memory", prefix)
        right = read_tensors(folder / "streamed", prefix)
        assert left.keys() == right.keys()
        assert all(torch.equal(left[k], right[k]) for k in left), prefix
    model = read_tensors(folder / "streamed", "model")
    # the tie of lm_head and the embedding holds in what is written, as in memory
    assert torch.equal(model["lm_head.weight"], model["model.embed_tokens.weight"])
