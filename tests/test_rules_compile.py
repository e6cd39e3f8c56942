"""The .rules compiler: registry, config_list and plan; precedence, selectors, align, diagnostics.

Golden files: tests/data/compile/*.rules -> .expected.json (registry, config_list and, for files
whose first line is `# model: NAME`, the plan against that bundled model) and
tests/data/compile_errors/*.rules -> .expected.txt (rendered diagnostics). Regenerate them
deliberately with DSL_COMPRESS_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import pytest

import golden
from torch import nn

import dsl_compress
from rules_texts import BN_SEED, ISSUE_REGISTER, PAGE_BN_ALIGNED_CONFIG_LIST
from conftest import CustomizedModule, ConvBn, TwoLinear
from dsl_compress import CompressionError, Mode, Severity, build_plan
from dsl_compress.models import example_model
from dsl_compress.resolve.from_config import select
from dsl_compress.resolve.model_index import ModelIndex

DATA = Path(__file__).parent / "data"
COMPILE_DIR = DATA / "compile"
ERRORS_DIR = DATA / "compile_errors"
MODEL_LINE = re.compile(r"# model: (\w+)")

# ----- the NNI page (reference/compression-setting.rst), written out as it is there -------------

PAGE_PRUNING_CUSTOMIZED_SETTING = {
    "p1": {
        "sparse_ratio": None,
        "max_sparse_ratio": None,
        "min_sparse_ratio": None,
        "sparse_threshold": None,
        "global_group_id": None,
        "dependency_group_id": None,
        "granularity": [1, -1],
        "internal_metric_block": None,
        "apply_method": "mul",
    },
    "p2": {
        "sparse_ratio": None,
        "max_sparse_ratio": None,
        "min_sparse_ratio": None,
        "sparse_threshold": None,
        "global_group_id": None,
        "dependency_group_id": None,
        "granularity": [1, -1],
        "internal_metric_block": None,
        "apply_method": "mul",
    },
    "_output_": {
        "align": {
            "module_name": None,
            "target_name": "p1",
            "dims": [0],
        },
        "apply_method": "mul",
        "granularity": [-1, 1],
    },
}

PAGE_QUANTIZATION_CUSTOMIZED_SETTING = {
    "_input_": {
        "quant_dtype": None,
        "quant_scheme": None,
        "granularity": [-1, 1],
        "apply_method": "clamp_round",
    },
    "p1": {
        "quant_dtype": None,
        "quant_scheme": None,
        "granularity": [1, -1],
        "apply_method": "clamp_round",
    },
    "p2": {
        "quant_dtype": None,
        "quant_scheme": None,
        "granularity": [1, -1],
        "apply_method": "clamp_round",
    },
    "_output_": {
        "quant_dtype": None,
        "quant_scheme": None,
        "granularity": [-1, 1],
        "apply_method": "clamp_round",
    },
}


# ----- small models ------------------------------------------------------------------------------


class CustomNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.cm = CustomizedModule()
        self.fc = nn.Linear(20, 4)

    def forward(self, x, y):
        return self.fc(self.cm(x, y))


class Branch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.conv = nn.Conv2d(2, 2, 1)


class Branches(nn.Module):
    """b1.{fc,conv}, b2.{fc,conv} and a top-level fc: the model of NNI's selection examples."""

    def __init__(self):
        super().__init__()
        self.b1 = Branch()
        self.b2 = Branch()
        self.fc = nn.Linear(4, 4)


class MyLinear(nn.Linear):
    pass


