"""config_list validation: every accept and reject of NNI 3.0's schema, and our deviations."""

from __future__ import annotations

from typing import Any

import pytest

import dsl_compress
from dsl_compress.codes import CODES, LANGUAGE_CODE_OF
from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity
from dsl_compress.schema.config_list import (
    CONFIG_RULES,
    LEGACY_KEYS,
    SELECTION_KEYS,
    SETTING_RULES,
    TARGET_KEYS,
    config_keys,
    setting_keys,
    validate_config_list,
)
from dsl_compress.schema.key_sets import (
    ALIGN_STATEMENT_KEYS,
    EXCLUDE_KEYS,
    MASK_KEYS,
    NAME_RULES,
    NUMERIC_KEYS,
    REQUIRED_KEYS,
    SELECTOR_KEYS,
    nni_key,
    statement_keys,
)
from dsl_compress.schema.keys import KEYS, Level, Statement
from dsl_compress.vocab import Mode

P, Q, D = Mode.PRUNE, Mode.QUANTIZE, Mode.DISTILL
SEL = {"op_types": ["Linear"]}
C0 = "config_list[0]"


def prune(extra: dict[str, Any]) -> dict[str, Any]:
    return {**SEL, **extra}


def quant(extra: dict[str, Any]) -> dict[str, Any]:
    return {**SEL, "quant_dtype": None, **extra}


def distill(extra: dict[str, Any]) -> dict[str, Any]:
    return {**SEL, **extra}


def diagnose(config: Any, mode: Mode) -> list[Diagnostic]:
    return validate_config_list([config], mode)


def find(diagnostics: list[Diagnostic], code: str, subject: str) -> Diagnostic:
    for diag in diagnostics:
        if diag.code == code and diag.subject == subject:
            return diag
    listing = "\n".join(d.render() for d in diagnostics) or "(none)"
    raise AssertionError(f"no {code} at {subject}; got:\n{listing}")


ALIGN = {"module_name": None, "target_name": "weight", "dims": [0]}

