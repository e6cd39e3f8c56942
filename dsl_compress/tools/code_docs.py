"""`explain CODE`: what a diagnostic code checks, why, an example and the fix, from the code table."""

from __future__ import annotations

from dsl_compress.codes import CODES
from dsl_compress.diagnostics import did_you_mean, fail

# Where each family of codes comes from and what it stops: the "why" around a code's summary.
FAMILIES = {
    "E1": "a .rules syntax error: the file does not parse, so nothing is compiled",
    "E2": "a .rules meaning error: the file parses but cannot be compiled",
    "W3": "found with a model: the rules compile, but on this model they do less than they say"
    " (a warning) or fail when applied (an error)",
    "C1": "NNI config_list validation: the config_list is rejected before the model is touched",
    "S2": "module selection of a config_list, against the model's module names and types",
    "R3": "the registry of settings templates per module type",
    "T4": "a target checked against the model's tensors",
    "P5": "pruning: masks could not be computed as configured",
    "Q6": "quantization: scales could not be computed as configured",
    "D7": "distillation: the student and teacher cannot be compared as linked",
    "L1": "the command line could not load a model, weights, data or a manifest",
    "X8": "the compression lifecycle or an argument of the Python API",
    "I9": "the command's last resort: an error inside dsl-compress itself",
    "F1": "a compressed-tensors export: the plan holds something the format cannot, refused "
    "before any tensor is read",
    "V1": "a deployment target's limit (vLLM): the checkpoint would be written but not served",
    "K1": "convert: settings written for another tool (NNI, llm-compressor, ModelOpt), or a "
    "preset naming them, turned into .rules",
}

# One example per code that a rules author meets, proven by the tests: (bundled model, rules).
EXAMPLES: dict[str, tuple[str | None, str]] = {
    "E101": (None, "prune conv1.weight sparse_ratio 0.5"),
    "E102": (None, "prune conv1.weight sparse_ratio=0.5 !"),
    "E103": (None, "prune conv1.weight sparse_ratio="),
    "E201": (None, "prune Conv2D.weight sparse_ratio=0.5"),
    "E202": (None, "prune Linear.weight sparse_ration=0.5"),
    "E203": (None, "prune Conv2d.weight sparse_ratio=0.5 metric=l3"),
    "E204": (None, "prune Conv2d.weight sparse_ratio=ratio"),
    "K121": (None, "quantize Linear.weight scheme=W8A8"),
    "E205": (None, 'include "missing.rules"'),
    "E206": (None, '# in a.rules\ninclude "a.rules"'),
    "E207": (None, "prune Conv2d.weight sparse_ratio=50"),
    "E208": (
        "cnn",
        "align conv1.weight with conv2.weight dims=[0]\n"
        "align conv2.weight with conv1.weight dims=[0]",
    ),
    "E209": (
        "cnn",
        "prune conv1.weight sparse_ratio=0.5\nalign bn1.weight with conv9.weight dims=[0]",
    ),
    "E210": (None, 'prune re"(".weight sparse_ratio=0.5'),
    "E211": (None, "let ratio = 0.5\nlet ratio = 0.3"),
    "E212": (None, "register prune Empty { }"),
    "W301": ("cnn", "prune conv9.weight sparse_ratio=0.5"),
    "W302": (
        "cnn",
        "prune conv*.weight sparse_ratio=0.5\nprune {conv1,conv2}.weight sparse_ratio=0.3",
    ),
    "W303": ("resnet", "prune conv*.weight sparse_ratio=0.5\nprune conv1.weight sparse_ratio=0.3"),
    "W304": (
        "cnn",
        "prune conv1.weight sparse_ratio=0.5 metric=l2\nprune conv2.weight sparse_ratio=0.5",
    ),
    "W305": ("cnn", "prune conv1.weight sparse_ratio=0.1 granularity=out_channel"),
    "E213": (
        "cnn",
        "prune conv2.weight sparse_ratio=0.5 granularity=out_channel\n"
        "align bn1.weight with conv2.weight dims=[0]",
    ),
    "E214": ("cnn", "align bn1.weight with conv1.weight dims=[0]"),
    "E215": ("cnn", "prune conv2.weight sparse_ratio=0.5 granularity=[5]"),
    "E216": (
        "cnn",
        "prune conv1.weight sparse_ratio=0.5 group=g\nprune conv2.weight sparse_ratio=0.25 group=g",
    ),
    "E217": (
        "cnn",
        "prune conv2.weight sparse_ratio=0.5 dependency_group_id=1\n"
        "prune conv3.weight sparse_ratio=0.25 dependency_group_id=1",
    ),
    "E218": ("cnn", "prune fc._output_ sparse_ratio=0.5"),
    "E222": ("cnn", 'prune conv3.weight mask_structure="2:4"'),
    "R301": ("transformer", "prune attn sparse_ratio=0.5"),
    "E104": (None, "let dims = " + "[" * 33 + "0" + "]" * 33),
    "E219": (None, 'include "/etc/passwd"'),
    "T405": ("tied_lm", "quantize Linear.weight quant_dtype=int8"),
}