class WithSubclass(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.mine = MyLinear(4, 4)


def resnet() -> nn.Module:
    return example_model("resnet")[0]


def cnn() -> nn.Module:
    return example_model("cnn")[0]


# ----- helpers -----------------------------------------------------------------------------------


def compile_rules(text: str, model: nn.Module | None = None, path: str = "t.rules"):
    return dsl_compress.parse(text, path).compile(model)


def errors_of(text: str, model: nn.Module | None = None, path: str = "t.rules") -> list:
    with pytest.raises(CompressionError) as info:
        compile_rules(text, model, path)
    return list(info.value.diagnostics)


def only(diagnostics, code: str):
    found = [d for d in diagnostics if d.code == code]
    assert len(found) == 1, "\n".join(d.render() for d in diagnostics)
    return found[0]


def entry(compiled, module: str, target: str, mode: Mode = Mode.PRUNE):
    found = compiled.plan.find(module, target, mode)
    assert found is not None, f"no {mode.value} plan entry for {module}.{target}"
    return found


def targets_of(compiled, mode: Mode = Mode.PRUNE) -> list[tuple[str, str]]:
    return [(e.module, e.target) for e in compiled.plan.of_mode(mode)]


def modules_of(compiled, mode: Mode = Mode.PRUNE) -> list[str]:
    return list(dict.fromkeys(e.module for e in compiled.plan.of_mode(mode)))


def ratio_of(compiled, module: str, target: str = "weight"):
    return entry(compiled, module, target).setting["sparse_ratio"]


def config_for(config_list: list[dict], module: str, target: str) -> dict:
    found = [
        c
        for c in config_list
        if c.get("op_names") == [module] and target in c.get("target_names", [])
    ]
    assert len(found) == 1, config_list
    return found[0]["target_settings"][target]


def nni_selection(model: nn.Module, config: dict) -> list[str]:
    """The modules one config selects under NNI 3.0's rules (names ∪ regex) ∩ types − excludes."""
    names, _ = select(ModelIndex.of(model), config, "config")
    return names


def span_of(diagnostic) -> tuple:
    return (diagnostic.span.line, diagnostic.span.column)


# ----- 1. register: the NNI page's customized_setting dicts --------------------------------------


def test_register_statements_compile_to_the_pages_customized_settings():
    compiled = compile_rules(ISSUE_REGISTER)
    assert compiled.registry == {
        "prune": {"CustomizedModule": PAGE_PRUNING_CUSTOMIZED_SETTING},
        "quantize": {"CustomizedModule": PAGE_QUANTIZATION_CUSTOMIZED_SETTING},
        "distill": {},
    }
    # Exactly, key order included: the dicts print like the page.
    assert json.dumps(compiled.registry["prune"]["CustomizedModule"]) == json.dumps(
        PAGE_PRUNING_CUSTOMIZED_SETTING
    )
    assert json.dumps(compiled.registry["quantize"]["CustomizedModule"]) == json.dumps(
        PAGE_QUANTIZATION_CUSTOMIZED_SETTING
    )
    assert compiled.config_list == {"prune": [], "quantize": [], "distill": []}
    assert compiled.diagnostics == ()


def test_register_one_line_and_block_forms_mean_the_same():
    block = compile_rules(ISSUE_REGISTER).registry
    one_line = compile_rules(
        "register prune CustomizedModule { p1 granularity=[1,-1]; p2 granularity=[1,-1]; "
        "_output_ align=p1 dims=[0] granularity=[-1,1] }\n"
        "register quantize CustomizedModule {\n  _input_ granularity=[-1,1]\n"
        "  p1 granularity=[1,-1]\n  p2 granularity=[1,-1]\n  _output_ granularity=[-1,1]\n}\n"
    ).registry
    assert one_line == block


def test_registration_is_scoped_to_its_rule_set():
    compiled = compile_rules(ISSUE_REGISTER)
    assert "CustomizedModule" in compiled.registries[Mode.PRUNE]
    assert "CustomizedModule" in compiled.registries[Mode.QUANTIZE]
    assert "CustomizedModule" not in dsl_compress.DEFAULT_REGISTRY[Mode.PRUNE]
    assert "CustomizedModule" not in dsl_compress.DEFAULT_REGISTRY[Mode.QUANTIZE]
    diag = only(errors_of("prune CustomizedModule sparse_ratio=0.5"), "E201")
    assert "CustomizedModule" in diag.message


def test_registered_templates_drive_the_plan_with_a_model():
    text = ISSUE_REGISTER + "prune CustomizedModule sparse_ratio=0.5\n"
    compiled = compile_rules(text, CustomNet())
    assert targets_of(compiled) == [("cm", "p1"), ("cm", "p2"), ("cm", "_output_0")]
    assert entry(compiled, "cm", "p1").setting["granularity"] == [1, -1]
    assert entry(compiled, "cm", "p1").setting["sparse_ratio"] == 0.5
    output = entry(compiled, "cm", "_output_0").setting
    assert output["align"] == {"module_name": None, "target_name": "p1", "dims": [0]}
    assert output["granularity"] == [-1, 1]
    assert "sparse_ratio" not in output  # the shorthand reaches only keys the template has


def test_register_replaces_a_builtin_template_for_this_rule_set_only():
    text = "register prune Linear { weight granularity=in_channel }\nprune fc1 sparse_ratio=0.5\n"
    compiled = compile_rules(text, TwoLinear())
    assert targets_of(compiled) == [("fc1", "weight")]  # no bias: the template was replaced
    assert entry(compiled, "fc1", "weight").setting["granularity"] == "in_channel"
    default = compile_rules("prune fc1 sparse_ratio=0.5", TwoLinear())
    assert targets_of(default) == [("fc1", "weight"), ("fc1", "bias")]


# ----- 2. the page's BN-aligned-to-conv config_list ----------------------------------------------


def test_bn_aligned_to_conv_gives_the_pages_target_settings(conv_bn):
    compiled = compile_rules(BN_SEED, conv_bn)
    prune_list = compiled.config_list["prune"]
    for page_config in PAGE_BN_ALIGNED_CONFIG_LIST[1:]:
        (bn,) = page_config["op_names"]
        want = page_config["target_settings"]["weight"]
        got = config_for(prune_list, bn, "weight")
        assert {k: got[k] for k in want} == want
        assert "sparse_ratio" not in got
    for conv in PAGE_BN_ALIGNED_CONFIG_LIST[0]["op_names"]:
        got = config_for(prune_list, conv, "weight")
        assert got["granularity"] == PAGE_BN_ALIGNED_CONFIG_LIST[0]["granularity"]
        assert got["sparse_ratio"] == 0.5
    assert [c["op_names"] for c in prune_list] == [["conv1"], ["conv2"], ["bn1"], ["bn2"]]
    assert compiled.diagnostics == ()


def test_bn_seed_plan_remembers_where_each_key_came_from(conv_bn):
    compiled = compile_rules(BN_SEED, conv_bn, path="seed.rules")
    bn1 = entry(compiled, "bn1", "weight")
    assert bn1.origin == "seed.rules:3:1"
    assert bn1.key_origins["align"] == "seed.rules:3:1"
    assert bn1.key_origins["granularity"] == "seed.rules:3:45"
    assert bn1.key_origins["sparse_ratio"] == "template BatchNorm2d"
    conv2 = entry(compiled, "conv2", "weight")
    assert conv2.key_origins["granularity"] == "seed.rules:2:20"
    assert conv2.key_origins["sparse_ratio"] == "seed.rules:2:44"


# ----- 3. precedence, per key --------------------------------------------------------------------

PRECEDENCE_CASES = [
    # (first selector, second selector, which statement sets fc1.weight's ratio)
    ("Linear.weight", "fc1.weight", 2),  # exact name > type, either order
    ("fc1.weight", "Linear.weight", 1),
    ("fc*.weight", "Linear.weight", 1),  # pattern > type, either order
    ("Linear.weight", "fc*.weight", 2),
    ('re"fc1".weight', "Linear.weight", 1),  # regex > type
    ("Linear.weight", 're"fc\\d".weight', 2),
    ("fc1.weight", "fc*.weight", 1),  # exact > pattern
    ("fc1.weight", 're"fc1".weight', 1),  # exact > regex
    ("{fc1,fc2}.weight", "fc1.weight", 2),  # a {a,b} set is a pattern
    ("Linear.weight in fc*", "fc*.weight", 1),  # `in` ranks above a plain pattern
    ("fc*.weight", "Linear.weight in fc*", 2),
    ("fc1.weight", "Linear.weight in fc*", 1),  # ... and below an exact name
    ("Linear.weight", "Linear.weight", 2),  # within one level the later wins
    ("fc*.weight", "{fc1,fc2}.weight", 2),
    ("fc*.weight", 're"fc.".weight', 2),  # glob and regex are one level
    ('re"fc.".weight', "fc*.weight", 2),
    ("fc1.weight", "fc1.weight", 2),
]


@pytest.mark.parametrize("first, second, winner", PRECEDENCE_CASES)
def test_precedence_exact_over_pattern_over_type_later_wins(first, second, winner):
    text = f"prune {first} sparse_ratio=0.25\nprune {second} sparse_ratio=0.75\n"
    fc1 = entry(compile_rules(text, TwoLinear()), "fc1", "weight")
    assert fc1.setting["sparse_ratio"] == (0.25, 0.75)[winner - 1]
    column = len(f"prune {(first, second)[winner - 1]} ") + 1
    assert fc1.key_origins["sparse_ratio"] == f"t.rules:{winner}:{column}"


def test_keys_merge_across_statements_each_from_its_winner():
    text = (
        "prune Linear.weight granularity=in_channel sparse_ratio=0.1\n"
        "prune fc*.weight metric=l2\n"
        "prune fc1.weight sparse_ratio=0.6\n"
    )
    compiled = compile_rules(text, TwoLinear())
    fc1, fc2 = entry(compiled, "fc1", "weight"), entry(compiled, "fc2", "weight")
    assert (fc1.setting["granularity"], fc1.setting["sparse_ratio"], fc1.metric) == (
        "in_channel",
        0.6,
        "l2",
    )
    assert (fc2.setting["granularity"], fc2.setting["sparse_ratio"], fc2.metric) == (
        "in_channel",
        0.1,
        "l2",
    )
    assert fc1.key_origins["granularity"] == "t.rules:1:21"
    assert fc1.key_origins["sparse_ratio"] == "t.rules:3:18"
    assert fc1.key_origins["metric"] == "t.rules:2:18"
    assert fc1.key_origins["max_sparse_ratio"] == "template Linear"
    assert fc2.key_origins["sparse_ratio"] == "t.rules:1:44"
    assert fc1.origin == "t.rules:3:1"  # the most specific statement
    assert fc2.origin == "t.rules:2:1"
    assert not [d for d in compiled.diagnostics if d.code == "W302"]


def test_model_config_list_carries_the_merged_keys():
    text = "prune Linear.weight granularity=in_channel\nprune fc1.weight sparse_ratio=0.6 group=g\n"
    compiled = compile_rules(text, TwoLinear())
    setting = config_for(compiled.config_list["prune"], "fc1", "weight")
    assert setting["granularity"] == "in_channel"
    assert setting["sparse_ratio"] == 0.6
    assert setting["global_group_id"] == "g"  # the language's `group` is NNI's key


def test_w302_equally_specific_statements_giving_different_values():
    text = "prune fc*.weight sparse_ratio=0.6\nprune {fc1,fc2}.weight sparse_ratio=0.3\n"
    compiled = compile_rules(text, TwoLinear())
    warning = [d for d in compiled.diagnostics if d.code == "W302"][0]
    assert warning.severity is Severity.WARNING
    for part in ("'fc1.weight'", "sparse_ratio=0.3", "sparse_ratio=0.6 at t.rules:1:18"):
        assert part in warning.message
    assert "later statement wins" in warning.message
    span = warning.span
    assert (span.file, span.line, span.column, span.end_line, span.end_column) == (
        "t.rules",
        2,
        24,
        2,
        40,
    )
    assert ratio_of(compiled, "fc1") == 0.3 and ratio_of(compiled, "fc2") == 0.3


@pytest.mark.parametrize(
    "text",
    [
        "prune Linear.weight sparse_ratio=0.5\nprune fc1.weight sparse_ratio=0.3\n",  # levels differ
        "prune fc*.weight sparse_ratio=0.5\nprune {fc1,fc2}.weight sparse_ratio=0.5\n",  # same value
        "prune fc*.weight sparse_ratio=0.5\nprune {fc1,fc2}.weight granularity=in_channel\n",
    ],
)
def test_no_w302_without_an_equal_level_conflict(text):
    compiled = compile_rules(text, TwoLinear())
    assert not [d for d in compiled.diagnostics if d.code == "W302"]


def test_precedence_is_per_tensor():
    text = "prune Conv2d.weight sparse_ratio=0.5\nprune conv2.weight sparse_ratio=0.25\n"
    compiled = compile_rules(text, cnn())
    assert [ratio_of(compiled, m) for m in ("conv1", "conv2", "conv3")] == [0.5, 0.25, 0.5]


# ----- 4. selectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("layer1.*.conv1", ["layer1.0.conv1", "layer1.1.conv1"]),
        ("conv*", ["conv1"]),  # `*` stays inside one segment
        (
            "**.conv1",  # `**` is zero or more segments: the top-level conv1 too
            ["conv1", "layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.1.conv1"],
        ),
        ("layer1.**.conv2", ["layer1.0.conv2", "layer1.1.conv2"]),
        ("layer2.**.shortcut.0", ["layer2.0.shortcut.0"]),
        ("layer2.*.shortcut.*", ["layer2.0.shortcut.0", "layer2.0.shortcut.1"]),
    ],
)
def test_glob_selectors(selector, expected):
    compiled = compile_rules(f"prune {selector}.weight sparse_ratio=0.5", resnet())
    assert modules_of(compiled) == expected
    assert compiled.diagnostics == ()