ACCEPTS = [
    # selection
    pytest.param(P, {"op_types": ["Linear"], "sparse_ratio": 0.5}, id="op_types"),
    pytest.param(P, {"op_names": ["fc1"], "sparse_ratio": 0.5}, id="op_names"),
    pytest.param(P, {"op_names_re": [r"b1\..*"], "sparse_ratio": 0.5}, id="op_names_re"),
    pytest.param(P, {"op_types": []}, id="empty-op_types-selects-nothing"),
    pytest.param(P, {"op_names": ["a"], "op_names_re": ["b"], "op_types": ["Linear"]}, id="all"),
    pytest.param(
        P,
        prune({"exclude_op_names": ["fc"], "exclude_op_types": ["Conv2d"]}),
        id="exclude_op_names-and-types",
    ),
    pytest.param(P, prune({"exclude_op_names_re": ["b1", r"fc\d$"]}), id="exclude_op_names_re"),
    pytest.param(P, prune({"target_names": ["weight", "_input_", "_output_0"]}), id="target_names"),
    pytest.param(P, prune({"target_settings": {}}), id="empty-target_settings"),
    pytest.param(P, prune({"target_settings": {"weight": {}}}), id="empty-target-setting"),
    pytest.param(P, prune({"target_settings": {"a.b": {"sparse_ratio": 0.1}}}), id="odd-target"),
    # pruning values
    pytest.param(P, prune({"sparse_ratio": 0.5}), id="sparse_ratio-float"),
    pytest.param(P, prune({"sparse_ratio": 0}), id="sparse_ratio-int-0"),
    pytest.param(P, prune({"sparse_ratio": 1}), id="sparse_ratio-int-1"),
    pytest.param(P, prune({"sparse_ratio": 1.0}), id="sparse_ratio-1.0"),
    pytest.param(P, prune({"sparse_threshold": 0.01}), id="sparse_threshold-float"),
    pytest.param(P, prune({"sparse_threshold": 2}), id="sparse_threshold-int"),
    pytest.param(
        P,
        prune({"sparse_ratio": 0.5, "target_settings": {"weight": {"sparse_threshold": 0.1}}}),
        id="ratio-and-threshold-in-different-dicts",
    ),
    pytest.param(P, prune({"max_sparse_ratio": 1}), id="max_sparse_ratio-int-1"),
    pytest.param(P, prune({"max_sparse_ratio": 0.3}), id="max_sparse_ratio-0.3"),
    pytest.param(P, prune({"min_sparse_ratio": 0}), id="min_sparse_ratio-int-0"),
    pytest.param(P, prune({"min_sparse_ratio": 0.5}), id="min_sparse_ratio-0.5"),
    pytest.param(P, prune({"global_group_id": 3}), id="global_group_id-int"),
    pytest.param(P, prune({"global_group_id": "g"}), id="global_group_id-str"),
    pytest.param(P, prune({"dependency_group_id": 0}), id="dependency_group_id-int"),
    pytest.param(P, prune({"dependency_group_id": "uuid"}), id="dependency_group_id-str"),
    pytest.param(P, prune({"internal_metric_block": 4}), id="internal_metric_block"),
    pytest.param(P, prune({"granularity": "default"}), id="granularity-default"),
    pytest.param(P, prune({"granularity": "in_channel"}), id="granularity-in_channel"),
    pytest.param(P, prune({"granularity": "out_channel"}), id="granularity-out_channel"),
    pytest.param(P, prune({"granularity": "per_channel"}), id="granularity-per_channel"),
    pytest.param(P, prune({"granularity": None}), id="granularity-None"),
    pytest.param(P, prune({"granularity": [1, -1]}), id="granularity-list"),
    pytest.param(P, prune({"granularity": [64, 64]}), id="granularity-blocks"),
    pytest.param(P, prune({"granularity": [[1]]}), id="granularity-nested-1"),
    pytest.param(P, prune({"granularity": [[1], "back"]}), id="granularity-nested-2"),
    pytest.param(P, prune({"granularity": [[1], "back", -1]}), id="granularity-nested-3"),
    pytest.param(P, prune({"apply_method": "mul"}), id="apply_method-mul"),
    pytest.param(P, prune({"apply_method": "add"}), id="apply_method-add"),
    pytest.param(P, prune({"apply_method": "bypass"}), id="apply_method-bypass"),
    pytest.param(P, prune({"align": ALIGN}), id="align"),
    pytest.param(
        P,
        prune({"align": {"module_name": "fc1", "target_name": "weight", "dims": [0, 1]}}),
        id="align-module_name-str",
    ),
    pytest.param(
        P,
        prune({"target_settings": {"bias": {"align": ALIGN, "apply_method": "mul"}}}),
        id="align-per-target",
    ),
    # quantization values
    pytest.param(Q, {**SEL, "quant_dtype": None}, id="quant_dtype-None"),
    pytest.param(Q, {**SEL, "quant_dtype": "int8"}, id="quant_dtype-int8"),
    pytest.param(Q, {**SEL, "quant_dtype": "int2"}, id="quant_dtype-int2"),
    pytest.param(Q, {**SEL, "quant_dtype": "int4"}, id="quant_dtype-int4"),
    pytest.param(Q, {**SEL, "quant_dtype": "uint2"}, id="quant_dtype-uint2"),
    pytest.param(Q, {**SEL, "quant_dtype": "uint8"}, id="quant_dtype-uint8"),
    pytest.param(
        Q,
        quant({"target_settings": {"weight": {"quant_scheme": "affine"}}}),
        id="target-setting-inherits-quant_dtype",
    ),
    pytest.param(
        Q,
        quant({"target_settings": {"_output_0": {"quant_dtype": "uint8"}}}),
        id="target-setting-quant_dtype",
    ),
    pytest.param(Q, quant({"quant_scheme": "affine"}), id="quant_scheme-affine"),
    pytest.param(Q, quant({"quant_scheme": "symmetric"}), id="quant_scheme-symmetric"),
    pytest.param(Q, quant({"granularity": "out_channel"}), id="quant-granularity-name"),
    pytest.param(Q, quant({"granularity": [1, -1]}), id="quant-granularity-list"),
    pytest.param(Q, quant({"apply_method": "bypass"}), id="quant-apply_method-bypass"),
    pytest.param(Q, quant({"apply_method": "clamp_round"}), id="quant-apply_method-clamp_round"),
    pytest.param(Q, quant({"apply_method": "qat_clamp_round"}), id="quant-apply_method-qat"),
    # distillation values
    pytest.param(D, distill({"lambda": 0.75}), id="lambda-float"),
    pytest.param(D, distill({"lambda": 1}), id="lambda-int"),
    pytest.param(D, distill({"link": "auto"}), id="link-str"),
    pytest.param(D, distill({"link": ["t.fc1", "t.fc2"]}), id="link-list"),
    pytest.param(D, distill({"link": ("t.fc1",)}), id="link-tuple"),
    pytest.param(D, distill({"apply_method": "mse"}), id="distill-apply_method-mse"),
    pytest.param(D, distill({"apply_method": "kl"}), id="distill-apply_method-kl"),
    pytest.param(D, distill({"target_settings": {"_output_0": {"lambda": 0.5}}}), id="distill-ts"),
]


@pytest.mark.parametrize("mode, config", ACCEPTS)
def test_accepts(mode: Mode, config: dict) -> None:
    assert diagnose(config, mode) == []


TS = f"{C0}.target_settings"

