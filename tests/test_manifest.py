"""Manifests: building, the file round trip, checking, and the meta model that plans resolve on."""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import dsl_compress
from conftest import Aliased
from dsl_compress import CompressionError, build_plan
from dsl_compress.io.manifest import (
    build_manifest,
    load_manifest,
    manifest_class,
    model_from_manifest,
    save_manifest,
)
from dsl_compress.models import cnn, example_model, resnet
from dsl_compress.resolve.model_index import ModelIndex

MODELS = ["cnn", "resnet", "transformer"]
COMPILE_DIR = Path(__file__).parent / "data" / "compile"
RULE_FILES = sorted(COMPILE_DIR.glob("*.rules"))


def entry(manifest: dict, name: str) -> dict:
    return next(m for m in manifest["modules"] if m["name"] == name)


def expect_error(code: str, fragment: str, fn, *args) -> CompressionError:
    with pytest.raises(CompressionError) as info:
        fn(*args)
    assert info.value.codes[0] == code
    assert fragment in str(info.value), str(info.value)
    return info.value


# ----- building ------------------------------------------------------------------------------


def test_manifest_lists_modules_types_and_shapes():
    manifest = build_manifest(resnet())
    assert manifest["format"] == "dsl-compress-manifest" and manifest["version"] == 1
    names = [m["name"] for m in manifest["modules"]]
    assert names == [n for n, _ in resnet().named_modules(remove_duplicate=False)]
    assert entry(manifest, "")["type"] == "TinyResNet"
    conv = entry(manifest, "conv1")
    assert conv["type"] == "Conv2d"
    assert conv["parameters"] == {"weight": [8, 3, 3, 3], "bias": None}
    bn = entry(manifest, "layer2.0.shortcut.1")
    assert bn["buffers"] == {"running_mean": [16], "running_var": [16], "num_batches_tracked": []}
    assert "inputs" not in conv
    assert json.loads(json.dumps(manifest)) == manifest


def test_aliases_and_tied_tensors():
    manifest = build_manifest(Aliased())
    assert entry(manifest, "b") == {"name": "b", "type": "Sequential", "alias_of": "a"}
    assert entry(manifest, "b.0")["alias_of"] == "a.0"
    assert entry(manifest, "fc2")["tied"] == {"weight": "fc1.weight"}


def test_parametrized_modules_report_their_original_type():
    model = cnn()
    nn.utils.parametrize.register_parametrization(model.fc, "weight", nn.Identity())
    assert entry(build_manifest(model), "fc")["type"] == "Linear"


def test_example_input_records_shapes():
    model, x = example_model("cnn")
    manifest = build_manifest(model, x)
    conv1 = entry(manifest, "conv1")
    assert conv1["inputs"] == [[2, 3, 16, 16]] and conv1["outputs"] == [2, 8, 16, 16]
    assert entry(manifest, "fc")["inputs"] == [[2, 16]]
    assert entry(manifest, "relu")["calls"] == 3
    assert json.loads(json.dumps(manifest)) == manifest


def test_example_input_records_tuple_outputs():
    model, x = example_model("transformer")
    attn = entry(build_manifest(model, x), "attn")
    assert attn["inputs"] == [[2, 8, 32]] * 3
    assert attn["outputs"] == [[2, 8, 32], None]
    assert entry(build_manifest(model, (x,)), "fc1")["outputs"] == [2, 8, 64]


def test_example_input_keeps_training_flags_and_removes_hooks():
    model, x = example_model("resnet")
    model.train()
    model.layer1.eval()
    flags = {n: m.training for n, m in model.named_modules()}
    build_manifest(model, x)
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert not any(m._forward_hooks for m in model.modules())


def test_example_input_the_model_rejects():
    model = cnn()
    model.train()
    expect_error(
        "X803", "raised RuntimeError on the example input", build_manifest, model, torch.ones(2, 5)
    )
    assert model.training and not any(m._forward_hooks for m in model.modules())


# ----- files ---------------------------------------------------------------------------------