def test_star_never_crosses_a_dot():
    compiled = compile_rules("prune *.conv1.weight sparse_ratio=0.5", resnet())
    assert modules_of(compiled) == []  # layer1.0.conv1 has two segments before conv1
    assert only(compiled.diagnostics, "W301").severity is Severity.WARNING


def test_double_star_matches_zero_segments_at_the_top_and_in_the_middle():
    compiled = compile_rules("prune **.bn*.weight sparse_ratio=0.5", resnet())
    names = modules_of(compiled)
    assert names[0] == "bn1"  # zero segments
    assert "layer1.0.bn1" in names and "layer2.1.bn2" in names
    assert len(names) == 9  # bn1 and the 8 block BNs; shortcut.1 is not bn*
    middle = compile_rules("prune layer1.**.conv1.weight sparse_ratio=0.5", resnet())
    assert modules_of(middle) == ["layer1.0.conv1", "layer1.1.conv1"]


def test_brace_alternatives():
    text = "prune layer1.{0,1}.{conv1,conv2}.weight sparse_ratio=0.5"
    assert modules_of(compile_rules(text, resnet())) == [
        "layer1.0.conv1",
        "layer1.0.conv2",
        "layer1.1.conv1",
        "layer1.1.conv2",
    ]
    assert modules_of(compile_rules("prune {conv1,fc}.weight sparse_ratio=0.5", resnet())) == [
        "conv1",
        "fc",
    ]


def test_regex_matches_the_whole_name_unlike_nnis_op_names_re():
    compiled = compile_rules('prune re"fc".weight sparse_ratio=0.5', Branches())
    assert modules_of(compiled) == ["fc"]  # not b1.fc, b2.fc
    # NNI's op_names_re uses re.match: 'fc' would also match 'fc1'; ours must not.
    assert modules_of(compile_rules('prune re"fc".weight sparse_ratio=0.5', TwoLinear())) == []
    every = compile_rules('prune re".*fc".weight sparse_ratio=0.5', Branches())
    assert modules_of(every) == ["b1.fc", "b2.fc", "fc"]
    prefix = compile_rules('prune re"b1.f".weight sparse_ratio=0.5', Branches())
    assert modules_of(prefix) == []  # re.match would take 'b1.fc'; the whole name must match