REJECTS = [
    # config_list shape
    pytest.param(P, "x", "C101", C0, "must be a dict", id="config-not-dict"),
    # selection
    pytest.param(P, {"sparse_ratio": 0.5}, "C108", C0, "none of op_types", id="no-selector"),
    pytest.param(
        P, {"exclude_op_names": ["fc"]}, "C108", C0, "selects no modules", id="only-exclude"
    ),
    pytest.param(P, {"op_types": "Linear"}, "C103", f"{C0}.op_types", "list of str", id="str"),
    pytest.param(
        P, {"op_types": ("Linear",)}, "C103", f"{C0}.op_types", "got tuple", id="op_types-tuple"
    ),
    pytest.param(
        P, {"op_names": ["fc", 3]}, "C103", f"{C0}.op_names[1]", "got int 3", id="op_names-int"
    ),
    pytest.param(P, {"op_names_re": None}, "C103", f"{C0}.op_names_re", "got None", id="re-None"),
    pytest.param(
        P, prune({"exclude_op_names": "fc"}), "C103", f"{C0}.exclude_op_names", "list", id="ex-str"
    ),
    pytest.param(
        P,
        prune({"exclude_op_types": [None]}),
        "C103",
        f"{C0}.exclude_op_types[0]",
        "must be a str",
        id="exclude_op_types-entry",
    ),
    pytest.param(
        P,
        {"op_names_re": ["fc(", "ok"]},
        "S205",
        f"{C0}.op_names_re[0]",
        "missing ), unterminated subpattern",
        id="bad-regex",
    ),
    pytest.param(
        P,
        prune({"exclude_op_names_re": ["*fc"]}),
        "S205",
        f"{C0}.exclude_op_names_re[0]",
        "nothing to repeat",
        id="bad-exclude-regex",
    ),
    pytest.param(
        P, prune({"target_names": "weight"}), "C103", f"{C0}.target_names", "list", id="tn-str"
    ),
    pytest.param(
        P, prune({"target_settings": ["weight"]}), "C103", TS, "got list", id="target_settings-list"
    ),
    pytest.param(
        P,
        prune({"target_settings": {"weight": 0.5}}),
        "C103",
        f"{TS}.weight",
        "must be a dict of setting keys",
        id="target-setting-not-dict",
    ),
    pytest.param(
        P,
        prune({"target_settings": {1: {}}}),
        "C103",
        f"{TS}[1]",
        "target name must be a str",
        id="target-name-not-str",
    ),
    pytest.param(
        P,
        prune({"target_settings": {"weight": {"op_types": ["Linear"]}}}),
        "C102",
        f"{TS}.weight.op_types",
        "config-level key",
        id="selection-key-in-target-settings",
    ),
    pytest.param(P, prune({"foo": 1}), "C102", f"{C0}.foo", "unknown key 'foo'", id="unknown-key"),
    # sparse_ratio / sparse_threshold
    pytest.param(
        P, prune({"sparse_ratio": 1.5}), "C104", f"{C0}.sparse_ratio", "got 1.5", id="1.5"
    ),
    pytest.param(
        P, prune({"sparse_ratio": -0.5}), "C104", f"{C0}.sparse_ratio", "in [0, 1]", id="-0.5"
    ),
    pytest.param(P, prune({"sparse_ratio": 50}), "C104", f"{C0}.sparse_ratio", "got 50", id="50"),
    pytest.param(
        P, prune({"sparse_ratio": None}), "C103", f"{C0}.sparse_ratio", "got None", id="ratio-None"
    ),
    pytest.param(
        P, prune({"sparse_ratio": True}), "C103", f"{C0}.sparse_ratio", "got bool", id="ratio-bool"
    ),
    pytest.param(
        P, prune({"sparse_ratio": "0.5"}), "C103", f"{C0}.sparse_ratio", "got str", id="ratio-str"
    ),
    pytest.param(
        P,
        prune({"sparse_threshold": None}),
        "C103",
        f"{C0}.sparse_threshold",
        "a finite int or float",
        id="threshold-None",
    ),
    pytest.param(
        P,
        prune({"sparse_ratio": 0.5, "sparse_threshold": 0.1}),
        "C109",
        C0,
        "both set",
        id="ratio-and-threshold",
    ),
    pytest.param(
        P,
        prune({"target_settings": {"weight": {"sparse_ratio": 0.5, "sparse_threshold": 0.1}}}),
        "C109",
        f"{TS}.weight",
        "sparse_ratio and sparse_threshold",
        id="ratio-and-threshold-per-target",
    ),
    # max / min ratio
    pytest.param(
        P, prune({"max_sparse_ratio": 0.0}), "C104", f"{C0}.max_sparse_ratio", "(0, 1]", id="max-0"
    ),
    pytest.param(
        P, prune({"max_sparse_ratio": 1.5}), "C104", f"{C0}.max_sparse_ratio", "1.5", id="max-1.5"
    ),
    pytest.param(
        P, prune({"max_sparse_ratio": None}), "C103", f"{C0}.max_sparse_ratio", "None", id="max-N"
    ),
    pytest.param(
        P, prune({"min_sparse_ratio": 1.0}), "C104", f"{C0}.min_sparse_ratio", "[0, 1)", id="min-1"
    ),
    pytest.param(
        P, prune({"min_sparse_ratio": -0.1}), "C104", f"{C0}.min_sparse_ratio", "-0.1", id="min-<0"
    ),
    # group ids, metric block
    pytest.param(
        P,
        prune({"global_group_id": 1.5}),
        "C103",
        f"{C0}.global_group_id",
        "an int or str, got float 1.5",
        id="global_group_id-float",
    ),
    pytest.param(
        P,
        prune({"global_group_id": True}),
        "C103",
        f"{C0}.global_group_id",
        "got bool",
        id="global_group_id-bool",
    ),
    pytest.param(
        P,
        prune({"dependency_group_id": None}),
        "C103",
        f"{C0}.dependency_group_id",
        "an int or str",
        id="dependency_group_id-None",
    ),
    pytest.param(
        P,
        prune({"internal_metric_block": 2.0}),
        "C103",
        f"{C0}.internal_metric_block",
        "an int >= 1",
        id="internal_metric_block-float",
    ),
    pytest.param(
        P,
        prune({"internal_metric_block": 0}),
        "C103",
        f"{C0}.internal_metric_block",
        "got int 0",
        id="internal_metric_block-0",
    ),
    # granularity
    pytest.param(
        P, prune({"granularity": (1, -1)}), "C112", f"{C0}.granularity", "not a tuple", id="tuple"
    ),
    pytest.param(
        P,
        prune({"granularity": "out_channels"}),
        "C105",
        f"{C0}.granularity",
        "not a granularity name",
        id="granularity-name",
    ),
    pytest.param(
        P, prune({"granularity": []}), "C112", f"{C0}.granularity", "granularity", id="gran-empty"
    ),
    pytest.param(
        P, prune({"granularity": [0, 1]}), "C112", f"{C0}.granularity", "positive", id="gran-zero"
    ),
    pytest.param(
        P,
        prune({"granularity": [[1], "middle"]}),
        "C112",
        f"{C0}.granularity",
        "'front' or 'back'",
        id="granularity-pad-mode",
    ),
    pytest.param(P, prune({"granularity": 1}), "C112", f"{C0}.granularity", "got int", id="g-int"),
    # apply_method
    pytest.param(
        P,
        prune({"apply_method": "movement_mul"}),
        "C105",
        f"{C0}.apply_method",
        "algorithm-internal",
        id="apply_method-movement_mul",
    ),
    pytest.param(
        P,
        prune({"apply_method": "slim_mul"}),
        "C105",
        f"{C0}.apply_method",
        "SlimPruner",
        id="apply_method-slim_mul",
    ),
    pytest.param(
        P,
        prune({"apply_method": "clamp_round"}),
        "C105",
        f"{C0}.apply_method",
        "quantization apply_method",
        id="apply_method-of-quantization",
    ),
    pytest.param(
        P, prune({"apply_method": None}), "C105", f"{C0}.apply_method", "got None", id="apply-None"
    ),
    # align
    pytest.param(
        P,
        prune({"align": {"target_name": "weight", "dims": [0]}}),
        "C107",
        f"{C0}.align",
        "missing module_name",
        id="align-no-module_name",
    ),
    pytest.param(
        P,
        prune({"align": {}}),
        "C107",
        f"{C0}.align",
        "missing module_name and target_name and dims",
        id="align-empty",
    ),
    pytest.param(P, prune({"align": "weight"}), "C107", f"{C0}.align", "must be a dict", id="al-s"),
    pytest.param(
        P,
        prune({"align": {**ALIGN, "dims": 0}}),
        "C103",
        f"{C0}.align.dims",
        "a list of int",
        id="align-dims-int",
    ),
    pytest.param(
        P,
        prune({"align": {**ALIGN, "target_name": None}}),
        "C103",
        f"{C0}.align.target_name",
        "must be a str",
        id="align-target_name-None",
    ),
    pytest.param(
        P,
        prune({"align": {**ALIGN, "dim": [0]}}),
        "C102",
        f"{C0}.align.dim",
        "unknown key 'dim' in align",
        id="align-extra-key",
    ),
    # quantization
    pytest.param(Q, {**SEL}, "C110", C0, "needs quant_dtype", id="quant_dtype-missing"),
    pytest.param(Q, quant({"quant_dtype": "int9"}), "C106", f"{C0}.quant_dtype", "'int9'", id="i9"),
    pytest.param(
        Q, quant({"quant_dtype": "int16"}), "C106", f"{C0}.quant_dtype", "int2", id="int16"
    ),
    pytest.param(Q, quant({"quant_dtype": "int1"}), "C106", f"{C0}.quant_dtype", "int1", id="int1"),
    pytest.param(
        Q, quant({"quant_dtype": "float16"}), "C106", f"{C0}.quant_dtype", "float16", id="float16"
    ),
    pytest.param(Q, quant({"quant_dtype": 8}), "C103", f"{C0}.quant_dtype", "got int 8", id="q8"),
    pytest.param(
        Q,
        quant({"target_settings": {"weight": {"quant_dtype": "int9"}}}),
        "C106",
        f"{TS}.weight.quant_dtype",
        "not supported",
        id="quant_dtype-per-target",
    ),
    pytest.param(
        Q, quant({"quant_scheme": None}), "C105", f"{C0}.quant_scheme", "got None", id="scheme-N"
    ),
    pytest.param(
        Q,
        quant({"quant_scheme": "asymmetric"}),
        "C105",
        f"{C0}.quant_scheme",
        "'affine' or 'symmetric'",
        id="quant_scheme-asymmetric",
    ),
    pytest.param(
        Q, quant({"granularity": (1, -1)}), "C112", f"{C0}.granularity", "tuple", id="q-gran-tuple"
    ),
    pytest.param(
        Q,
        quant({"apply_method": "lsq_clamp_round"}),
        "C105",
        f"{C0}.apply_method",
        "algorithm-internal",
        id="quant-apply_method-internal",
    ),
    pytest.param(
        Q,
        quant({"apply_method": "mul"}),
        "C105",
        f"{C0}.apply_method",
        "pruning apply_method",
        id="quant-apply_method-of-pruning",
    ),
    pytest.param(
        Q,
        quant({"fuse_names": [("conv1", "bn1")]}),
        "C111",
        f"{C0}.fuse_names",
        "not supported by this engine yet",
        id="fuse_names-unsupported",
    ),
    pytest.param(
        Q,
        quant({"fuse_names": [["conv1", "bn1"]]}),
        "C103",
        f"{C0}.fuse_names[0]",
        "rejects a list",
        id="fuse_names-list-of-lists",
    ),
    pytest.param(
        Q,
        quant({"fuse_names": [("conv1",)]}),
        "C103",
        f"{C0}.fuse_names[0]",
        "2 or 3 module names",
        id="fuse_names-one-name",
    ),
    pytest.param(
        Q, quant({"fuse_names": "conv1"}), "C103", f"{C0}.fuse_names", "got str", id="fuse-str"
    ),
    pytest.param(
        Q,
        quant({"target_settings": {"weight": {"fuse_names": []}}}),
        "C102",
        f"{TS}.weight.fuse_names",
        "config-level key",
        id="fuse_names-per-target",
    ),
    pytest.param(
        Q,
        quant({"sparse_ratio": 0.5}),
        "C102",
        f"{C0}.sparse_ratio",
        "is a pruning key",
        id="pruning-key-in-quantization",
    ),
    pytest.param(
        Q,
        quant({"target_settings": {"weight": {"align": ALIGN}}}),
        "C102",
        f"{TS}.weight.align",
        "is a pruning key",
        id="pruning-key-in-quant-target-setting",
    ),
    pytest.param(
        P,
        prune({"quant_dtype": "int8"}),
        "C102",
        f"{C0}.quant_dtype",
        "is a quantization key",
        id="quantization-key-in-pruning",
    ),
    pytest.param(
        P,
        prune({"fuse_names": [("a", "b")]}),
        "C102",
        f"{C0}.fuse_names",
        "is a quantization key",
        id="fuse_names-in-pruning",
    ),
    # distillation
    pytest.param(D, distill({"lambda": None}), "C103", f"{C0}.lambda", "got None", id="lambda-N"),
    pytest.param(D, distill({"lambda": True}), "C103", f"{C0}.lambda", "got bool", id="lambda-b"),
    pytest.param(D, distill({"lambda": "1"}), "C103", f"{C0}.lambda", "int or float", id="lam-s"),
    pytest.param(D, distill({"link": None}), "C103", f"{C0}.link", "a str, or a list", id="link-N"),
    pytest.param(D, distill({"link": ["a", 1]}), "C103", f"{C0}.link", "got list", id="link-int"),
    pytest.param(
        D, distill({"apply_method": None}), "C105", f"{C0}.apply_method", "'mse'", id="d-apply-N"
    ),
    pytest.param(
        D,
        distill({"apply_method": "mul"}),
        "C105",
        f"{C0}.apply_method",
        "pruning apply_method",
        id="distill-apply_method-of-pruning",
    ),
    pytest.param(
        D,
        distill({"granularity": "default"}),
        "C102",
        f"{C0}.granularity",
        "pruning and quantization key",
        id="granularity-in-distillation",
    ),
]


