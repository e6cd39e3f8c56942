"""`apply --format compressed-tensors`: a tiny Llama built from a config, exported by the command and
read back by compressed-tensors' own ModelCompressor and by transformers' from_pretrained, which
must give back our finalized weights bit for bit (and, in fp32, our fake-quantized logits)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import dsl_compress as dc
from cli_runner import run
from hf_models import save_llama
from dsl_compress.engine.stream import StreamRun
from dsl_compress.io.hf import hf_skeleton

transformers = pytest.importorskip("transformers")
ct = pytest.importorskip("compressed_tensors")
from compressed_tensors.compressors import ModelCompressor  # noqa: E402
from compressed_tensors.quantization import (  # noqa: E402
    QuantizationConfig,
    apply_quantization_config,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# Every case the issue names: int4 group, int8 channel, int2/int3 channel, an asymmetric uint
# group setting, and pruning (as zeros inside the quantized weights).
CASES = {
    "int4_group": "quantize **.{q,k,v,o}_proj.weight quant_dtype=int4 granularity=[1, 32];\n",
    "int8_channel": "quantize Linear.weight quant_dtype=int8 granularity=out_channel;\n"
    "exclude lm_head;\n",
    "int2_int3_channel": "quantize **.mlp.{gate,up}_proj.weight quant_dtype=int3 "
    "granularity=out_channel;\n"
    "quantize **.mlp.down_proj.weight quant_dtype=int2 granularity=out_channel;\n",
    "uint_affine_group": "quantize **.mlp.*_proj.weight quant_dtype=uint4 quant_scheme=affine "
    "granularity=[1, 64];\n",
    "pruned_then_int4": 'prune **.mlp.*_proj.weight mask_structure="2:4";\n'
    "quantize **.mlp.*_proj.weight quant_dtype=int4 granularity=[1, 32];\n",
}
SYMMETRIC = ["int4_group", "int8_channel", "int2_int3_channel", "pruned_then_int4"]


def llama_folder(folder, dtype=torch.float32):
    """A seeded tiny Llama as transformers saves it, with a tokenizer file beside it."""
    save_llama(folder, dtype, **LLAMA_128)
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    return folder


# Wide enough for groups of 32 and 64 inputs; untied, so lm_head is a Linear of its own.
LLAMA_128 = dict(
    vocab_size=128,
    hidden_size=128,
    intermediate_size=256,
    num_attention_heads=4,
    max_position_embeddings=64,
    tie_word_embeddings=False,
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {dtype: llama_folder(root / str(dtype).split(".")[1], dtype) for dtype in DTYPES}


def export(capsys, tmp_path, source, rules_text, *extra):
    rules = tmp_path / "export.rules"
    rules.write_text(rules_text)
    out = tmp_path / "out"
    args = ["apply", rules, "--model", f"hf:{source}", "--format", "compressed-tensors"]
    result = run(capsys, *args, "--out", out, *extra)
    assert result.code == 0, result.err
    return rules, out


def finalized(source, rules, calib=None):
    """Our finalized weights for the export: the same streamed run, scales rounded to each
    weight's dtype as the format stores them."""
    skeleton = hf_skeleton(f"hf:{source}")
    plan = dc.load(rules).compile(skeleton).plan
    state = {**load_file(source / "model.safetensors")}
    dtypes = {k: v.dtype for k, v in skeleton.state_dict().items()}
    run_ = StreamRun(skeleton, plan, lambda name: state[name].to(dtypes[name]), 0, True)
    run_.calibrate(calib)
    sink = _Kept()
    run_.run(sink)
    return sink.tensors, sink.masks


class _Kept:
    def __init__(self):
        self.tensors, self.masks = {}, {}

    def model(self, name, tensor, codes=None):
        self.tensors[name] = tensor.clone()

    def mask(self, name, mask):
        self.masks[name] = mask.clone()

    def read_mask(self, name):
        return self.masks[name]

    def quant(self, name, params):
        pass


def decompressed(out, dtype):
    """The export read as compressed-tensors reads it without transformers' loader: the model
    built from its config, compressed in place, loaded strictly, then decompressed."""
    config = json.loads((out / "config.json").read_text())
    qconfig = QuantizationConfig.model_validate(config["quantization_config"])
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_pretrained(out))
    model = model.to(dtype)
    apply_quantization_config(model, qconfig)
    compressor = ModelCompressor(quantization_config=qconfig)
    compressor.compress_model(model)
    model.load_state_dict(load_file(out / "model.safetensors"), strict=True)
    compressor.decompress_model(model)
    return model


def assert_same_weights(model, expected):
    state = model.state_dict()
    for name, value in expected.items():
        got = state[name]
        assert got.dtype == value.dtype and torch.equal(got, value), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_decompresses_to_our_finalized_weights_bit_for_bit(capsys, tmp_path, sources, case):
    source = sources[torch.float32]
    rules, out = export(capsys, tmp_path, source, CASES[case])
    expected, _ = finalized(source, rules)
    assert_same_weights(decompressed(out, torch.float32), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_decompresses_bit_for_bit(capsys, tmp_path, sources, dtype):
    text = "".join(CASES[c] for c in ("int4_group", "int2_int3_channel"))
    text += "prune **.down_proj.weight sparse_ratio=0.25;\n"
    rules, out = export(capsys, tmp_path, sources[dtype], text)
    expected, _ = finalized(sources[dtype], rules)
    model = decompressed(out, dtype)
    assert_same_weights(model, expected)
    scale = load_file(out / "model.safetensors")["model.layers.0.self_attn.q_proj.weight_scale"]
    assert scale.dtype == dtype  # compressed-tensors keeps scales in the weight's dtype


@pytest.mark.parametrize("case", SYMMETRIC)
def test_transformers_loads_it_with_our_fake_quantized_logits(capsys, tmp_path, sources, case):
    source = sources[torch.float32]
    rules, out = export(capsys, tmp_path, source, CASES[case])
    assert_loads_with_our_logits(out, source, rules)


def assert_loads_with_our_logits(out, source, rules):
    """transformers loads the folder (compressed or not, as it decides) and its logits are
    those of the source model under our in-memory fake quantization."""
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
    dc.apply(dc.load(rules), ours)
    tokens = (torch.arange(24).view(2, 12) * 7) % 128
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, ours(tokens).logits)