def test_regex_static_config_list_is_anchored_at_both_ends():
    rules = dsl_compress.parse('prune re"fc".weight sparse_ratio=0.5', "t.rules")
    static = rules.compile().config_list["prune"]
    (pattern,) = static[0]["op_names_re"]
    assert [n for n in ("fc", "b1.fc", "fc1", "fcx") if re.match(pattern, n)] == ["fc"]
    plan = build_plan(Branches(), static, "prune")  # NNI's own selection semantics
    assert [e.module for e in plan.entries] == ["fc"]


def test_type_selectors_use_exact_class_names():
    compiled = compile_rules("prune Linear.weight sparse_ratio=0.5", WithSubclass())
    assert modules_of(compiled) == ["fc"]  # MyLinear is not Linear, as in NNI
    model, _ = example_model("transformer")
    compiled = compile_rules("quantize Linear.weight quant_dtype=int8", model)
    assert modules_of(compiled, Mode.QUANTIZE) == ["fc1", "fc2"]  # not attn.out_proj
    bns = compile_rules("prune BatchNorm2d.weight sparse_ratio=0.5", resnet())
    assert len(modules_of(bns)) == 10 and "layer2.0.shortcut.1" in modules_of(bns)


def test_target_set_expands_bare_input_and_output_to_the_first():
    text = "quantize Linear.{weight,_input_,_output_} quant_dtype=int8 quant_scheme=symmetric"
    compiled = compile_rules(text, TwoLinear())
    assert targets_of(compiled, Mode.QUANTIZE) == [
        (m, t) for m in ("fc1", "fc2") for t in ("weight", "_input_0", "_output_0")
    ]
    static = compile_rules(text).config_list["quantize"]
    assert static[0]["target_names"] == ["weight", "_input_0", "_output_0"]
    assert static[0]["op_types"] == ["Linear"]


def test_a_statement_configures_only_the_targets_it_names():
    compiled = compile_rules("prune fc1.weight sparse_ratio=0.5", TwoLinear())
    assert targets_of(compiled) == [("fc1", "weight")]
    quant = compile_rules("quantize fc1._input_ quant_dtype=uint8", TwoLinear())
    assert targets_of(quant, Mode.QUANTIZE) == [("fc1", "_input_0")]


def test_no_target_segment_uses_the_template_targets_like_nni_shorthand():
    compiled = compile_rules("prune fc1 sparse_ratio=0.5", TwoLinear())
    assert targets_of(compiled) == [("fc1", "weight"), ("fc1", "bias")]
    assert ratio_of(compiled, "fc1") == 0.5
    bias = entry(compiled, "fc1", "bias").setting
    assert bias["align"] == {"module_name": None, "target_name": "weight", "dims": [0]}
    assert "sparse_ratio" not in bias  # the bias template has no ratio: it keeps its align
    quant = compile_rules("quantize fc1 quant_dtype=int8", TwoLinear())
    assert sorted(t for _, t in targets_of(quant, Mode.QUANTIZE)) == [
        "_input_0",
        "_output_0",
        "bias",
        "weight",
    ]


def test_registered_target_words_are_read_as_targets():
    text = ISSUE_REGISTER + "prune cm.p1 sparse_ratio=0.5\nquantize cm.{p1,p2} quant_dtype=int8\n"
    compiled = compile_rules(text, CustomNet())
    assert targets_of(compiled) == [("cm", "p1")]
    assert targets_of(compiled, Mode.QUANTIZE) == [("cm", "p1"), ("cm", "p2")]
    static = compile_rules(text).config_list
    assert static["prune"][0]["op_names"] == ["cm"]
    assert static["prune"][0]["target_names"] == ["p1"]
    # Without the registration, p1 is still a parameter of cm (no module is named cm.p1), but
    # the type has no template to start from: R301 at the statement, saying how to register.
    with pytest.raises(CompressionError) as info:
        compile_rules("prune cm.p1 sparse_ratio=0.5", CustomNet())
    [diag] = info.value.diagnostics
    assert diag.code == "R301" and diag.span.line == 1
    assert "register prune CustomizedModule" in diag.hint


def test_in_scope_narrows_a_type_to_names():
    text = "prune Conv2d.weight in layer1.** sparse_ratio=0.5"
    compiled = compile_rules(text, resnet())
    assert modules_of(compiled) == [
        "layer1.0.conv1",
        "layer1.0.conv2",
        "layer1.1.conv1",
        "layer1.1.conv2",
    ]
    static = compile_rules(text).config_list["prune"]
    assert [e.module for e in build_plan(resnet(), static, "prune").entries] == modules_of(compiled)


# ----- 5. exclude and except ---------------------------------------------------------------------

BOTH_KINDS = "prune Conv2d.weight sparse_ratio=0.5\nquantize Conv2d.weight quant_dtype=int8\n"


def test_exclude_removes_from_every_kind():
    compiled = compile_rules(BOTH_KINDS + "exclude conv2\n", cnn())
    assert modules_of(compiled) == ["conv1", "conv3"]
    assert modules_of(compiled, Mode.QUANTIZE) == ["conv1", "conv3"]


@pytest.mark.parametrize("before", [False, True])
def test_exclude_from_one_kind(before):
    exclude = "exclude conv2 from quantize\n"
    text = exclude + BOTH_KINDS if before else BOTH_KINDS + exclude
    compiled = compile_rules(text, cnn())
    assert modules_of(compiled) == ["conv1", "conv2", "conv3"]
    assert modules_of(compiled, Mode.QUANTIZE) == ["conv1", "conv3"]


def test_exclude_beats_an_exact_statement():
    text = "prune conv2.weight sparse_ratio=0.7\nexclude conv*\n"
    compiled = compile_rules(text, cnn())
    assert modules_of(compiled) == []


def test_except_removes_from_one_statement_only():
    text = (
        "prune Conv2d.weight sparse_ratio=0.5 except conv1, conv3\n"
        "quantize Conv2d.weight quant_dtype=int8\n"
        "prune conv3.weight granularity=in_channel\n"
    )
    compiled = compile_rules(text, cnn())
    assert modules_of(compiled) == ["conv2", "conv3"]
    assert entry(compiled, "conv3", "weight").setting["sparse_ratio"] is None
    assert modules_of(compiled, Mode.QUANTIZE) == ["conv1", "conv2", "conv3"]


def test_except_with_a_pattern_and_a_type():
    text = "prune Conv2d.weight sparse_ratio=0.5 except layer2.**, conv1\n"
    compiled = compile_rules(text, resnet())
    assert modules_of(compiled) == ["layer1.0.conv1", "layer1.0.conv2"] + [
        "layer1.1.conv1",
        "layer1.1.conv2",
    ]