@pytest.mark.parametrize("mode, config, code, subject, text", REJECTS)
def test_rejects(mode: Mode, config: Any, code: str, subject: str, text: str) -> None:
    diagnostics = diagnose(config, mode)
    assert all(d.severity is Severity.ERROR for d in diagnostics)
    assert text in find(diagnostics, code, subject).message


LEGACY = [
    ("sparsity", P, "sparse_ratio"),
    ("sparsity_per_layer", P, "sparse_ratio"),
    ("max_sparsity_per_layer", P, "max_sparse_ratio"),
    ("total_sparsity", P, "global_group_id"),
    ("group_id", P, "global_group_id"),
    ("quant_types", Q, "target_names"),
    ("quant_bits", Q, "quant_dtype='int8'"),
    ("exclude", P, "exclude_op_names / exclude_op_types"),
    ("op_partial_names", P, "op_names_re"),
]


@pytest.mark.parametrize("key, mode, replacement", LEGACY)
def test_legacy_keys_name_their_replacement(key: str, mode: Mode, replacement: str) -> None:
    config = quant({key: 1}) if mode is Q else prune({key: 1})
    diag = find(diagnose(config, mode), "C102", f"{C0}.{key}")
    assert "NNI 2.x key" in diag.message
    assert replacement in diag.hint