def test_file_round_trip(tmp_path: Path):
    model, x = example_model("transformer")
    manifest = build_manifest(model, x)
    save_manifest(manifest, tmp_path / "manifest.json")
    assert load_manifest(tmp_path / "manifest.json") == manifest
    lines = (tmp_path / "manifest.json").read_text().splitlines()
    assert len(lines) == len(manifest["modules"]) + 2
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_unwritable_output(tmp_path: Path):
    path = tmp_path / "missing" / "manifest.json"
    expect_error("L105", "cannot write", save_manifest, build_manifest(cnn()), path)
    assert not path.parent.exists()


def test_invalid_manifest_is_not_saved(tmp_path: Path):
    expect_error("L104", "'format'", save_manifest, {"modules": []}, tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []


def broken(change) -> dict:
    manifest = build_manifest(Aliased())
    change(manifest)
    return manifest


def _set(path: list, value):
    def change(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


BAD_MANIFESTS = {
    "not an object": ([], "a manifest is a JSON object, not a list"),
    "format": (broken(_set(["format"], "nni")), "'format' is 'nni'"),
    "version": (broken(_set(["version"], 2)), "version 2 is not supported"),
    "no modules": (broken(_set(["modules"], [])), "'modules' must be a non-empty list"),
    "entry": (broken(_set(["modules", 1], "fc")), "a module entry is an object, not a string"),
    "root": (broken(_set(["modules", 0, "name"], "top")), "the first module is the root"),
    "duplicate": (broken(_set(["modules", 8, "name"], "fc1")), "module 'fc1' is listed twice"),
    "parent": (broken(_set(["modules", 1, "name"], "x.y")), "comes before its parent 'x'"),
    "type": (broken(_set(["modules", 1, "type"], "not a class")), "'type' must be a class name"),
    "alias": (broken(_set(["modules", 4, "alias_of"], "zzz")), "'alias_of' 'zzz' is no earlier"),
    "shape": (
        broken(_set(["modules", 2, "parameters", "weight"], [4, -1])),
        "parameters.weight must be a list of sizes or null",
    ),
    "tensor name": (
        broken(_set(["modules", 2, "buffers", "a.b"], [1])),
        "buffers name 'a.b' must be non-empty, without '.'",
    ),
    "tied": (
        broken(_set(["modules", 8, "tied"], {"weight": "fc9.weight"})),
        "'fc9.weight' is no earlier parameter of the same shape",
    ),
    "forward": (broken(_set(["modules", 2, "forward"], [["x", "SOMETIMES"]])), "'forward' must"),
    "inputs": (broken(_set(["modules", 2, "inputs"], "big")), "'inputs' holds 'big'"),
    "calls": (broken(_set(["modules", 2, "calls"], -1)), "'calls' must be a count, not -1"),
    "tied kind": (broken(_set(["modules", 8, "tied"], [])), "'tied' must be an object, not a list"),
    "trailing dot": (broken(_set(["modules", 2, "name"], "a.")), "module name 'a.' ends with '.'"),
}


@pytest.mark.parametrize("name", BAD_MANIFESTS)
def test_bad_manifests(tmp_path: Path, name: str):
    manifest, fragment = BAD_MANIFESTS[name]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest))
    error = expect_error("L104", fragment, load_manifest, path)
    assert error.diagnostics[0].subject.startswith(str(path))
    expect_error("L104", fragment, model_from_manifest, manifest)


def test_every_problem_is_reported():
    manifest = build_manifest(Aliased())
    manifest["modules"][1]["type"] = ""
    manifest["modules"][2]["parameters"]["bias"] = "4"
    with pytest.raises(CompressionError) as info:
        model_from_manifest(manifest)
    assert info.value.codes == ["L104", "L104"]


@pytest.mark.parametrize(
    "content, fragment",
    [("{", "is not JSON: Expecting property name"), ('{"a": 1,\n]', "at line 2 column 1")],
)
def test_unreadable_manifest_files(tmp_path: Path, content: str, fragment: str):
    (tmp_path / "m.json").write_text(content)
    expect_error("L104", fragment, load_manifest, tmp_path / "m.json")
    expect_error("L104", "no manifest file", load_manifest, tmp_path / "none.json")


# ----- the meta model ------------------------------------------------------------------------