def test_static_config_list_carries_excludes_per_kind_and_excepts_per_statement():
    text = BOTH_KINDS + "prune fc.weight sparse_ratio=0.1 except fc\n" + "exclude conv2\n"
    text += "exclude BatchNorm2d from quantize\n"
    static = compile_rules(text).config_list
    fc, conv = static["prune"]  # most specific first, for NNI's first-wins
    assert fc["op_names"] == ["fc"] and fc["exclude_op_names"] == ["conv2", "fc"]
    assert conv["op_types"] == ["Conv2d"] and conv["exclude_op_names"] == ["conv2"]
    assert "exclude_op_types" not in conv
    (quant,) = static["quantize"]
    assert quant["exclude_op_names"] == ["conv2"]
    assert quant["exclude_op_types"] == ["BatchNorm2d"]


# ----- 6. align ----------------------------------------------------------------------------------


def align_partners(compiled) -> dict[str, str]:
    return {
        f"{e.module}.{e.target}": e.setting["align"]["module_name"]
        for e in compiled.plan.of_mode(Mode.PRUNE)
        if isinstance(e.setting.get("align"), dict) and e.setting["align"]["module_name"]
    }


def test_align_captures_pair_each_module_with_its_own_partner():
    text = (
        "prune **.conv1.weight sparse_ratio=0.5\nalign **.bn1.weight with **.conv1.weight dims=[0]"
    )
    compiled = compile_rules(text, resnet())
    assert align_partners(compiled) == {
        "bn1.weight": "conv1",
        "layer1.0.bn1.weight": "layer1.0.conv1",
        "layer1.1.bn1.weight": "layer1.1.conv1",
        "layer2.0.bn1.weight": "layer2.0.conv1",
        "layer2.1.bn1.weight": "layer2.1.conv1",
    }
    bn = entry(compiled, "layer2.0.bn1", "weight").setting["align"]
    assert bn == {"module_name": "layer2.0.conv1", "target_name": "weight", "dims": [0]}


def test_align_with_several_captures_substitutes_them_in_order():
    text = (
        "prune Conv2d.weight sparse_ratio=0.5\n"
        "align layer*.*.bn*.weight with layer*.*.conv*.weight dims=[0]\n"
    )
    partners = align_partners(compile_rules(text, resnet()))
    assert partners["layer2.1.bn2.weight"] == "layer2.1.conv2"
    assert partners["layer1.0.bn1.weight"] == "layer1.0.conv1"
    assert len(partners) == 8


def test_align_partner_without_wildcards_is_one_fixed_module():
    text = "prune conv1.weight sparse_ratio=0.5\nalign bn*.weight with conv1.weight dims=[0]"
    partners = align_partners(compile_rules(text, cnn()))
    assert partners == {"bn1.weight": "conv1", "bn2.weight": "conv1", "bn3.weight": "conv1"}


def test_align_target_name_dims_and_keys_come_from_the_statement():
    text = "align bn1.bias with bn1.weight dims=[0] apply_method=mul"
    compiled = compile_rules(BN_SEED + text, ConvBn())
    bias = entry(compiled, "bn1", "bias").setting
    assert bias["align"] == {"module_name": "bn1", "target_name": "weight", "dims": [0]}


def test_missing_align_partner_is_e209_at_the_statement_naming_the_module():
    text = (
        "prune Conv2d.weight sparse_ratio=0.5\n"
        "align bn*.weight with conv*.weight dims=[0]\n"
        "align fc.weight with conv9.weight dims=[1]\n"
    )
    diag = only(errors_of(text, cnn()), "E209")
    assert "'conv9'" in diag.message and "'fc'" in diag.message
    assert span_of(diag) == (3, 1)
    assert diag.span.end_line == 3
    assert "conv3" in diag.hint  # the closest names


def test_align_partner_with_more_wildcards_than_captured_is_e209():
    text = "prune Conv2d.weight sparse_ratio=0.5\nalign bn*.weight with conv*.*.weight dims=[0]\n"
    diags = errors_of(text, cnn())
    assert {d.code for d in diags} == {"E209"}
    assert all(span_of(d) == (2, 1) for d in diags)
    assert "'bn1'" in diags[0].message


def test_static_config_list_leaves_align_to_compilation_with_a_model():
    compiled = compile_rules(BN_SEED)
    assert [c["op_names"] for c in compiled.config_list["prune"]] == [["conv2"], ["conv1"]]
    infos = [d for d in compiled.diagnostics if d.severity is Severity.INFO and d.span]
    assert sorted(span_of(d) for d in infos) == [(3, 1), (4, 1)]
    [merge_note] = [d for d in compiled.diagnostics if d.code == "W304" and d.span is None]
    assert "merge only when compiled with a model" in merge_note.message


def test_align_without_a_model_does_not_reuse_the_matches_nothing_code():
    compiled = compile_rules(BN_SEED)
    assert compiled.diagnostics
    assert all(d.code != "W301" for d in compiled.diagnostics)


def test_align_cycle_is_reported_by_compile_at_the_statements():
    text = (
        "align conv1.weight with conv2.weight dims=[0]\n"
        "align conv2.weight with conv1.weight dims=[0]\n"
    )
    diags = errors_of(text, ConvBn())
    (diag,) = [d for d in diags if d.code in ("E208", "P504")]
    assert diag.span is not None and diag.span.file == "t.rules"
    assert diag.span.line in (1, 2)
    assert "conv1.weight" in diag.message and "conv2.weight" in diag.message


# ----- 7. diagnostics: one test per code with message, line and column ---------------------------