def test_pruned_zeros_survive_quantization_and_the_masks_stay_beside(capsys, tmp_path, sources):
    source = sources[torch.bfloat16]
    rules, out = export(capsys, tmp_path, source, CASES["pruned_then_int4"])
    masks = load_file(out / "dsl-compress" / "masks.safetensors")
    model = decompressed(out, torch.bfloat16)
    state = model.state_dict()
    assert len(masks) == 6
    for name, mask in masks.items():
        assert not state[name][~mask].any(), name
        kept_per_four = mask.view(mask.shape[0], -1, 4).sum(dim=-1)
        assert bool((kept_per_four == 2).all()), name  # 2:4 along the input dimension


def test_static_input_quantization_is_int_quantized(capsys, tmp_path, sources):
    source = sources[torch.float32]
    calib = torch.randint(0, 128, (3, 2, 12))
    torch.save(calib, tmp_path / "calib.pt")
    text = (
        "quantize **.mlp.*_proj.weight quant_dtype=int8 granularity=out_channel;\n"
        "quantize **.mlp.*_proj._input_ quant_dtype=int8;\n"
    )
    rules, out = export(capsys, tmp_path, source, text, "--calib", tmp_path / "calib.pt")
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    (group,) = config["config_groups"].values()
    assert config["format"] == group["format"] == "int-quantized"
    assert group["input_activations"]["strategy"] == "tensor"
    tensors = load_file(out / "model.safetensors")
    assert tensors["model.layers.0.mlp.up_proj.weight"].dtype == torch.int8
    assert tensors["model.layers.0.mlp.up_proj.input_scale"].shape == (1,)
    expected, _ = finalized(source, rules, list(calib))
    assert_same_weights(decompressed(out, torch.float32), expected)
    assert "X804" not in capsys.readouterr().err  # the input scales are in the folder
    # transformers applies the static input scales: our logits wherever the inputs stay inside
    # the calibrated range (beyond it, NNI's int8 clamps at -127 and compressed-tensors at -128)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
    dc.apply(dc.load(rules), ours, calib=list(calib))
    with torch.no_grad():
        for batch in calib:
            assert torch.equal(loaded(batch).logits, ours(batch).logits)


def test_the_folder_is_a_hugging_face_model_folder(capsys, tmp_path, sources):
    source = sources[torch.float32]
    rules, out = export(capsys, tmp_path, source, CASES["int4_group"], "--max-shard-size", "300KB")
    config = json.loads((out / "config.json").read_text())
    original = json.loads((source / "config.json").read_text())
    assert {k: v for k, v in config.items() if k != "quantization_config"} == original
    assert (out / "tokenizer_config.json").read_text() == '{"model_max_length": 64}'
    assert (out / "generation_config.json").is_file()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((out / shard).is_file() for shard in shards)
    assert sorted(p.name for p in (out / "dsl-compress").iterdir()) == [
        "config_list.json",
        "masks.safetensors",
        "plan.json",
    ]
    assert_loads_with_our_logits(out, source, rules)


def test_quantization_config_targets_exactly_the_planned_modules(capsys, tmp_path, sources):
    source = sources[torch.float32]
    text = CASES["int2_int3_channel"] + CASES["int4_group"]
    _, out = export(capsys, tmp_path, source, text)
    qconfig = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qconfig["quant_method"] == "compressed-tensors"
    assert qconfig["quantization_status"] == "compressed"
    assert qconfig["format"] == "pack-quantized" and qconfig["sparsity_config"] == {}
    assert qconfig["ignore"] == ["lm_head"]
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_pretrained(out))
    apply_quantization_config(model, QuantizationConfig.model_validate(qconfig))
    bits = {
        name: module.quantization_scheme.weights.num_bits
        for name, module in model.named_modules()
        if getattr(module, "quantization_scheme", None) is not None
    }
    layers = [f"model.layers.{i}" for i in range(2)]
    expected = {f"{layer}.self_attn.{p}_proj": 4 for layer in layers for p in "qkvo"}
    expected |= {f"{layer}.mlp.{p}_proj": 3 for layer in layers for p in ("gate", "up")}
    expected |= {f"{layer}.mlp.down_proj": 2 for layer in layers}
    assert bits == expected
    assert all(
        t.startswith("re:^") and t.endswith("$")
        for g in qconfig["config_groups"].values()
        for t in g["targets"]
    )


def test_a_pruned_only_plan_is_a_plain_dense_folder(capsys, tmp_path, sources):
    source = sources[torch.bfloat16]
    text = 'prune **.mlp.*_proj.weight mask_structure="2:4";\n'
    rules, out = export(capsys, tmp_path, source, text)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    expected, _ = finalized(source, rules)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    assert_same_weights(loaded, expected)