def test_meta_model_has_the_model_structure():
    model = example_model("transformer")[0]
    meta = model_from_manifest(build_manifest(model))
    real, rebuilt = ModelIndex.of(model), ModelIndex.of(meta)
    assert rebuilt.type_names == real.type_names and rebuilt.canonical == real.canonical
    assert all(t.is_meta for t in list(meta.parameters()) + list(meta.buffers()))
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert {n: p.shape for n, p in meta.named_parameters()} == shapes
    assert meta.attn.q_proj_weight is None and "q_proj_weight" in meta.attn._parameters
    assert type(meta.fc1) is type(meta.fc2) is manifest_class("Linear")
    assert type(meta.attn.out_proj).__name__ == "NonDynamicallyQuantizableLinear"


def test_meta_model_keeps_aliases_tied_tensors_and_signatures():
    meta = model_from_manifest(build_manifest(Aliased()))
    assert meta.a is meta.b and meta.fc1.weight is meta.fc2.weight
    attn = model_from_manifest(build_manifest(example_model("transformer")[0])).attn
    real = example_model("transformer")[0].attn
    kinds = [(p.name, p.kind) for p in inspect.signature(attn.forward).parameters.values()]
    assert kinds == [(p.name, p.kind) for p in inspect.signature(real.forward).parameters.values()]


def test_meta_model_manifest_is_the_same_manifest():
    for name in MODELS:
        manifest = build_manifest(example_model(name)[0])
        assert build_manifest(model_from_manifest(copy.deepcopy(manifest))) == manifest


def test_meta_model_cannot_run():
    meta = model_from_manifest(build_manifest(cnn()))
    expect_error("X803", "rebuilt from a manifest and cannot run", meta, torch.ones(1, 3, 8, 8))
    expect_error("X803", "this Conv2d", meta.conv1, torch.ones(1, 3, 8, 8))


def outcome(compile_fn, model) -> object:
    """A plan as plain data with its warnings, or the errors that stopped it."""
    try:
        compiled = compile_fn(model)
    except CompressionError as exc:
        return [d.render() for d in exc.diagnostics]
    plan = getattr(compiled, "plan", compiled)
    return plan.to_dicts(), [d.render() for d in getattr(compiled, "diagnostics", plan.diagnostics)]


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.stem)
def test_rules_resolve_alike_on_the_meta_model(model_name: str, rules: Path):
    rule_set = dsl_compress.load(rules)
    model = example_model(model_name)[0]
    meta = model_from_manifest(build_manifest(model))
    assert outcome(rule_set.compile, meta) == outcome(rule_set.compile, model)


@pytest.mark.parametrize(
    "text",
    [
        "quantize fc1._input_y quant_dtype=int8\n",
        "prune Lineer.weight sparse_ratio=0.5\n",
        "prune fc1.weight sparse_ratio=0.5\nprune fc2.weight sparse_ratio=0.5\n",
        "prune a.0.weight sparse_ratio=0.5\nprune b.0.weight sparse_ratio=0.3\n",
    ],
)
def test_diagnostics_alike_on_the_meta_model(text: str):
    rule_set = dsl_compress.parse(text, "t.rules")
    for model in (Aliased(), example_model("transformer")[0]):
        meta = model_from_manifest(build_manifest(model))
        assert outcome(rule_set.compile, meta) == outcome(rule_set.compile, model)


@pytest.mark.parametrize("model_name", MODELS)
def test_config_list_resolves_alike_on_the_meta_model(model_name: str):
    model = example_model(model_name)[0]
    meta = model_from_manifest(build_manifest(model))
    prune = [
        {"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.5, "granularity": "out_channel"},
        {"op_names_re": ["fc.*", "layer1.*"], "sparse_ratio": 0.3},
    ]
    quantize = [
        {
            "op_types": ["Linear", "Conv2d"],
            "quant_dtype": "int8",
            "target_names": ["weight", "_input_"],
        }
    ]
    for config_list, mode in ((prune, "prune"), (quantize, "quantize")):

        def compile_fn(m):
            return build_plan(m, config_list, mode)

        assert outcome(compile_fn, meta) == outcome(compile_fn, model)