@pytest.mark.parametrize(
    "mode, typo, suggestion",
    [
        (P, "sparsity_ratio", "'sparse_ratio'"),
        (P, "granualrity", "'granularity'"),
        (Q, "granualrity", "'granularity'"),
        (Q, "quant_type", "'quant_dtype'"),
        (P, "op_type", "'op_types'"),
        (P, "exclude_op_name", "'exclude_op_names'"),
        (D, "lamda", "'lambda'"),
    ],
)
def test_unknown_keys_get_did_you_mean(mode: Mode, typo: str, suggestion: str) -> None:
    config = quant({typo: 0.5}) if mode is Q else prune({typo: 0.5})
    diag = find(diagnose(config, mode), "C102", f"{C0}.{typo}")
    assert diag.hint.startswith("did you mean " + suggestion)


def test_did_you_mean_inside_target_settings() -> None:
    config = prune({"target_settings": {"weight": {"sparsity_ratio": 0.5}}})
    diag = find(diagnose(config, P), "C102", f"{C0}.target_settings.weight.sparsity_ratio")
    assert "'sparse_ratio'" in diag.hint


def test_granularity_name_typo_gets_did_you_mean() -> None:
    diag = find(diagnose(prune({"granularity": "out_chanel"}), P), "C105", f"{C0}.granularity")
    assert diag.hint.startswith("did you mean 'out_channel'")