CODE_CASES = [
    # (code, rules text, model, message part, (line, column), hint part)
    (
        "E201",
        "prune Conv2D.weight sparse_ratio=0.5",
        None,
        "unknown module type 'Conv2D'",
        (1, 7),
        "did you mean 'Conv2d'",
    ),
    (
        "E201",
        "quantize Embedding.weight quant_dtype=int8",  # a type without a quantize template
        None,
        "unknown module type 'Embedding'",
        (1, 10),
        "register quantize Embedding",
    ),
    (
        "E202",
        "prune Linear.weight sparse_ration=0.5",
        None,
        "unknown setting 'sparse_ration' for prune",
        (1, 21),
        "'sparse_ratio'",
    ),
    (
        "E202",
        "quantize Linear.weight sparse_ratio=0.5",
        None,
        "unknown setting 'sparse_ratio' for quantize",
        (1, 24),
        "quant_dtype",
    ),
    (
        "E202",
        "prune Linear.weight global_group_id=1",
        None,
        "unknown setting 'global_group_id'",
        (1, 21),
        "group=1",
    ),
    (
        "E202",
        "prune Linear.weight sparse_ratio=0.5 sparse_ratio=0.6",
        None,
        "'sparse_ratio' is set twice",
        (1, 38),
        None,
    ),
    (
        "E203",
        "prune Linear.weight granularity=out_chanel",
        None,
        "'out_chanel' is not a granularity name",
        (1, 33),
        "'out_channel'",
    ),
    ("E203", "prune Linear.weight metric=l3", None, "unknown metric 'l3'", (1, 28), "l1"),
    (
        "E203",
        "quantize Linear.weight quant_scheme=sym",
        None,
        "quant_scheme must be 'affine' or 'symmetric'",
        (1, 37),
        None,
    ),
    (
        "E203",
        "align bn1.weight with conv1.weight",
        None,
        "align needs dims=[...]",
        (1, 1),
        "dims=[0]",
    ),
    (
        "E204",
        "let ratio = 0.5\nprune Linear.weight sparse_ratio=ration",
        None,
        "'ration' is not defined",
        (2, 34),
        "did you mean 'ratio'?",
    ),
    (
        "E204",
        "prune Linear.weight sparse_ratio=ratio",
        None,
        "'ratio' is not defined",
        (1, 34),
        "let",
    ),
    (
        "E207",
        "prune Linear.weight sparse_ratio=1.5",
        None,
        "sparse_ratio must be a float in [0, 1], got 1.5",
        (1, 34),
        None,
    ),
    (
        "E207",
        "prune Linear.weight sparse_ratio=50",
        None,
        "got 50",
        (1, 34),
        "not percentages",
    ),
    (
        "E207",
        "let r = -0.1\nprune Linear.weight max_sparse_ratio=r",
        None,
        "got -0.1",
        (2, 38),
        None,
    ),
    (
        "E209",
        "prune conv1.weight sparse_ratio=0.5\nalign fc.weight with conv9.weight dims=[1]",
        "cnn",
        "align found no module 'conv9' to pair with 'fc'",
        (2, 1),
        "'conv1'",
    ),
    (
        "E210",
        "align bn1.weight with Conv2d.weight dims=[0]",
        None,
        "the align partner must be a module name or a name pattern",
        (1, 23),
        None,
    ),
    (
        "E210",
        "align bn1 with conv1.weight dims=[0]",
        None,
        "align needs a target on both sides",
        (1, 1),
        "align bn*.weight with conv*.weight",
    ),
    (
        "E210",
        'prune re"(".weight sparse_ratio=0.5',
        None,
        "invalid regular expression",
        (1, 7),
        None,
    ),
    ("E211", "let a = 0.5\nlet a = 0.6", None, "'a' is already defined", (2, 1), None),
    ("E212", "register prune Foo { }", None, "register prune Foo has no targets", (1, 1), None),
    (
        "E212",
        "register prune Foo { p1 granularity=[1,-1]; p1 granularity=[1,-1] }",
        None,
        "target 'p1' is registered twice",
        (1, 45),
        None,
    ),
    (
        "E212",
        "register prune Foo { p1 dims=[0] }",
        None,
        "dims is only meaningful with align=TARGET",
        (1, 22),
        None,
    ),
    (
        "E212",
        "register prune Foo { p1 align=[1] }",
        None,
        "align= names a target of this template",
        (1, 25),
        None,
    ),
]


@pytest.mark.parametrize(
    "code, text, model, message, position, hint",
    CODE_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CODE_CASES)],
)
def test_each_error_code_with_message_and_position(code, text, model, message, position, hint):
    diags = errors_of(text, example_model(model)[0] if model else None)
    diag = only(diags, code)
    assert diag.severity is Severity.ERROR
    assert message in diag.message
    assert diag.span is not None and diag.span.file == "t.rules"
    assert span_of(diag) == position
    if hint is None:
        return
    assert diag.hint is not None and hint in diag.hint


def test_rendered_like_a_compiler():
    text = "let ratio = 0.5\n\nprune Conv2D.weight sparse_ratio=ratio\n"
    diag = only(errors_of(text, path="rules/resnet.rules"), "E201")
    assert diag.render(text.splitlines()) == (
        "rules/resnet.rules:3:7: error[E201] unknown module type 'Conv2D'\n"
        "  3 | prune Conv2D.weight sparse_ratio=ratio\n"
        "    |       ^^^^^^\n"
        "  help: did you mean 'Conv2d'? Types of your own model are "
        "known only with --model (compile(model) in Python)"
    )


def test_several_errors_in_one_file_are_all_reported_in_order():
    text = (
        "let r = 0.3\n"
        "let r = 0.4\n"
        "prune Conv2D.weight sparse_ratio=0.5\n"
        "prune Linear.weight sparse_ration=0.5\n"
        "prune fc.weight sparse_ratio=2\n"
        "prune Linear.weight sparse_ratio=zz metric=ll\n"
        "register prune Foo { }\n"
    )
    diags = errors_of(text)
    assert [(d.code, d.span.line) for d in diags] == [
        ("E211", 2),
        ("E201", 3),
        ("E202", 4),
        ("E207", 5),
        ("E204", 6),
        ("E203", 6),
        ("E212", 7),
    ]


def test_an_unknown_type_and_a_bad_value_in_one_statement_both_reported():
    diags = errors_of("prune Conv2D.weight sparse_ratio=1.5 granularity=out_chanel")
    assert sorted(d.code for d in diags) == ["E201", "E203", "E207"]


def test_missing_include_e205_names_the_file_it_looked_for(tmp_path):
    main = tmp_path / "main.rules"
    main.write_text('prune Linear.weight sparse_ratio=0.5\ninclude "base/nope.rules"\n')
    with pytest.raises(CompressionError) as info:
        dsl_compress.load(main)
    diag = only(info.value.diagnostics, "E205")
    assert "'base/nope.rules' does not exist" in diag.message
    assert (diag.span.file, span_of(diag)) == (str(main), (2, 1))
    assert str(tmp_path / "base" / "nope.rules") in diag.hint


def test_load_of_a_missing_file_is_e205(tmp_path):
    with pytest.raises(CompressionError) as info:
        dsl_compress.load(tmp_path / "absent.rules")
    diag = only(info.value.diagnostics, "E205")
    assert "absent.rules" in diag.message


def test_include_cycle_e206_shows_the_chain_at_the_closing_include(tmp_path):
    (tmp_path / "a.rules").write_text('include "b.rules"\nprune Linear.weight sparse_ratio=0.1\n')
    (tmp_path / "b.rules").write_text('\ninclude "a.rules"\n')
    with pytest.raises(CompressionError) as info:
        dsl_compress.load(tmp_path / "a.rules")
    diag = only(info.value.diagnostics, "E206")
    assert "a.rules -> b.rules -> a.rules" in diag.message
    assert Path(diag.span.file) == (tmp_path / "b.rules").resolve()
    assert span_of(diag) == (2, 1)


