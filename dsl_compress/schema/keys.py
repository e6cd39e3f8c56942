"""The key table: one row per key of a config_list or a .rules statement, saying where it is
written, how its value is checked and what it means (schema/key_sets derives every key set)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dsl_compress.schema.checks import (
    GRANULARITY_RULE,
    KeyRule,
    apply_method_rule,
    is_finite_number,
    is_int,
    ratio_rule,
    type_rule,
)
from dsl_compress.schema.mask_structure import MASK_STRUCTURE_RULE
from dsl_compress.schema.presets import SCHEME_RULE
from dsl_compress.schema.key_checks import (
    ALIGN_RULE,
    DIMS_RULE,
    FUSE_NAMES_RULE,
    GROUP_RULE,
    METRIC_RULE,
    NAMES_RULE,
    PATTERNS_RULE,
    QUANT_DTYPE_RULE,
    QUANT_SCHEME_RULE,
    is_group_id,
    is_link,
)
from dsl_compress.vocab import DEFAULT_METRIC, Mode


class Level(str, enum.Enum):
    """Where a key is written."""

    SELECT = "select"  # a config's top level: chooses modules
    EXCLUDE = "exclude"  # a config's top level: removes modules from the selection
    TARGET = "target"  # a config's top level: names the targets and their settings
    SETTING = "setting"  # a config's shorthand, and every target setting
    CONFIG = "config"  # a config's top level only
    LEGACY = "legacy"  # NNI 2.x: refused, with its NNI 3.0 replacement
    LANGUAGE = "language"  # .rules statements only


class Statement(str, enum.Enum):
    """The kinds of .rules statement that take settings."""

    COMPRESS = "compress"  # prune, quantize, distill
    ALIGN = "align"
    REGISTER = "register"


@dataclass(frozen=True)
class KeyRow:
    """One key: where it is written, how its value is checked, and what it means."""

    name: str  # NNI's spelling; for a language key, the .rules spelling
    level: Level
    meaning: str  # one line, for `explain` and hover
    mode: Mode | None = None  # None: the key means the same in every mode
    rule: KeyRule | None = None
    statements: frozenset[Statement] = frozenset()  # the .rules statements that take it
    nni: str | None = None  # the NNI key a language key writes, when it has another name
    numeric: bool = False  # a bare word in its value is a let name
    masks: bool = False  # a value other than None makes the target's mask
    instead: str | None = None  # what to write where the key is refused
    required: str | None = None  # a config must hold it: the hint when it does not
    default: str = "unset"  # what an unwritten key means, in words (hover)
    # Not in NNI's templates: a template takes the key wherever it takes this other key (so a
    # shorthand or a type-wide statement reaches the targets that key reaches).
    with_template_key: str | None = None


_COMPRESS = frozenset({Statement.COMPRESS})
_REGISTER = frozenset({Statement.REGISTER})
_COMPRESS_REGISTER = frozenset({Statement.COMPRESS, Statement.REGISTER})
_ALL = frozenset(Statement)


def _legacy(name: str, instead: str) -> KeyRow:
    return KeyRow(name, Level.LEGACY, "an NNI 2.x key that NNI 3.0 rejects", instead=instead)


KEYS: tuple[KeyRow, ...] = (
    # ---- a config's selection and targets (every mode) ----
    KeyRow("op_types", Level.SELECT, "select the modules of these class names", rule=NAMES_RULE),
    KeyRow("op_names", Level.SELECT, "select the modules of these names", rule=NAMES_RULE),
    KeyRow(
        "op_names_re",
        Level.SELECT,
        "select the modules whose names match these regexes",
        rule=PATTERNS_RULE,
    ),
    KeyRow("exclude_op_types", Level.EXCLUDE, "skip the modules of these types", rule=NAMES_RULE),
    KeyRow("exclude_op_names", Level.EXCLUDE, "skip the modules of these names", rule=NAMES_RULE),
    KeyRow(
        "exclude_op_names_re",
        Level.EXCLUDE,
        "skip the modules whose names match these regexes",
        rule=PATTERNS_RULE,
    ),
    KeyRow("target_names", Level.TARGET, "the targets of each module to compress", rule=NAMES_RULE),
    # Checked by config_list against the mode's setting keys.
    KeyRow("target_settings", Level.TARGET, "a setting dict per target, over the shorthand"),
    # ---- pruning ----
    KeyRow(
        "sparse_ratio",
        Level.SETTING,
        "the fraction of elements masked",
        Mode.PRUNE,
        ratio_rule(0, 1, low_open=False, high_open=False),
        _COMPRESS_REGISTER,
        numeric=True,
        masks=True,
    ),
    KeyRow(
        "sparse_threshold",
        Level.SETTING,
        "mask the elements whose metric is below this value",
        Mode.PRUNE,
        type_rule("a finite int or float", is_finite_number),
        _COMPRESS_REGISTER,
        numeric=True,
        masks=True,
    ),
    KeyRow(
        "max_sparse_ratio",
        Level.SETTING,
        "the most a target of a global group is masked",
        Mode.PRUNE,
        ratio_rule(0, 1, low_open=True, high_open=False),
        _COMPRESS_REGISTER,
        numeric=True,
        default="unset (1.0)",
    ),
    KeyRow(
        "min_sparse_ratio",
        Level.SETTING,
        "the least a target of a global group is masked",
        Mode.PRUNE,
        ratio_rule(0, 1, low_open=False, high_open=True),
        _COMPRESS_REGISTER,
        numeric=True,
        default="unset (0.0)",
    ),
    KeyRow(
        "global_group_id",
        Level.SETTING,
        "targets ranked together for one sparse_ratio",
        Mode.PRUNE,
        type_rule("an int or str", is_group_id),
        _REGISTER,  # statements spell it group (below)
        masks=True,
    ),
    KeyRow(
        "dependency_group_id",
        Level.SETTING,
        "targets that share one mask",
        Mode.PRUNE,
        type_rule("an int or str", is_group_id),
        _COMPRESS_REGISTER,
        masks=True,
    ),
    KeyRow(
        "internal_metric_block",
        Level.SETTING,
        "the block size the metric is pooled over",
        Mode.PRUNE,
        type_rule("an int >= 1", lambda v: is_int(v) and v >= 1),
        _COMPRESS_REGISTER,
        default="unset (1)",
    ),
    KeyRow(
        "granularity",
        Level.SETTING,
        "the blocks masked as one",
        Mode.PRUNE,
        GRANULARITY_RULE,
        _ALL,
        default="default",
    ),
    KeyRow(
        "apply_method",
        Level.SETTING,
        "how the mask is applied",
        Mode.PRUNE,
        apply_method_rule(Mode.PRUNE),
        _ALL,
        default="mul",
    ),
    KeyRow(
        "align",
        Level.SETTING,
        "follow another target's mask along dims",
        Mode.PRUNE,
        ALIGN_RULE,
        _REGISTER,
        instead="write `align A.target with B.target dims=[...]` as its own statement",
    ),
    # ours, not NNI 3.0's (NNI cannot express N:M; exporting it to NNI is E223)
    KeyRow(
        "mask_structure",
        Level.SETTING,
        "N:M semi-structured sparsity, 'N:M': N pruned in every M consecutive elements along "
        "the input (last) dimension, as llm-compressor counts (not NNI 3.0; '2:4' keeps 2 of 4)",
        Mode.PRUNE,
        MASK_STRUCTURE_RULE,
        _COMPRESS_REGISTER,
        masks=True,
        with_template_key="sparse_ratio",
    ),
    # ---- quantization ----
    KeyRow(
        "quant_dtype",
        Level.SETTING,
        "the integer type values are rounded to (None means int8)",
        Mode.QUANTIZE,
        QUANT_DTYPE_RULE,
        _COMPRESS_REGISTER,
        required="write quant_dtype=None for int8: NNI 3.0 requires the key even then",
        default="unset (int8)",
    ),
    KeyRow(
        "quant_scheme",
        Level.SETTING,
        "symmetric, or affine with a zero point",
        Mode.QUANTIZE,
        QUANT_SCHEME_RULE,
        _COMPRESS_REGISTER,
        default="unset (symmetric)",
    ),
    KeyRow(
        "granularity",
        Level.SETTING,
        "the blocks that share one scale",
        Mode.QUANTIZE,
        GRANULARITY_RULE,
        _COMPRESS_REGISTER,
        default="default",
    ),
    KeyRow(
        "apply_method",
        Level.SETTING,
        "how the quantization is simulated",
        Mode.QUANTIZE,
        apply_method_rule(Mode.QUANTIZE),
        _COMPRESS_REGISTER,
        default="clamp_round",
    ),
    KeyRow(
        "fuse_names",
        Level.CONFIG,
        "modules fused before quantizing",
        Mode.QUANTIZE,
        FUSE_NAMES_RULE,
    ),
    # ---- distillation ----
    KeyRow(
        "lambda",
        Level.SETTING,
        "the weight of this distillation loss",
        Mode.DISTILL,
        type_rule("a finite int or float", is_finite_number),
        _COMPRESS_REGISTER,
        numeric=True,
        default="unset (1.0)",
    ),
    KeyRow(
        "link",
        Level.SETTING,
        "the teacher modules this output is compared with",
        Mode.DISTILL,
        type_rule("a str, or a list or tuple of str", is_link),
        _COMPRESS_REGISTER,
        default="unset (the student module's own name)",
    ),
    KeyRow(
        "apply_method",
        Level.SETTING,
        "the distillation loss",
        Mode.DISTILL,
        apply_method_rule(Mode.DISTILL),
        _COMPRESS_REGISTER,
        default="unset (mse)",
    ),
    # ---- the language's own keys ----
    KeyRow(
        "metric",
        Level.LANGUAGE,
        "how elements are ranked",
        Mode.PRUNE,
        METRIC_RULE,
        _COMPRESS,
        default=DEFAULT_METRIC,
    ),
    KeyRow(
        "scheme",
        Level.LANGUAGE,
        "a named preset (W4A16, W4A16_ASYM, W8A16) standing for its quant_dtype, quant_scheme "
        "and granularity; keys written beside it override the preset's",
        Mode.QUANTIZE,
        SCHEME_RULE,
        _COMPRESS_REGISTER,
    ),
    KeyRow(
        "group",
        Level.LANGUAGE,
        "targets ranked together for one sparse_ratio",
        Mode.PRUNE,
        GROUP_RULE,
        _COMPRESS,
        nni="global_group_id",
    ),
    KeyRow(
        "dims",
        Level.LANGUAGE,
        "the dimensions along which an aligned mask is followed",
        Mode.PRUNE,
        DIMS_RULE,
        frozenset({Statement.ALIGN, Statement.REGISTER}),
    ),
    # ---- NNI 2.x ----
    _legacy("sparsity", "NNI 3.0 calls it sparse_ratio: write sparse_ratio=<ratio>"),
    _legacy("sparsity_per_layer", "NNI 3.0 calls it sparse_ratio: write sparse_ratio=<ratio>"),
    _legacy("max_sparsity_per_layer", "NNI 3.0 calls it max_sparse_ratio"),
    _legacy(
        "total_sparsity",
        "write sparse_ratio=<ratio> and one global_group_id shared by the targets "
        "that are ranked together",
    ),
    _legacy("group_id", "NNI 3.0 calls it global_group_id"),
    _legacy(
        "quant_types",
        "use target_names: 'input' -> '_input_', 'weight' -> 'weight', " "'output' -> '_output_'",
    ),
    _legacy(
        "quant_bits",
        "use quant_dtype: quant_bits=8 becomes quant_dtype='int8' "
        "(per target: target_settings={'weight': {'quant_dtype': 'int8'}})",
    ),
    _legacy(
        "exclude",
        "exclude: True is gone; put exclude_op_names / exclude_op_types / "
        "exclude_op_names_re in the config whose selection should skip those modules",
    ),
    _legacy(
        "op_partial_names",
        "use op_names_re: op_partial_names=['fc'] becomes op_names_re=['.*fc.*']",
    ),
)
"""Every key, in the order messages list them."""