def test_granularity_tuple_hint_is_the_list() -> None:
    diag = find(diagnose(prune({"granularity": ([1], "back")}), P), "C112", f"{C0}.granularity")
    assert diag.hint == "write it as a list: [[1], 'back']"


@pytest.mark.parametrize("ratio", [0, 1, 0.0, 0.25, 1.0])
def test_int_and_float_ratios_in_range_are_accepted(ratio: float) -> None:
    assert diagnose(prune({"sparse_ratio": ratio}), P) == []


@pytest.mark.parametrize("ratio", [1.5, -0.5, 2, float("nan")])
def test_ratios_out_of_range_are_rejected(ratio: float) -> None:
    assert [d.code for d in diagnose(prune({"sparse_ratio": ratio}), P)] == ["C104"]


def test_percentage_ratio_hint() -> None:
    diag = find(diagnose(prune({"sparse_ratio": 50}), P), "C104", f"{C0}.sparse_ratio")
    assert "write 0.5 for 50%" in diag.hint


def test_int9_is_rejected_with_bit_hint() -> None:
    diag = find(diagnose(quant({"quant_dtype": "int9"}), Q), "C106", f"{C0}.quant_dtype")
    assert "at most 8 bits" in diag.hint


def test_missing_quant_dtype_hint_says_write_none() -> None:
    diag = find(diagnose(dict(SEL), Q), "C110", C0)
    assert "quant_dtype=None" in diag.hint


def test_quant_scheme_none_hint_says_omit() -> None:
    diag = find(diagnose(quant({"quant_scheme": None}), Q), "C105", f"{C0}.quant_scheme")
    assert "omit quant_scheme" in diag.hint


def test_align_missing_module_name_names_it_and_shows_example() -> None:
    config = prune({"align": {"target_name": "weight", "dims": [0]}})
    [diag] = diagnose(config, P)
    assert (diag.code, diag.subject) == ("C107", f"{C0}.align")
    assert "module_name" in diag.message and "target_name" not in diag.message.split(";")[0]
    assert "{'module_name': None, 'target_name': 'weight', 'dims': [0]}" in diag.hint


def test_well_formed_fuse_names_gives_only_the_unsupported_error() -> None:
    diagnostics = diagnose(quant({"fuse_names": [("conv1", "bn1"), ("c", "b", "r")]}), Q)
    assert [(d.code, d.subject) for d in diagnostics] == [("C111", f"{C0}.fuse_names")]


def test_list_of_lists_fuse_names_also_says_unsupported() -> None:
    diagnostics = diagnose(quant({"fuse_names": [["conv1", "bn1"]]}), Q)
    assert sorted(d.code for d in diagnostics) == ["C103", "C111"]
    assert (
        find(diagnostics, "C103", f"{C0}.fuse_names[0]").hint
        == "write it as a tuple: ('conv1', 'bn1')"
    )


def test_every_error_in_a_list_is_reported() -> None:
    config_list = [
        {"op_types": ["Linear"], "sparsity_ratio": 0.5, "granualrity": "out_channel"},
        {"op_types": "Conv2d", "sparse_ratio": 1.5, "sparse_threshold": 0.1},
        "not a dict",
        {"exclude_op_names": ["fc"], "target_settings": {"weight": {"sparse_ratio": -1}}},
    ]
    found = [(d.code, d.subject) for d in validate_config_list(config_list, P)]
    assert found == [
        ("C102", "config_list[0].sparsity_ratio"),
        ("C102", "config_list[0].granualrity"),
        ("C103", "config_list[1].op_types"),
        ("C104", "config_list[1].sparse_ratio"),
        ("C109", "config_list[1]"),
        ("C101", "config_list[2]"),
        ("C108", "config_list[3]"),
        ("C104", "config_list[3].target_settings.weight.sparse_ratio"),
    ]


@pytest.mark.parametrize(
    "value, hint",
    [
        ({"op_types": ["Linear"]}, "wrap the config in a list"),
        (({},), "write it as a list"),
        (None, None),
    ],
)
def test_config_list_must_be_a_list(value: Any, hint: str | None) -> None:
    [diag] = validate_config_list(value, P)
    assert (diag.code, diag.subject) == ("C101", "config_list")
    assert "must be a list of dicts" in diag.message
    assert hint is None or hint in diag.hint


def test_empty_config_list_is_valid() -> None:
    assert validate_config_list([], Q) == []


def test_mode_may_be_given_as_its_string() -> None:
    assert validate_config_list([prune({"sparse_ratio": 0.5})], "prune") == []