def test_self_include_is_a_cycle(tmp_path):
    (tmp_path / "self.rules").write_text('include "self.rules"\n')
    with pytest.raises(CompressionError) as info:
        dsl_compress.load(tmp_path / "self.rules")
    assert "self.rules -> self.rules" in only(info.value.diagnostics, "E206").message


def test_w301_statement_matching_nothing_names_the_closest_module():
    text = "prune Linear.weight sparse_ratio=0.5\nprune fc3.weight sparse_ratio=0.5\n"
    compiled = compile_rules(text, TwoLinear())
    diag = only(compiled.diagnostics, "W301")
    assert diag.severity is Severity.WARNING
    assert "matches no module of the model" in diag.message
    assert span_of(diag) == (2, 7)  # the selector
    assert "'fc1'" in diag.hint or "'fc2'" in diag.hint
    typo = only(
        compile_rules("prune layer3.*.conv1.weight sparse_ratio=0.5", resnet()).diagnostics, "W301"
    )
    assert "layer" in (typo.hint or "")


def test_w301_for_an_exclude_that_matches_nothing():
    compiled = compile_rules(BOTH_KINDS + "exclude classifier.**\n", cnn())
    diag = only(compiled.diagnostics, "W301")
    assert "exclude" in diag.message and span_of(diag) == (3, 9)  # the selector


def test_model_free_compile_reports_no_model_warnings():
    compiled = compile_rules("prune fc3.weight sparse_ratio=0.5")
    assert compiled.plan is None
    assert compiled.diagnostics == ()


def test_w301_for_a_fully_excluded_statement_says_it_was_excluded():
    text = "prune conv2.weight sparse_ratio=0.7\nexclude conv2 from prune\n"
    diag = only(compile_rules(text, cnn()).diagnostics, "W301")
    assert "exclu" in diag.message
    assert diag.hint is None or "'conv2'" not in diag.hint


def test_a_misspelt_target_is_reported_with_the_closest_target():
    diags = compile_rules("prune fc1.wieght sparse_ratio=0.5", TwoLinear()).diagnostics
    assert any("'weight'" in (d.hint or "") for d in diags)


def test_a_target_on_exclude_is_e210():
    diag = only(errors_of("prune Linear.weight sparse_ratio=0.5\nexclude fc1.weight\n"), "E210")
    assert span_of(diag)[0] == 2


def test_register_align_to_a_target_not_in_the_template_is_e212():
    diag = only(errors_of("register prune Foo { _output_ align=p1 dims=[0] }"), "E212")
    assert "p1" in diag.message


def test_unregistered_type_under_a_name_pattern_suggests_the_register_statement():
    diags = errors_of("prune relu sparse_ratio=0.5", cnn())
    (diag,) = diags
    assert span_of(diag) == (1, 1)
    assert "register prune ReLU" in (diag.hint or "")


def test_w301_hint_does_not_suggest_what_the_statement_already_names():
    text = "prune Linear.weight in layer1.** sparse_ratio=0.5"
    diag = only(compile_rules(text, resnet()).diagnostics, "W301")
    assert diag.hint is None or "'Linear'" not in diag.hint


def test_model_time_errors_point_at_the_setting_that_gave_the_bad_value():
    text = "prune Linear.weight granularity=per_channel\nprune fc1.weight sparse_ratio=0.5\n"
    diags = [d for d in errors_of(text, TwoLinear()) if d.code == "P502"]
    assert len(diags) == 2
    assert all(d.span.line == 1 for d in diags), [str(d.span) for d in diags]


# ----- 8. model-free config_list: NNI's first-wins order -----------------------------------------


def test_static_config_list_is_most_specific_first_and_uses_nni_keys():
    text = (
        "prune Linear.weight sparse_ratio=0.5 group=g1 metric=l2\n"
        "prune fc*.weight granularity=in_channel\n"
        "prune fc1.weight sparse_ratio=0.3\n"
        "quantize Linear.weight quant_dtype=int8\n"
        "distill fc2 lambda=0.5 link=fc2 apply_method=mse\n"
    )
    static = compile_rules(text).config_list
    selections = [next(k for k in c if k.startswith("op_")) for c in static["prune"]]
    assert selections == ["op_names", "op_names_re", "op_types"]
    assert static["prune"][2]["target_settings"]["weight"] == {
        "sparse_ratio": 0.5,
        "global_group_id": "g1",
    }
    assert static["quantize"] == [
        {
            "op_types": ["Linear"],
            "target_names": ["weight"],
            "target_settings": {"weight": {"quant_dtype": "int8"}},
            "quant_dtype": "int8",
        }
    ]
    assert static["distill"] == [
        {"op_names": ["fc2"], "lambda": 0.5, "link": "fc2", "apply_method": "mse"}
    ]


@pytest.mark.parametrize(
    "text",
    [
        "prune **.conv1.weight in layer1.** sparse_ratio=0.5",
        'prune re"layer\\d\\.\\d\\.conv1".weight in layer1.** sparse_ratio=0.5',
    ],
)
def test_static_config_list_of_a_pattern_with_a_scope_selects_like_the_rules(text):
    rules = dsl_compress.parse(text, "t.rules")
    want = modules_of(rules.compile(resnet()))
    (config,) = rules.compile().config_list["prune"]
    assert nni_selection(resnet(), config) == want


@pytest.mark.parametrize("excluded", ["Conv2d", "BatchNorm2d"])
def test_static_config_list_does_not_export_an_exclude_with_a_type_scope(excluded):
    """NNI's exclude keys cannot intersect a type with a name scope: W304, nothing wrong written."""
    rules = dsl_compress.parse(
        f"prune Conv2d.weight sparse_ratio=0.5\nexclude {excluded} in layer1.**\n", "t.rules"
    )
    compiled = rules.compile()
    (config,) = compiled.config_list["prune"]
    assert not any(key.startswith("exclude_") for key in config)
    [note] = [d for d in compiled.diagnostics if d.code == "W304"]
    assert note.span.line == 2 and "type inside this scope" in note.message


