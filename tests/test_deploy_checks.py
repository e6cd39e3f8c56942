"""What a compressed-tensors checkpoint cannot hold (F101) and what vLLM refuses (V101-V104): each
a located error before any tensor is read, each with an example that passes."""

from __future__ import annotations

import json

import pytest

from cli_runner import run
from hf_models import save_llama
from dsl_compress.deploy.ct_config import exact_targets
from dsl_compress.io.manifest import build_manifest, save_manifest

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny Llama with biases on its attention projections and tied embeddings."""
    folder = tmp_path_factory.mktemp("llama")
    save_llama(folder, hidden_size=64, intermediate_size=128, attention_bias=True)
    return folder


def rules_file(tmp_path, text):
    path = tmp_path / "deploy.rules"
    path.write_text(text)
    return path


def lint_for_vllm(capsys, tmp_path, manifest, text: str):
    """`dsl-compress lint RULES --manifest M --target vllm` on ``text``."""
    rules = rules_file(tmp_path, text)
    return run(capsys, "lint", rules, "--manifest", manifest, "--target", "vllm")


def apply_ct(capsys, tmp_path, llama, text, *extra):
    out = tmp_path / "out"
    argv = ["apply", rules_file(tmp_path, text), "--model", f"hf:{llama}"]
    result = run(capsys, *argv, "--format", "compressed-tensors", "--out", out, *extra)
    return result, out


# Each plan the format cannot hold, the line of the rule at fault, and what the message says.
UNSTORABLE = {
    "output": ("quantize **.q_proj._output_ quant_dtype=int8;", 1, "output quantization"),
    "bias": ("quantize **.q_proj.bias quant_dtype=int8;", 1, "not its bias"),
    "norm": (
        "register quantize LlamaRMSNorm { weight };\n"
        "quantize **.input_layernorm.weight quant_dtype=int8;",
        2,
        "a LlamaRMSNorm is not quantized",
    ),
    "input_alone": ("quantize **.q_proj._input_ quant_dtype=int8;", 1, "weight quantized too"),
    "input_granularity": (
        "quantize **.q_proj.weight quant_dtype=int8;\n"
        "quantize **.q_proj._input_ quant_dtype=int8 granularity=per_channel;",
        2,
        "per tensor",
    ),
    "prune_input": ("prune **.q_proj._input_ sparse_ratio=0.5;", 1, "acts while the model runs"),
    "prune_add": (
        "prune **.q_proj.weight sparse_ratio=0.5 apply_method=add;",
        1,
        "apply_method='add'",
    ),
    "tied": ("quantize lm_head.weight quant_dtype=int8 granularity=out_channel;", 1, "is tied to"),
}


@pytest.mark.parametrize("case", sorted(UNSTORABLE))
def test_a_plan_the_format_cannot_hold_is_refused_at_its_rule(capsys, tmp_path, llama, case):
    text, line, words = UNSTORABLE[case]
    result, out = apply_ct(capsys, tmp_path, llama, text)
    assert result.code == 2, result.err  # an input error: nothing was read or written
    assert f"deploy.rules:{line}:" in result.err and "error[F101]" in result.err
    assert words in result.err
    assert "help:" in result.err
    assert not out.exists()


def test_one_rule_reaching_many_modules_is_told_once(capsys, tmp_path, llama):
    result, _ = apply_ct(capsys, tmp_path, llama, UNSTORABLE["output"][0])
    assert result.err.count("error[F101]") == 1
    assert "(and 1 more like it from this rule)" in result.err


def test_distillation_is_refused(capsys, tmp_path, llama):
    text = 'distill model.layers.1.mlp._output_ lambda=1 link="model.layers.1.mlp";'
    result, _ = apply_ct(capsys, tmp_path, llama, text)
    assert result.code == 2 and "F101" in result.err and "distillation" in result.err


def test_a_model_that_is_no_hf_folder_is_refused(capsys, tmp_path):
    rules = rules_file(tmp_path, "quantize Linear.weight quant_dtype=int8;")
    argv = ["apply", rules, "--model", "dsl_compress.models:SmallCNN", "--format"]
    result = run(capsys, *argv, "compressed-tensors", "--out", tmp_path / "out")
    assert result.code != 0 and "L101" in result.err and "hf:DIR" in result.err


def test_target_needs_the_compressed_tensors_format(capsys, tmp_path, llama):
    rules = rules_file(tmp_path, "quantize Linear.weight quant_dtype=int8;")
    argv = ["apply", rules, "--model", f"hf:{llama}", "--target", "vllm"]
    result = run(capsys, *argv, "--out", tmp_path / "out")
    assert result.code != 0 and "--format compressed-tensors" in result.err


# vLLM: each check fails on one plan and passes on the fixed one.
VLLM = {
    "V101": (
        "quantize **.q_proj.weight quant_dtype=int4 granularity=[1, 32];\n"
        "quantize **.{k,v}_proj.weight quant_dtype=int8 granularity=out_channel;",
        "quantize **.{q,k,v}_proj.weight quant_dtype=int4 granularity=[1, 32];",
        1,  # q_proj is quantized unlike the most of its set: its rule is at fault
    ),
    "V102": (
        "quantize **.o_proj.weight quant_dtype=int4;",
        "quantize **.o_proj.weight quant_dtype=int4 granularity=out_channel;",
        1,
    ),
    "V103": (
        "quantize **.mlp.*_proj.weight quant_dtype=uint3 quant_scheme=affine granularity=[1, 32];",
        "quantize **.mlp.*_proj.weight quant_dtype=uint4 quant_scheme=affine granularity=[1, 32];",
        1,
    ),
    "V104": (
        "register quantize LlamaRMSNorm { weight };\n"
        "quantize **.post_attention_layernorm.weight quant_dtype=int8;",
        "quantize **.mlp.down_proj.weight quant_dtype=int8 granularity=out_channel;",
        2,
    ),
    "V105": (
        "quantize **.mlp.*_proj.weight quant_dtype=int4 granularity=[1, 32];\n"
        "quantize **.mlp.*_proj._input_ quant_dtype=int8;",
        "quantize **.mlp.*_proj.weight quant_dtype=int8 granularity=out_channel;\n"
        "quantize **.mlp.*_proj._input_ quant_dtype=int8;",
        1,
    ),
}


@pytest.fixture(scope="module")
def manifest(llama, tmp_path_factory):
    from dsl_compress.io.hf import hf_skeleton

    path = tmp_path_factory.mktemp("manifest") / "manifest.json"
    save_manifest(build_manifest(hf_skeleton(f"hf:{llama}")), path)
    return path


@pytest.mark.parametrize("source", ["model", "manifest"])
@pytest.mark.parametrize("code", sorted(VLLM))
def test_each_vllm_check_fails_and_passes(capsys, tmp_path, llama, manifest, code, source):
    failing, passing, line = VLLM[code]
    model = ["--model", f"hf:{llama}"] if source == "model" else ["--manifest", manifest]
    result = run(capsys, "lint", rules_file(tmp_path, failing), *model, "--target", "vllm")
    assert result.code == 1
    assert f"deploy.rules:{line}:" in result.out and f"error[{code}]" in result.out
    assert "help:" in result.out
    result = run(capsys, "lint", rules_file(tmp_path, passing), *model, "--target", "vllm")
    assert result.code == 0, result.out


def test_vllm_findings_are_warnings_in_apply_and_errors_with_target(capsys, tmp_path, llama):
    failing = VLLM["V102"][0]
    result, out = apply_ct(capsys, tmp_path, llama, failing)
    assert result.code == 0 and "warning[V102]" in result.err and out.is_dir()
    result, out = apply_ct(capsys, tmp_path, llama, failing, "--target", "vllm", "--overwrite")
    assert result.code == 2 and "error[V102]" in result.err


def test_the_explain_text_of_each_code(capsys):
    for code in ("F101", *VLLM):
        result = run(capsys, "explain", code)
        assert result.code == 0 and code in result.out and len(result.out) > 200


def test_lint_target_without_a_model_is_refused(capsys, tmp_path):
    rules = rules_file(tmp_path, "quantize Linear.weight quant_dtype=int8;")
    result = run(capsys, "lint", rules, "--target", "vllm")
    assert result.code != 0 and "--manifest" in result.err


def test_a_config_list_is_checked_too(capsys, tmp_path, llama):
    config = [{"op_names_re": [r".*o_proj"], "target_names": ["weight"], "quant_dtype": "int4"}]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    argv = ["lint", path, "--mode", "quantize", "--model", f"hf:{llama}", "--target", "vllm"]
    result = run(capsys, *argv)
    assert result.code == 1 and "V102" in result.out and "config.json:" in result.out


MODULES = [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.k_proj",
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.k_proj",
    "model.layers.10.self_attn.q_proj",
    "lm_head",
]


def test_targets_generalise_layer_numbers_only_where_exact():
    every_q = [m for m in MODULES if m.endswith("q_proj")]
    assert exact_targets(every_q, MODULES) == [r"re:^model\.layers\.\d+\.self_attn\.q_proj$"]
    some = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert exact_targets(some, MODULES) == some  # \d+ would take layer 10 too
    pairs = [m for m in MODULES if "layers.1." in m or "layers.0." in m]
    assert exact_targets(pairs, MODULES[:4] + ["lm_head"]) == [
        r"re:^model\.layers\.\d+\.self_attn\.(?:q_proj|k_proj)$"
    ]


@pytest.mark.parametrize(
    "text, line",
    [
        ("quantize Linear.weight quant_dtype=int4 granularity=[1, 32];", 1),
        (
            "register quantize Embedding { weight };\n"
            "quantize Embedding.weight quant_dtype=int8 granularity=out_channel;",
            2,
        ),
    ],
    ids=["lm_head", "embedding"],
)
def test_vllm_keeps_the_output_head_and_embeddings_float(capsys, tmp_path, manifest, text, line):
    result = lint_for_vllm(capsys, tmp_path, manifest, text)
    assert result.code == 1 and f"deploy.rules:{line}:" in result.out
    assert "error[V104]" in result.out and "keeps float weights in vLLM" in result.out


def test_v101_points_at_the_rule_of_the_odd_member(capsys, tmp_path, manifest):
    text = (
        "quantize **.self_attn.{k,v}_proj.weight quant_dtype=int4 granularity=[1, 32];\n"
        "quantize **.self_attn.q_proj.weight quant_dtype=int8 granularity=out_channel;"
    )
    result = lint_for_vllm(capsys, tmp_path, manifest, text)
    assert "deploy.rules:2:1: error[V101]" in result.out
    assert "(and 1 more like it from this rule)" in result.out  # the other layer


def test_apply_reports_every_finding_at_once(capsys, tmp_path, llama):
    text = (
        "quantize **.q_proj._output_ quant_dtype=int8;\n"
        "quantize **.o_proj.weight quant_dtype=int4;"
    )
    result, _ = apply_ct(capsys, tmp_path, llama, text, "--target", "vllm")
    assert result.code == 2
    assert "deploy.rules:1:1: error[F101]" in result.err
    assert "deploy.rules:2:1: error[V102]" in result.err


def test_a_config_lists_findings_in_apply_are_placed_at_its_config(capsys, tmp_path, llama):
    config = [
        {"op_names_re": [r".*q_proj"], "target_names": ["_output_"], "quant_dtype": "int8"},
        {"op_names_re": [r".*o_proj"], "target_names": ["weight"], "quant_dtype": "int4"},
    ]
    path = tmp_path / "config.json"
    text = json.dumps(config, indent=1)
    path.write_text(text)
    first, second = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip() == "{"]
    argv = ["apply", path, "--mode", "quantize", "--model", f"hf:{llama}"]
    result = run(capsys, *argv, "--format", "compressed-tensors", "--out", tmp_path / "o")
    assert result.code == 2
    assert f"config.json:{first}:" in result.err and "error[F101]" in result.err
    argv += ["--format", "compressed-tensors", "--target", "vllm", "--out", tmp_path / "o"]
    result = run(capsys, *argv)
    assert f"config.json:{second}:" in result.err and "error[V102]" in result.err


def test_a_quantizers_apply_method_is_no_reason_to_refuse_the_export(capsys, tmp_path, manifest):
    """A quantizer's apply_method has no effect (Q603): clamp-and-round is what is stored."""
    text = (
        "quantize **.mlp.*_proj.weight quant_dtype=int8 granularity=out_channel "
        "apply_method=bypass;\nquantize **.mlp.*_proj._input_ quant_dtype=int8;"
    )
    result = lint_for_vllm(capsys, tmp_path, manifest, text)
    assert "F101" not in result.out and "Q603" in result.out
    assert result.out.count("error[") == 0


def test_an_embeddings_v104_says_to_leave_the_embedding_out(capsys, tmp_path, manifest):
    text = (
        "register quantize Embedding { weight };\n"
        "quantize Embedding.weight quant_dtype=int8 granularity=out_channel;"
    )
    result = lint_for_vllm(capsys, tmp_path, manifest, text)
    assert "error[V104]" in result.out and "leave the embedding out" in result.out
