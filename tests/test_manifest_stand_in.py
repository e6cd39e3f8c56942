"""lint, compile and explain on a manifest load no torch, and say exactly what they say on the
model the manifest was written from (and on the meta model rebuilt from it for apply)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import Aliased, CustomizedModule
from dsl_compress.io.manifest import build_manifest, model_from_manifest, save_manifest
from dsl_compress.io.manifest_read import load_manifest, stand_in_model
from dsl_compress.models import example_model
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.ruleset import load
from dsl_compress.resolve.ruleset import parse as dsl_parse
from dsl_compress.resolve.config_input import read_config_input
from dsl_compress.schema.registry import type_name_of
from dsl_compress.stand_in import StandInModule, StandInTensor
from dsl_compress.tools.explain import explain, render_explanations
from dsl_compress.tools.lint import lint
from dsl_compress.vocab import Mode, TargetKind

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_FOLDERS = ("compile", "compile_errors", "parse_errors")
RULE_FILES = sorted(ROOT.glob("rules/*.rules")) + sorted(
    path for folder in GOLDEN_FOLDERS for path in (ROOT / "tests" / "data" / folder).glob("*.rules")
)
CONFIG_LISTS = {
    ROOT / "rules" / "nni" / "resnet_prune_block_conv1.json": "prune",
    ROOT / "rules" / "nni" / "transformer_mlp_int8.json": "quantize",
}

# Model-aware findings the examples and goldens may not reach on every model: targets that
# are buffers, None or missing, forward() arguments, shapes, ratios, templates, scopes.
MODEL_AWARE_RULES = {
    "targets": (
        "prune bn1.running_mean sparse_ratio=0.5\n"
        "prune attn.q_proj_weight sparse_ratio=0.5\n"
        "prune fc.wieght sparse_ratio=0.5\n"
        "quantize attn._input_query quant_dtype=int8\n"
        "quantize attn._input_nope quant_dtype=int8\n"
        "quantize fc1._input_1 quant_dtype=int8\n"
        "prune p1 sparse_ratio=0.5\n"
    ),
    "shapes": (
        "prune conv1.weight sparse_ratio=0.01 granularity=out_channel\n"
        "prune layer2.0.conv1.weight sparse_ratio=0.5 granularity=out_channel\n"
        "align layer2.0.bn1.weight with layer2.0.conv1.weight dims=[1]\n"
        "align layer2.0.bn2.weight with layer2.0.conv2.weight dims=[0]\n"
        "quantize fc.weight quant_dtype=int8 granularity=[1,3]\n"
        "quantize fc1.weight quant_dtype=int4 granularity=[1,7]\n"
        "prune Conv2d.weight sparse_ratio=0.5 granularity=[5]\n"
        "prune fc2.weight sparse_ratio=0.5 group=g\n"
        "prune fc1.weight sparse_ratio=0.25 group=g\n"
    ),
    "types": (
        "prune LayerNorm.weight sparse_ratio=0.5\n"
        "quantize MultiheadAttention quant_dtype=int8\n"
        "prune NonDynamicallyQuantizableLinear.weight sparse_ratio=0.5\n"
        "quantize Conv1D.weight quant_dtype=int8\n"
        "prune Linear.weight sparse_ratio=0.5 in layer9.*\n"
        "distill fc._output_ lambda=1.0\n"
        "exclude prune nothing_here\n"
    ),
}

# The same for NNI config_lists: buffers, None parameters, missing targets and inputs, aliases.
MODEL_AWARE_CONFIGS = {
    "prune_targets": (
        "prune",
        [
            {"op_types": ["BatchNorm2d"], "target_settings": {"running_mean": {}}},
            {"op_types": ["Linear"], "target_settings": {"wieght": {"sparse_ratio": 0.5}}},
            {"op_names": ["fc2", "a", "b", "nope"], "sparse_ratio": 0.5},
        ],
    ),
    "prune_shapes": (
        "prune",
        [
            {"op_names": ["fc2", "a.0", "b.0", "conv1"], "sparse_ratio": 0.5, "granularity": [3]},
            {"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.01, "granularity": "out_channel"},
            {"op_types": ["BatchNorm2d", "LayerNorm"], "sparse_ratio": 0.5},
        ],
    ),
    "quantize_targets": (
        "quantize",
        [
            {
                "op_types": ["Linear", "MultiheadAttention"],
                "quant_dtype": "int8",
                "target_names": ["weight", "_input_0", "_input_x", "_input_input", "_output_0"],
            },
        ],
    ),
    "quantize_shapes": (
        "quantize",
        [{"op_types": ["Linear", "Conv2d"], "quant_dtype": "int4", "granularity": [1, 7]}],
    ),
}


def _model(name: str) -> nn.Module:
    if name == "customized":
        return CustomizedModule()
    if name == "aliased":
        return Aliased()
    return example_model(name)[0]


MODELS = ["cnn", "resnet", "transformer", "customized", "aliased"]


def _seen(result) -> list[tuple]:
    """Everything a user sees of each diagnostic: code, severity, text, place, hints."""
    return [
        (d.code, d.severity, d.message, d.span, d.subject, d.hint, d.rules_hint)
        for d in result.diagnostics
    ]


@pytest.fixture(scope="module")
def rule_texts(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("model_aware")
    paths = []
    for name, text in MODEL_AWARE_RULES.items():
        path = folder / f"{name}.rules"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def config_lists(tmp_path_factory) -> dict[Path, str]:
    folder = tmp_path_factory.mktemp("model_aware_configs")
    found = dict(CONFIG_LISTS)
    for name, (mode, config_list) in MODEL_AWARE_CONFIGS.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(config_list, indent=1), encoding="utf-8")
        found[path] = mode
    return found


@pytest.mark.parametrize("name", MODELS)
def test_lint_on_a_manifest_says_what_lint_on_the_model_says(name, rule_texts, config_lists):
    model = _model(name)
    manifest = build_manifest(model)
    paths = [str(p) for p in [*RULE_FILES, *rule_texts]]
    on_model = _seen(lint(paths, model))
    assert any(d[0] not in ("E101", "E102") for d in on_model)  # the corpus reaches the model
    assert _seen(lint(paths, stand_in_model(manifest))) == on_model
    assert _seen(lint(paths, model_from_manifest(manifest))) == on_model
    for path, mode in config_lists.items():
        on_model = _seen(lint([str(path)], model, mode=mode))
        assert _seen(lint([str(path)], stand_in_model(manifest), mode=mode)) == on_model


@pytest.mark.parametrize("name", ["resnet", "transformer"])
def test_compile_and_explain_on_a_manifest_agree_with_the_model(name, config_lists):
    model = _model(name)
    stand_in = stand_in_model(build_manifest(model))
    for path in sorted(ROOT.glob("rules/*.rules")):
        rules = load(path)
        try:
            plan = rules.compile(model).plan
        except Exception as exc:  # noqa: BLE001 - the same error must come from the stand-in
            with pytest.raises(type(exc)) as info:
                rules.compile(stand_in)
            assert str(info.value) == str(exc)
            continue
        assert rules.compile(stand_in).plan.to_dicts() == plan.to_dicts()
        shown = render_explanations(explain(rules, model))
        assert render_explanations(explain(rules, stand_in)) == shown
    for path, mode in config_lists.items():
        config = read_config_input(path, mode)
        try:
            expected = config.plan(model).to_dicts()
        except Exception as exc:  # noqa: BLE001
            with pytest.raises(type(exc)):
                config.plan(stand_in)
            continue
        assert config.plan(stand_in).to_dicts() == expected


def test_a_stand_in_keeps_names_aliases_types_shapes_and_signatures():
    model = Aliased()
    stand_in = stand_in_model(build_manifest(model))
    assert [n for n, _ in stand_in.named_modules()] == [n for n, _ in model.named_modules()]
    index, real = ModelIndex.of(stand_in), ModelIndex.of(model)
    assert (index.type_names, index.canonical) == (real.type_names, real.canonical)
    assert stand_in.a is stand_in.b and type_name_of(stand_in.a) == "Sequential"
    assert stand_in.fc2._parameters["weight"] is stand_in.fc1._parameters["weight"]
    assert isinstance(stand_in.fc1.weight, StandInTensor) and stand_in.fc1.weight.shape == (4, 4)
    assert stand_in.fc2._parameters["bias"] is None
    params = list(inspect.signature(stand_in.fc1.forward).parameters)
    assert params == ["input"]


def test_a_stand_in_refuses_to_run():
    stand_in = stand_in_model(build_manifest(CustomizedModule()))
    assert isinstance(stand_in, StandInModule)
    with pytest.raises(Exception, match="cannot run forward"):
        stand_in.forward(torch.zeros(1))
    with pytest.raises(AttributeError, match="no attribute 'p3'"):
        stand_in.p3


# ----- the command: no torch on a manifest ----------------------------------------------------

PROBE = """\
import json, sys
from dsl_compress.cli.main import main
status = main(sys.argv[1:])
print(json.dumps({"status": int(status), "torch": "torch" in sys.modules}))
"""


@pytest.fixture(scope="module")
def manifest_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "resnet.json"
    save_manifest(build_manifest(example_model("resnet")[0]), path)
    assert load_manifest(path)["modules"]
    return path


def _probe(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


EXAMPLE = str(ROOT / "rules" / "resnet_channels.rules")
CONFIG = str(ROOT / "rules" / "nni" / "resnet_prune_block_conv1.json")


@pytest.mark.parametrize(
    "argv, status",
    [
        (("lint", EXAMPLE, "--format", "json"), 0),
        (("lint", str(ROOT / "tests" / "data" / "compile_errors" / "align_cycle.rules")), 1),
        (("lint", CONFIG, "--mode", "prune"), 0),
        (("compile", EXAMPLE, "--format", "plan"), 0),
        (("compile", CONFIG, "--mode", "prune", "--format", "plan"), 0),
        (("explain", EXAMPLE), 0),
        (("explain", EXAMPLE, "--target", "layer1.*.conv1"), 0),
        (("explain", CONFIG, "--mode", "prune"), 0),
    ],
    ids=lambda v: " ".join(Path(a).name for a in v) if isinstance(v, tuple) else str(v),
)
def test_commands_on_a_manifest_never_import_torch(manifest_file, argv, status):
    assert _probe(*argv, "--manifest", str(manifest_file)) == {"status": status, "torch": False}


# ----- the checks' requests ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_the_checks_read_the_same_requests_as_the_mask_stage(name):
    """plan_checks builds its mask requests torch-free (here on the manifest's stand-in); they
    agree with the mask stage's own on the model in everything the checks read: kind, setting,
    shape, and whether a metric ranks the target."""
    from dsl_compress.engine.plan_checks import check_requests
    from dsl_compress.engine.prune import mask_requests

    model = _model(name)
    stand_in = dict(stand_in_model(build_manifest(model)).named_modules())
    texts = [
        (ROOT / "tests" / "data" / "compile" / "bn_align.rules").read_text(encoding="utf-8"),
        "prune Conv2d.weight sparse_ratio=0.5\nprune BatchNorm2d.bias granularity=[2]\n",
    ]
    for text in texts:
        entries = dsl_parse(text).compile(model).plan.of_mode(Mode.PRUNE)
        assert entries
        checks = check_requests(stand_in, entries)
        stage = mask_requests(dict(model.named_modules()), entries, {})
        assert [_read_by_checks(r) for r in checks] == [_read_by_checks(r) for r in stage]
        assert any(r.metric is not None for r in checks)
        assert any(r.kind is TargetKind.PARAMETER and r.shape for r in checks)


def _read_by_checks(request) -> tuple:
    return (request.key, request.kind, dict(request.setting), request.shape, request.metric is None)