def test_unknown_mode_is_a_bad_argument() -> None:
    with pytest.raises(CompressionError) as raised:
        validate_config_list([], "pruning")
    assert raised.value.codes == ["X803"]


def test_odd_target_names_are_quoted_in_the_subject() -> None:
    config = prune({"target_settings": {"a.b": {"sparse_ratio": 2.0}}})
    find(diagnose(config, P), "C104", f"{C0}.target_settings['a.b'].sparse_ratio")


def test_the_input_is_not_modified() -> None:
    config = prune({"sparse_ratio": 1.5, "target_settings": {"weight": {"granularity": [1, -1]}}})
    before = repr(config)
    diagnose(config, P)
    assert repr(config) == before


# ---- every key of the master table (nni-semantics.md §1.7) --------------------------------------

EVERY_KEY = {
    P: {
        "op_names": ["fc1"],
        "op_names_re": ["b1"],
        "op_types": ["Linear"],
        "exclude_op_names": ["fc2"],
        "exclude_op_names_re": ["b2"],
        "exclude_op_types": ["Conv2d"],
        "target_names": ["weight", "bias"],
        "target_settings": {"weight": {"sparse_threshold": 0.1}, "bias": {"align": ALIGN}},
        "sparse_ratio": 0.5,
        "max_sparse_ratio": 0.9,
        "min_sparse_ratio": 0.1,
        "global_group_id": 1,
        "dependency_group_id": "d",
        "internal_metric_block": 2,
        "granularity": "out_channel",
        "apply_method": "mul",
        "align": ALIGN,
    },
    Q: {
        **SEL,
        "target_settings": {"weight": {"quant_dtype": "uint8", "granularity": [1, -1]}},
        "quant_dtype": "int8",
        "quant_scheme": "affine",
        "granularity": "default",
        "apply_method": "qat_clamp_round",
    },
    D: {**SEL, "lambda": 0.75, "link": "auto", "apply_method": "kl"},
}
MASTER_TABLE_KEYS = {
    "op_names", "op_names_re", "op_types", "exclude_op_names", "exclude_op_names_re",
    "exclude_op_types", "target_names", "target_settings", "sparse_ratio", "sparse_threshold",
    "max_sparse_ratio", "min_sparse_ratio", "global_group_id", "dependency_group_id",
    "internal_metric_block", "granularity", "apply_method", "align", "quant_dtype",
    "quant_scheme", "fuse_names", "lambda", "link",
}  # fmt: skip


@pytest.mark.parametrize("mode", [P, Q, D])
def test_every_key_of_the_master_table_is_accepted(mode: Mode) -> None:
    assert diagnose(EVERY_KEY[mode], mode) == []


def test_tables_cover_exactly_the_master_table() -> None:
    covered = set(EVERY_KEY[P]) | set(EVERY_KEY[Q]) | set(EVERY_KEY[D]) | {"sparse_threshold"}
    assert covered | {"fuse_names"} == MASTER_TABLE_KEYS
    # mask_structure (N:M) is ours, not NNI's: accepted as input, refused as NNI export (E223).
    assert set().union(*(config_keys(m) for m in Mode)) == MASTER_TABLE_KEYS | {"mask_structure"}


def test_key_tables() -> None:
    assert set(SELECTION_KEYS) == {
        "op_types", "op_names", "op_names_re",
        "exclude_op_types", "exclude_op_names", "exclude_op_names_re",
    }  # fmt: skip
    assert TARGET_KEYS == ("target_names", "target_settings")
    assert setting_keys(Q) == {"quant_dtype", "quant_scheme", "granularity", "apply_method"}
    assert setting_keys("distill") == {"lambda", "link", "apply_method"}
    assert setting_keys(P) == frozenset(SETTING_RULES[P])
    assert "fuse_names" in CONFIG_RULES[Q] and "fuse_names" not in setting_keys(Q)
    assert not set(LEGACY_KEYS) & set().union(*(config_keys(m) for m in Mode))


# ---- the key table -------------------------------------------------------------------------------
# Every key set below is derived from schema/keys.py's rows; the literals are the sets each
# reader held before the table (config_schema, setting_schema, values, registration, the linter's
# and the engine's mask keys), so the table changes none of them.


def test_config_list_key_sets_derive_from_the_table():
    assert SELECTOR_KEYS == ("op_types", "op_names", "op_names_re")
    assert EXCLUDE_KEYS == ("exclude_op_types", "exclude_op_names", "exclude_op_names_re")
    assert SELECTION_KEYS == SELECTOR_KEYS + EXCLUDE_KEYS
    assert TARGET_KEYS == ("target_names", "target_settings")
    assert tuple(NAME_RULES) == SELECTION_KEYS + ("target_names",)
    assert LEGACY_KEYS["group_id"] == "NNI 3.0 calls it global_group_id"
    assert tuple(LEGACY_KEYS) == (
        "sparsity",
        "sparsity_per_layer",
        "max_sparsity_per_layer",
        "total_sparsity",
        "group_id",
        "quant_types",
        "quant_bits",
        "exclude",
        "op_partial_names",
    )