# What the command prints for a code no rules text produces, proven by the tests.
COMMAND_EXAMPLES: dict[str, str] = {
    "E221": "$ cat typo.rules\n"
    "prune conv*.wieght sparse_ratio=0.5\n"
    "$ dsl-compress apply typo.rules --model dsl_compress.models:cnn --dry-run\n"
    "typo.rules:1:7: error[E221] this statement matches no module of the model (W301 is an "
    "error for apply)",
    "E223": "$ cat nm.rules\n"
    'prune Linear.weight mask_structure="2:4"\n'
    "$ dsl-compress compile nm.rules --format config-list\n"
    "nm.rules:1:1: error[E223] mask_structure='2:4' (prunes 2 of every 4 consecutive elements "
    "along the input dimension, keeping 2) is N:M sparsity, which NNI 3.0 has no setting for: "
    "an NNI config_list cannot express this statement",
    "I901": "$ dsl-compress lint model.rules\n"
    "error[I901] internal error in 'dsl-compress lint': RecursionError: maximum recursion "
    "depth exceeded (a bug in dsl-compress 0.1.0, not in your input: please report it as an "
    "issue with the command line and its input files)",
}

# Codes that only the engine finds, in the data of an apply: what it prints, proven by the tests.
ENGINE_EXAMPLES: dict[str, str] = {
    "Q604": "$ dsl-compress apply a.rules --model m.py:build --calib nan_batches.pt --out out\n"
    "module 'fc' target '_input_0': warning[Q604] 'fc._input_0' has 3 non-finite value(s) "
    "(NaN or inf) of 32 in the calibration batches: its scale comes from the finite ones; "
    "NaN stays NaN and inf saturates when quantized",
    "Q605": "$ dsl-compress apply a.rules --model m.py:build --calib tiny_batches.pt --out out\n"
    "module 'fc' target '_input_0': warning[Q605] the scale of 'fc._input_0' sits at its "
    "floor (float32 eps, 1.19e-07): its values reach only 1e-09, so they all quantize to 0",
}


def explain_code(code: str) -> str:
    """What a diagnostic code checks, why it matters, an example and the fix, from CODES."""
    key = code.strip().upper()
    if key not in CODES:
        fail("X803", f"unknown diagnostic code {code!r}", hint=_code_hint(code))
    info = CODES[key]
    sections = [f"{key} ({info.name})", _section("What it checks", info.summary)]
    family = FAMILIES.get(key[:2])
    if family:
        sections.append(_section("Why", f"This is {family}."))
    if key in EXAMPLES:
        model, text = EXAMPLES[key]
        note = f"# with --model dsl_compress.models:{model}\n" if model else ""
        sections.append(_section("Example", note + text))
    elif key in COMMAND_EXAMPLES:
        sections.append(_section("Example", COMMAND_EXAMPLES[key]))
    elif key in ENGINE_EXAMPLES:
        sections.append(_section("Example", ENGINE_EXAMPLES[key]))
    sections.append(_section("Fix", info.fix))
    return "\n\n".join(sections)


def _section(title: str, body: str) -> str:
    return f"{title}:\n" + "\n".join(f"    {line}" for line in body.split("\n"))


def _code_hint(word: str) -> str:
    """The closest codes, or the codes of a name ('matches-nothing' -> W301)."""
    named = [c for c, info in CODES.items() if info.name == word.strip().lower()]
    if named:
        return "did you mean " + " or ".join(repr(c) for c in named) + "?"
    return did_you_mean(word.strip().upper(), CODES) or "codes look like E201 or W301"