# ----- 10. includes ------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_includes_resolve_relative_to_the_including_file(tmp_path, monkeypatch):
    write(tmp_path / "sub" / "c.rules", 'prune Linear.weight sparse_ratio=0.3\ninclude "d.rules"\n')
    write(tmp_path / "sub" / "d.rules", "prune fc1.weight sparse_ratio=0.4\n")
    write(tmp_path / "d.rules", "prune fc1.weight sparse_ratio=0.99\n")  # a decoy
    main = write(tmp_path / "main.rules", 'include "sub/c.rules"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rules = dsl_compress.load(main)
    assert [Path(f).name for f in rules.files] == ["c.rules", "d.rules"]
    compiled = rules.compile(TwoLinear())
    assert ratio_of(compiled, "fc1") == 0.4
    assert ratio_of(compiled, "fc2") == 0.3
    origin = entry(compiled, "fc1", "weight").key_origins["sparse_ratio"]
    assert origin == f"{(tmp_path / 'sub' / 'd.rules').resolve()}:1:18"


@pytest.mark.parametrize("include_first, ratio", [(True, 0.2), (False, 0.3)])
def test_included_statements_come_in_place(tmp_path, include_first, ratio):
    write(tmp_path / "base.rules", "prune Linear.weight sparse_ratio=0.3 granularity=in_channel\n")
    own = "prune Linear.weight sparse_ratio=0.2\n"
    include = 'include "base.rules"\n'
    main = write(tmp_path / "main.rules", include + own if include_first else own + include)
    compiled = dsl_compress.load(main).compile(TwoLinear())
    fc1 = entry(compiled, "fc1", "weight")
    assert fc1.setting["sparse_ratio"] == ratio  # the later statement wins, wherever it came from
    assert fc1.setting["granularity"] == "in_channel"  # and the keys still merge
    warning = only(compiled.diagnostics, "W302")
    assert str(warning.span.file).endswith("main.rules" if include_first else "base.rules")


def test_include_through_parse_with_a_path(tmp_path):
    write(tmp_path / "base.rules", "let ratio = 0.25\n")
    text = 'include "base.rules"\nprune Linear.weight sparse_ratio=ratio\n'
    compiled = dsl_compress.parse(text, str(tmp_path / "main.rules")).compile(TwoLinear())
    assert ratio_of(compiled, "fc2") == 0.25  # a let of an included file is visible


# ----- golden files ------------------------------------------------------------------------------


def model_name(source: Path) -> str | None:
    first = source.read_text(encoding="utf-8").splitlines()[:1]
    match = MODEL_LINE.match(first[0]) if first else None
    return match.group(1) if match else None


def relative(text: str) -> str:
    """Golden output names files relative to the data folder, wherever the checkout is."""
    for folder in (COMPILE_DIR, ERRORS_DIR):
        for form in (folder.resolve(), folder, os.path.relpath(folder)):
            text = text.replace(str(form) + os.sep, "")
    return text


def compile_golden(source: Path) -> str:
    rules = dsl_compress.load(source)
    compiled = rules.compile()
    out: dict = {
        "registry": compiled.registry,
        "config_list": compiled.config_list,
        "diagnostics": [d.render() for d in compiled.diagnostics],
    }
    name = model_name(source)
    if name:
        with_model = rules.compile(example_model(name)[0])
        out["model"] = name
        out["plan"] = [e.to_dict() for e in with_model.plan.entries]
        out["model_config_list"] = with_model.config_list
        out["model_diagnostics"] = [d.render() for d in with_model.diagnostics]
    return relative(json.dumps(out, indent=2) + "\n")


def test_there_are_compile_golden_cases():
    sources = sorted(COMPILE_DIR.glob("*.rules"))
    assert len(sources) >= 3
    assert len([s for s in sources if model_name(s) in ("resnet", "cnn")]) >= 2


@pytest.mark.parametrize("source", golden.cases(COMPILE_DIR))
def test_compile_golden(source: Path):
    golden.check(compile_golden(source), source.with_name(source.stem + ".expected.json"))


@pytest.mark.parametrize(
    "source",
    [s for s in sorted(COMPILE_DIR.glob("*.rules")) if model_name(s)],
    ids=lambda s: s.stem,
)
def test_model_config_list_round_trips_through_nni_first_wins(source: Path):
    """Fed back through NNI's semantics, the model config_list gives the plan, key for key."""
    model = example_model(model_name(source))[0]
    compiled = dsl_compress.load(source).compile(model)
    for mode in Mode:
        entries = compiled.plan.of_mode(mode)
        if not entries:
            continue
        replay = build_plan(
            model, compiled.config_list[mode.value], mode, registry=compiled.registries
        )
        assert [e.key for e in replay.entries] == [e.key for e in entries]
        for ours, nni in zip(entries, replay.entries):
            assert dict(nni.setting) == dict(ours.setting), ours.key


# Compile-error goldens whose current output is wrong: the .expected.txt holds the wanted output.


def render_diagnostics(source: Path) -> str:
    """Every diagnostic of compiling the file (with its model, if it names one), rendered."""
    name = model_name(source)
    model = example_model(name)[0] if name else None
    try:
        compiled = dsl_compress.load(source).compile(model)
        diags = compiled.diagnostics
    except CompressionError as exc:
        diags = exc.diagnostics
    if not diags:
        return "<compiled without diagnostics>\n"
    return relative("\n\n".join(d.render(source_lines(d, source)) for d in diags) + "\n")


def source_lines(diagnostic, source: Path) -> list[str]:
    file = Path(diagnostic.span.file) if diagnostic.span and diagnostic.span.file else source
    return (file if file.is_file() else source).read_text(encoding="utf-8").splitlines()


def test_there_are_compile_error_golden_cases():
    names = {s.stem for s in ERRORS_DIR.glob("*.rules")}
    assert len(names) >= 12


@pytest.mark.parametrize("source", golden.cases(ERRORS_DIR))
def test_compile_errors_golden(source: Path):
    golden.check(render_diagnostics(source), source.with_name(source.stem + ".expected.txt"))


def test_apply_of_the_align_cycle_golden_fails_with_e208():
    """apply() compiles first, so the cycle is E208 at the statement, before the engine runs."""
    source = ERRORS_DIR / "align_cycle.rules"
    model, batch = example_model(model_name(source))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CompressionError) as info:
            dsl_compress.apply(dsl_compress.load(source), model, calib=[batch])
    diag = only(info.value.diagnostics, "E208")
    assert "conv1.weight -> conv2.weight -> conv1.weight" in diag.message
    assert diag.span.line == 3


def test_alternatives_inside_a_segment():
    model, _ = example_model("resnet")
    compiled = dsl_compress.parse(
        "prune layer1.*.conv{1,2}.weight sparse_ratio=0.5\nprune layer2.{0,1}.bn1 sparse_ratio=0.5"
    ).compile(model)
    assert sorted({e.module for e in compiled.plan.entries}) == [
        "layer1.0.conv1",
        "layer1.0.conv2",
        "layer1.1.conv1",
        "layer1.1.conv2",
        "layer2.0.bn1",
        "layer2.1.bn1",
    ]
    text = "prune layer1.*.conv{1,2}.weight sparse_ratio=0.5\n"
    assert dsl_compress.format(text) == text