def test_setting_rules_derive_from_the_table_in_their_order():
    assert {m: tuple(SETTING_RULES[m]) for m in Mode} == {
        P: (
            "sparse_ratio",
            "sparse_threshold",
            "max_sparse_ratio",
            "min_sparse_ratio",
            "global_group_id",
            "dependency_group_id",
            "internal_metric_block",
            "granularity",
            "apply_method",
            "align",
            "mask_structure",
        ),
        Q: ("quant_dtype", "quant_scheme", "granularity", "apply_method"),
        D: ("lambda", "link", "apply_method"),
    }
    assert {m: tuple(CONFIG_RULES[m]) for m in Mode} == {P: (), Q: ("fuse_names",), D: ()}
    assert REQUIRED_KEYS == {
        P: {},
        Q: {"quant_dtype": "write quant_dtype=None for int8: NNI 3.0 requires the key even then"},
        D: {},
    }


def test_language_key_sets_derive_from_the_table():
    assert statement_keys(P) == (
        "sparse_ratio",
        "sparse_threshold",
        "max_sparse_ratio",
        "min_sparse_ratio",
        "dependency_group_id",
        "internal_metric_block",
        "granularity",
        "apply_method",
        "mask_structure",
        "metric",
        "group",
    )
    assert statement_keys(Q) == (
        "quant_dtype",
        "quant_scheme",
        "granularity",
        "apply_method",
        "scheme",
    )
    assert statement_keys(D) == ("lambda", "link", "apply_method")
    assert ALIGN_STATEMENT_KEYS == ("dims", "granularity", "apply_method")
    assert statement_keys(P, Statement.REGISTER) == tuple(SETTING_RULES[P]) + ("dims",)
    assert statement_keys(Q, Statement.REGISTER) == tuple(SETTING_RULES[Q]) + ("scheme",)
    assert statement_keys(D, Statement.REGISTER) == tuple(SETTING_RULES[D])
    assert NUMERIC_KEYS == {
        "sparse_ratio",
        "sparse_threshold",
        "max_sparse_ratio",
        "min_sparse_ratio",
        "lambda",
    }
    assert MASK_KEYS == (
        "sparse_ratio",
        "sparse_threshold",
        "global_group_id",
        "dependency_group_id",
        "mask_structure",
    )
    assert nni_key("group") == "global_group_id"
    assert nni_key("metric") == "metric" and nni_key("dims") == "dims"


def test_each_row_names_one_key_per_mode_and_says_what_it_means():
    assert len({(row.mode, row.name) for row in KEYS}) == len(KEYS)
    assert all(row.meaning for row in KEYS)
    assert all(row.instead for row in KEYS if row.level is Level.LEGACY)


def test_every_schema_code_has_a_language_code():
    schema_codes = {code for code in CODES if code.startswith("C")}
    assert set(LANGUAGE_CODE_OF) == schema_codes
    assert all(code.startswith("E") and code in CODES for code in LANGUAGE_CODE_OF.values())
    assert LANGUAGE_CODE_OF["C102"] == "E202" and LANGUAGE_CODE_OF["C104"] == "E207"


_CONFIG_LEVELS = (Level.SELECT, Level.EXCLUDE, Level.TARGET, Level.SETTING, Level.CONFIG)


@pytest.mark.parametrize("row", KEYS, ids=lambda row: f"{row.mode and row.mode.value}-{row.name}")
def test_config_list_validation_reads_every_row(row):
    modes = [row.mode] if row.mode is not None else list(Mode)
    for mode in modes:
        found = diagnose({**SEL, "quant_dtype": None, row.name: None}, mode)
        unknown = [d for d in found if d.code == "C102" and d.subject == f"{C0}.{row.name}"]
        if row.level in _CONFIG_LEVELS:
            assert row.name in config_keys(mode) and not unknown
        else:
            assert row.name not in config_keys(mode) and len(unknown) == 1
            assert row.level is not Level.LEGACY or unknown[0].hint == row.instead


def _statement(statement: Statement, mode: Mode, setting: str) -> str:
    if statement is Statement.ALIGN:
        return f"align bn.weight with conv.weight dims=[0] {setting}"
    if statement is Statement.REGISTER:
        return f"register {mode.value} Custom {{ weight {setting} }}"
    return f"{mode.value} Linear.weight {setting}"


# An align statement is a pruning statement: it reads the pruning rows.
_STATEMENT_CASES = [
    (row, statement)
    for row in KEYS
    if row.mode is not None
    for statement in Statement
    if statement is not Statement.ALIGN or row.mode is P
]


@pytest.mark.parametrize(
    "row, statement",
    _STATEMENT_CASES,
    ids=[f"{st.value}-{row.mode.value}-{row.name}" for row, st in _STATEMENT_CASES],
)
def test_the_language_reads_every_row(row, statement):
    if row.name == "dims" and statement is Statement.ALIGN:
        text = _statement(statement, row.mode, "")
    else:
        text = _statement(statement, row.mode, f"{row.name}=1")
    try:
        found = list(dsl_compress.parse(text, "t.rules").compile(None).diagnostics)
    except CompressionError as exc:
        found = list(exc.diagnostics)
    unknown = [d for d in found if d.code == "E202" and f"'{row.name}'" in d.message]
    assert bool(unknown) is (statement not in row.statements), [d.render() for d in found]
