"""The table of diagnostic codes: one entry per code, shared by errors, the linter and `explain`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeInfo:
    """What a diagnostic code checks, why it matters, and how to fix it."""

    name: str
    summary: str
    fix: str
    # The engine code a lint code foretells: lint reports it exactly when apply() fails with it.
    predicts: str | None = None


def _table(*rows: tuple[str, ...]) -> dict[str, CodeInfo]:
    return {code: CodeInfo(*info) for code, *info in rows}


CODES: dict[str, CodeInfo] = _table(
    # .rules syntax
    (
        "E101",
        "unexpected-token",
        "The parser met a word or symbol it did not expect here.",
        "Write what the hint says was expected.",
    ),
    (
        "E102",
        "unexpected-character",
        "A character that no token of the language starts with.",
        "Remove it, or quote it in a string.",
    ),
    (
        "E103",
        "unexpected-end",
        "The statement ends before it is complete.",
        "Finish the statement (a value after '=', a closing bracket).",
    ),
    (
        "E104",
        "input-limit",
        "Text beyond what the language reads: a list nested deeper than 32 levels, a number "
        "literal longer than 100 characters, or includes chained deeper than 32 files.",
        "Write the list flatter, the number shorter (1e30, not thirty zeros), the includes "
        "less deeply chained.",
    ),
    # .rules meaning
    (
        "E201",
        "unknown-module-type",
        "A CamelCase selector that names no module type of the model or registry.",
        "Use the exact class name.",
    ),
    (
        "E202",
        "unknown-setting",
        "A key no statement of this kind accepts.",
        "Use the suggested key.",
    ),
    (
        "E203",
        "bad-value",
        "A value of the wrong type or outside its set of choices.",
        "Give a value the message lists.",
    ),
    (
        "E204",
        "undefined-name",
        "A bare word where a number is needed that no let defines.",
        "Define it with let, or write the number.",
    ),
    (
        "E205",
        "missing-include",
        "An include names a file that does not exist.",
        "Fix the path; it is relative to the including file.",
    ),
    (
        "E206",
        "include-cycle",
        "Files include each other in a cycle.",
        "Remove one of the includes.",
    ),
    (
        "E219",
        "include-refused",
        "An include that reads outside the include root (the folder of the top-level rules "
        "file, or --include-root), or a file that is not rules text (NUL bytes, binary).",
        "Move the file under the root, or give --include-root; include .rules text only.",
    ),
    (
        "E220",
        "more-problems",
        "A statement with more problems than are shown: the first ones are, then their count.",
        "Fix the problems shown; the rest are usually the same mistake repeated.",
    ),
    ("E207", "ratio-out-of-range", "A ratio outside [0, 1].", "Write a fraction, 0.5 means half."),
    (
        "E208",
        "align-cycle",
        "align statements that point at each other in a cycle.",
        "Give one member a ratio instead.",
        "P504",
    ),
    (
        "E209",
        "missing-align-partner",
        "align found no partner module for a matched module.",
        "Check the partner pattern and the captured wildcards.",
    ),
    (
        "E210",
        "bad-selector",
        "A selector that cannot be used here (an invalid regex, a target on exclude).",
        "Fix the selector as the message says.",
    ),
    ("E211", "duplicate-let", "A let name defined twice.", "Rename one of them."),
    (
        "E212",
        "bad-register",
        "A register statement whose template is not valid for its kind.",
        "Follow the NNI template keys of the kind.",
    ),
    (
        "E224",
        "selector-too-costly",
        "A selector whose pattern could not be matched against the model's module names in "
        "bounded time (2 s, and 1 ms more for each name): a regex or glob that can split a name in very many ways, such as "
        're"(a|a)*b" or *a*a*a*a*a*a*.x, backtracks exponentially. Patterns of at most two '
        "unbounded repetitions, no repeated group and no inline flags are matched directly; "
        "others under the deadline.",
        "Write the pattern so that a name splits one way only: no repeated group, fewer "
        "wildcards in one segment, or an exact name.",
    ),
    # .rules lint (model-aware)
    (
        "W301",
        "matches-nothing",
        "A statement that matches no tensor of the model.",
        "Check names against the model; see the suggestion.",
    ),
    (
        "E221",
        "unmatched-in-apply",
        "apply refuses a statement, exclude or except that matches nothing (lint's W301): a "
        "typo would otherwise compress less than the rules say, after a long run.",
        "Fix the selector as the hint says, or remove the statement; pass --allow-unmatched "
        "(allow_unmatched=True in the Python API) to apply with it as the warning W301.",
    ),
    (
        "E222",
        "mask-structure-mismatch",
        "An N:M mask_structure ('2:4': 2 pruned of every 4 consecutive elements along the "
        "input, last, dimension) that cannot be made: with a sparse_ratio other than N/M, a "
        "sparse_threshold, a group, a dependency_group_id, min/max_sparse_ratio bounds, an "
        "internal_metric_block, an align, or a granularity of blocks larger than one element; "
        "or on a tensor whose last dimension is not a multiple of M.",
        "Remove the other key where mask_structure is set (sparse_ratio may stay when it is "
        "N/M), exclude the tensor, or use an M that divides its last dimension.",
        "P511",
    ),
    (
        "E223",
        "not-nni-expressible",
        "Exporting to an NNI 3.0 config_list (compile --format config-list) a statement, plan "
        "or config that NNI cannot express: N:M sparsity (mask_structure) has no NNI setting. "
        "A config_list read as input may hold mask_structure as dsl-compress's extension, "
        "and apply's config_list.json keeps it so that it applies again; NNI rejects it.",
        "Use compile --format plan (or apply) for such rules, or leave mask_structure out of "
        "what is exported to NNI.",
    ),
    (
        "W302",
        "equal-specificity-conflict",
        "Two equally specific statements give one tensor different values; the later wins.",
        "Make one more specific or remove one.",
    ),
    (
        "W303",
        "shadowed-statement",
        "A statement whose every setting is overridden for every tensor it matches.",
        "Remove it, or narrow the statements that override it.",
    ),
    (
        "W304",
        "needs-model",
        "A statement that can be written as an NNI config_list only with a model.",
        "Compile with a model to export it.",
    ),
    # .rules lint: checks lint() adds with a model (sizes the compiler does not look at)
    (
        "W305",
        "ratio-prunes-nothing",
        "A sparse_ratio that prunes nothing: floor(blocks * ratio) is 0 for the tensor.",
        "Raise the ratio to at least 1/blocks, or use a finer granularity.",
    ),
    (
        "E213",
        "align-size-mismatch",
        "An align partner whose sizes on the aligned dims do not fit the target.",
        "Align to a tensor of the same size on those dims, or fix dims.",
        "P509",
    ),
    (
        "E214",
        "align-partner-unmasked",
        "An align partner that gets no mask: no ratio, threshold, group or align.",
        "Give the partner a sparse_ratio, or align to a tensor that is pruned.",
        "P503",
    ),
    (
        "E215",
        "granularity-does-not-fit",
        "A granularity whose blocks do not divide the tensor's shape, or that has more entries "
        "than the tensor has dims.",
        "Pick block sizes that divide every dim, -1 for a whole dim, or exclude the tensor.",
        "P501",
    ),
    (
        "E216",
        "global-group-mismatch",
        "Members of a global group with different sparse ratios, or a member without one.",
        "Give every member of the group the same sparse_ratio.",
        "P505",
    ),
    (
        "E217",
        "dependency-group-mismatch",
        "Members of a dependency group that differ in ratio or block grid, or an "
        "internal_metric_block that does not divide the group's blocks.",
        "Use one sparse_ratio and the same granularity on tensors of the same shape.",
        "P506",
    ),
    (
        "E218",
        "masked-activation",
        "A sparse_ratio, threshold or group on an input or output; activations get masks "
        "only through align.",
        "Align the activation to a parameter's mask instead.",
        "P508",
    ),
    # config_list validation
    (
        "C101",
        "malformed-config-list",
        "config_list must be a list of dicts.",
        "Wrap each config in a dict inside one list.",
    ),
    ("C102", "unknown-key", "A key that no NNI 3.0 config accepts.", "Use the suggested key name."),
    ("C103", "wrong-type", "A key's value has the wrong type.", "Give the type the message names."),
    (
        "C104",
        "ratio-out-of-range",
        "A ratio outside [0, 1] (or the key's narrower range).",
        "Write a fraction, 0.5 means half.",
    ),
    (
        "C105",
        "bad-choice",
        "A value outside the key's closed set of choices.",
        "Use one of the listed values.",
    ),
    (
        "C106",
        "unknown-quant-dtype",
        "quant_dtype is not int2..int8 or uint2..uint8.",
        "Use e.g. int8 or uint8.",
    ),
    (
        "C107",
        "malformed-align",
        "align needs module_name, target_name and dims.",
        "Write all three keys.",
    ),
    (
        "C108",
        "missing-selector",
        "A config with no op_types, op_names or op_names_re selects nothing.",
        "Add a selector.",
    ),
    (
        "C109",
        "conflicting-keys",
        "sparse_ratio and sparse_threshold in one setting; or a mask_structure (N:M) with a key "
        "of the same setting it cannot combine with (see E222).",
        "Keep only one.",
    ),
    (
        "C110",
        "missing-key",
        "A key the mode requires is absent.",
        "Add the key; quant_dtype=None means int8.",
    ),
    (
        "C111",
        "unsupported-feature",
        "Valid in NNI 3.0 but not supported by this engine.",
        "Remove the key.",
    ),
    (
        "C112",
        "bad-granularity",
        "A granularity list or string that cannot describe blocks.",
        "Use out_channel, in_channel, per_channel or a list of ints.",
    ),
    # module selection and precedence
    (
        "S201",
        "unknown-module-name",
        "op_names names a module the model does not have.",
        "Use a name from model.named_modules().",
    ),
    (
        "S202",
        "selects-nothing",
        "A config or rule matches no module.",
        "Check the spelling of names and types.",
    ),
    (
        "S203",
        "shadowed-setting",
        "A later config sets a target an earlier config already set; the first wins.",
        "Remove one config or narrow its selection.",
    ),
    (
        "S204",
        "aliased-module",
        "One module object is reachable under several names.",
        "Select it by one name only.",
    ),
    (
        "S205",
        "bad-regex",
        "op_names_re holds an invalid regular expression.",
        "Fix the expression.",
    ),
    # registry
    (
        "R301",
        "unregistered-type",
        "The module type has no settings template for this mode.",
        "Register a template for it.",
    ),
    (
        "R302",
        "unknown-target",
        "A target name that neither the template nor target_settings defines.",
        "Use a template target or give target_settings.",
    ),
    (
        "R303",
        "malformed-template",
        "A registered template is not a dict of dicts.",
        "Follow the shape of the built-in templates.",
    ),
    # targets on the model
    (
        "T401",
        "missing-parameter",
        "A parameter target the module does not have.",
        "Use one of the module's parameters or buffers.",
    ),
    (
        "T402",
        "unknown-input",
        "An _input_ target that names no argument of forward().",
        "Use _input_<index> or an argument name.",
    ),
    (
        "T404",
        "shared-tensor",
        "One tensor is a target under two names (tied weights).",
        "Configure the tensor under one module only.",
    ),
    (
        "T405",
        "tied-tensor",
        "A compressed tensor is shared with another name (tied weights, e.g. lm_head.weight "
        "is embed.weight): compressing it changes both.",
        "Nothing to do if both should change; untie them to compress one.",
    ),
    (
        "T403",
        "absent-tensor",
        "The target tensor is None (for example bias=False); it is skipped.",
        "Nothing to do, or drop the target.",
    ),
    # pruning
    (
        "P501",
        "granularity-mismatch",
        "The granularity does not fit the tensor's shape.",
        "Pick block sizes that divide the dims.",
    ),
    (
        "P502",
        "granularity-kind",
        "The granularity is not allowed for this kind of target.",
        "out_channel/in_channel are for parameters, per_channel for activations.",
    ),
    (
        "P503",
        "align-source",
        "An align points at a target that gets no mask.",
        "Give the source a ratio, threshold or group.",
    ),
    (
        "P504",
        "align-cycle",
        "Align targets point at each other in a cycle.",
        "Break the cycle: one member needs a ratio.",
    ),
    (
        "P505",
        "global-group",
        "A global group whose members disagree or have no ratio.",
        "Give every member the same sparse_ratio.",
    ),
    (
        "P506",
        "dependency-group",
        "A dependency group whose members disagree in ratio or metric shape.",
        "Use one ratio and the same granularity.",
    ),
    (
        "P507",
        "metric-unsupported",
        "The metric cannot be computed for this setting.",
        "Choose another metric or granularity.",
    ),
    (
        "P508",
        "active-activation",
        "A ratio or threshold on an input/output target; activations get masks only by align.",
        "Use align.",
    ),
    (
        "P509",
        "align-shape",
        "The aligned dims do not match the target's shape.",
        "Check dims and the two tensors' sizes.",
    ),
    (
        "P510",
        "unknown-metric",
        "The pruning metric is not one of level, l1, l2, fpgm, random, taylor.",
        "Use one of those.",
    ),
    (
        "P511",
        "mask-structure",
        "An N:M mask_structure the mask stage cannot make: another pruning key that "
        "contradicts it (a sparse_ratio other than N/M, a threshold, a group, bounds, an align, "
        "a block granularity), a target that is not a parameter, or a tensor whose last "
        "dimension is not a multiple of M. N counts the pruned elements of each group of M "
        "consecutive elements along the last (input) dimension, as llm-compressor counts.",
        "Remove the other key, exclude the tensor, or use an M that divides its last dimension.",
    ),
    # quantization
    (
        "Q601",
        "never-observed",
        "An activation target saw no tensor during calibration.",
        "Give calibration batches that reach it.",
    ),
    (
        "Q603",
        "apply-method-overwritten",
        "Quantizers overwrite apply_method, as NNI 3.0's do; the value has no effect.",
        "Remove apply_method from the quantization config.",
    ),
    (
        "Q604",
        "non-finite-values",
        "A weight or the calibration batches of an activation held NaN or inf values; the "
        "scale comes from the finite ones.",
        "Load the right weights, or check the calibration batches for NaN and overflow.",
    ),
    (
        "Q605",
        "scale-at-floor",
        "A scale sits at its floor (float32 eps) because the values are tiny: they quantize "
        "to few steps, or all to 0.",
        "Calibrate with representative batches, rescale the values, or leave the target out.",
    ),
    (
        "Q602",
        "missing-calibration",
        "Activation quantization needs calibration batches.",
        "Pass calib=[batch, ...].",
    ),
    # distillation
    (
        "D701",
        "missing-link",
        "A distillation link names a module the teacher does not have.",
        "Link to a teacher module name.",
    ),
    (
        "D702",
        "no-outputs",
        "loss() was called before student and teacher both ran forward.",
        "Run teacher(x) and student(x) first.",
    ),
    (
        "D703",
        "shape-mismatch",
        "Student and teacher outputs have different shapes.",
        "Link modules with matching outputs.",
    ),
    (
        "D704",
        "distill-loss-needs-calib",
        "apply records a plan's distill entries (plan.json, config_list.json) but cannot train; "
        "with calibration batches it reports the distillation loss of the compressed model "
        "against the teacher (the uncompressed model, or --teacher) in its summary and "
        "distill.json. Without --calib there is no loss to report.",
        "Give --calib FILE|SPEC to see the loss; train with dsl_compress.distill and "
        "compression.loss() in Python.",
    ),
    # loading models, weights, calibration data and manifests (the command line)
    (
        "L101",
        "bad-model-spec",
        "--model must name a callable that returns a torch.nn.Module, or a local Hugging Face "
        "model folder (hf:DIR).",
        "Write package.module:callable, path/to/file.py:callable or hf:DIR.",
    ),
    (
        "L102",
        "bad-weights",
        "A checkpoint (file, sharded index or folder) that cannot be read or does not match "
        "the model.",
        "Give a .safetensors file, index or folder, or a .pt state dict, saved from this model.",
    ),
    (
        "L103",
        "bad-calibration",
        "Calibration data that cannot be read as a list of batches.",
        "Give a tensor file whose first dim is the batch list, or module:callable.",
    ),
    (
        "L104",
        "bad-manifest",
        "A manifest file that is not a dsl-compress manifest.",
        "Write it with `dsl-compress manifest --model SPEC -o manifest.json`.",
    ),
    (
        "L105",
        "bad-output",
        "An output path that cannot be written.",
        "Choose a writable folder; nothing was written.",
    ),
    (
        "L106",
        "target-matches-nothing",
        "explain --target selects no tensor of the model.",
        "Write a selector as in a statement ('*' within one dotted segment, '**' across them);"
        " see the suggestion.",
    ),
    (
        "L107",
        "output-leftovers",
        "Staging folders beside an output folder, left by a run that was killed or still runs; "
        "those of dead runs on this host are removed (an output they had set aside is put back).",
        "Nothing when it says it removed them; otherwise remove the folder it names once no "
        "run writes there.",
    ),
    (
        "L108",
        "bad-loss-spec",
        "--loss must name a callable loss_fn(model, batch) returning a scalar tensor.",
        "Write package.module:callable or path/to/file.py:callable.",
    ),
    (
        "L109",
        "unused-input",
        "An apply option that no rule uses: --loss without a taylor metric, --teacher without "
        "a distill statement. The run goes on without it.",
        "Leave the option out, or add the rule that uses it.",
    ),
    # engine lifecycle
    (
        "X801",
        "already-compressed",
        "A tensor already carries a mask (or quantizer) of the same kind, or a foreign "
        "parametrization.",
        "Leave it out of the second call, or restore() and give both settings to one apply.",
    ),
    (
        "X802",
        "compression-closed",
        "The compression was already finalized or restored.",
        "Create a new compression.",
    ),
    (
        "X804",
        "runtime-transform-dropped",
        "finalize() bakes parameters only; input/output transforms are removed.",
        "Export masks() and quant_params() for the run-time parts.",
    ),
    (
        "X803",
        "bad-argument",
        "An argument to a public function has the wrong form.",
        "See the function's docstring.",
    ),
    (
        "X805",
        "not-streamable",
        "A streamed run (apply --stream) reads each weight from the checkpoint once it is "
        "needed: its forward (and the taylor metric's backward) passes read each module's "
        "tensors as it runs (a tensor used outside its module's forward is read for that op). "
        "What it cannot do: run a module whose buffer the checkpoint lacks, or that uses a "
        "tensor made in __init__ without registering it (a meta skeleton has no values for "
        "them), or report the distillation loss under "
        "torchrun (one process runs the whole compressed model).",
        "Use --model hf:DIR, or run that apply as one process or without --stream.",
    ),
    (
        "X806",
        "distributed-run",
        "Several processes (torchrun) share one apply only as a streamed run: each reads and "
        "writes its own tensors; any other command, or apply without --stream, would make "
        "every process do the whole job and race for the output folder.",
        "Add --stream to apply under torchrun, or run the command as one process.",
    ),
    # deployment: compressed-tensors checkpoints and the vLLM server
    (
        "F101",
        "not-in-compressed-tensors",
        "apply --format compressed-tensors writes a checkpoint that transformers and vLLM load: "
        "int weights of Linear and Embedding modules (per tensor, channel, group or block), "
        "static per-tensor int quantization of a Linear's first input beside its weight, and "
        "pruned weights as zeros. A plan that quantizes anything else, sets a key the format "
        "has no field for, or distils, has no checkpoint of that format; it is refused before "
        "any tensor is read.",
        "Change the rule the message names as its hint says, or apply with the default "
        "--format dsl-compress, which holds every plan.",
    ),
    (
        "V101",
        "vllm-fused-schemes-differ",
        "vLLM fuses q_proj, k_proj and v_proj (and gate_proj, up_proj) of one block into one "
        "matrix with one quantization scheme: modules it fuses that are quantized differently, "
        "or some quantized and some not, fail to load there.",
        "Give every module of a fused set the same settings: one statement selecting them all "
        "(e.g. `*.self_attn.*_proj`, `*.mlp.*_proj`), or leave all of them out.",
    ),
    (
        "V102",
        "vllm-weight-only-per-tensor",
        "vLLM's kernels for int weights with float activations (pack-quantized; Marlin and its "
        "kin) take a scale per output channel or per group of inputs, not one per tensor or "
        "per 2-D block.",
        "Set granularity=out_channel, or a group such as granularity=[1, 128].",
    ),
    (
        "V103",
        "vllm-asymmetric-bits",
        "vLLM runs asymmetric (zero-point) int weights only at 4 or 8 bits and only with float "
        "activations; int-quantized weights beside int activations must be symmetric.",
        "Use quant_scheme=symmetric, or a 4- or 8-bit quant_dtype for weight-only affine.",
    ),
    (
        "V104",
        "vllm-module-type",
        "vLLM loads quantized weights into its Linear layers only: an embedding "
        "(VocabParallelEmbedding), the output head (ParallelLMHead) or any other module type "
        "has no place for the packed weights and scales of a compressed-tensors checkpoint.",
        "Select Linear modules only and leave the output head out, e.g. "
        "`quantize Linear.weight scheme=W4A16 except lm_head`.",
    ),
    (
        "V105",
        "vllm-int-activations",
        "vLLM runs int weights beside statically quantized int inputs (int-quantized) with its "
        "int8 kernels only: int8 weights with one scale per tensor or output channel, and int8 "
        "inputs.",
        "Quantize weights with quant_dtype=int8 granularity=out_channel beside int8 inputs, or "
        "drop the input quantization for weight-only int of other widths.",
    ),
    # convert: settings written for other tools turned into .rules (K101-K149: NNI and presets)
    (
        "K101",
        "first-wins-made-explicit",
        "NNI 3.0 gives a (module, target) the setting of the FIRST config that selects it; .rules "
        "lets the most specific statement win each key, then the later one. Where the two would "
        "differ, convert wrote the statements so that ours gives NNI's result: a later config "
        "moved before an earlier one, or a tensor's NNI setting written as an exact-name "
        "statement. The output carries a comment at each such place.",
        "Nothing to fix; read the comment. To keep the .rules short, make the NNI configs "
        "select disjoint modules, or write the most specific config first.",
    ),
    (
        "K102",
        "start-anchored-regex",
        "NNI matches op_names_re with re.match, anchored at the start only: 'fc' also selects "
        "'fc1' and 'fc.sub'. convert writes it as re\"(?:fc).*\" (a .rules regex matches the "
        "whole name) and warns where the model shows names a whole-name match would not take.",
        "If those names were not meant, end the NNI regex with '$' (and the .rules regex is "
        "then the plain pattern).",
    ),
    (
        "K103",
        "not-converted",
        "A part of the source that has no .rules equivalent (fuse_names; an align whose "
        "source module the selector cannot name; NNI 2.x keys NNI 3.0 itself breaks on). It "
        "is left out of the output, never silently.",
        "Write that part by hand if it is still wanted, or drop it from the source.",
    ),
    (
        "K104",
        "round-trip-differs",
        "With a model, convert compiles the .rules it wrote and compares the plan with the "
        "source's, every tensor and key: a difference means the output does not select what "
        "the source selects.",
        "Report it with the source file: the converted rules must reproduce it exactly.",
    ),
    (
        "K105",
        "unknown-source",
        "convert could not read the source, or cannot tell which tool it was written for.",
        "Give --from nni|llmcompressor|modelopt, and for an NNI list its --mode.",
    ),
    (
        "K106",
        "first-wins-unverified",
        "Two NNI configs may select the same module, and without a model convert cannot tell "
        "whether .rules precedence (specificity per key) gives NNI's first-wins result there.",
        "Convert with --model SPEC or --manifest FILE: the output is then checked per tensor and "
        "repaired where the two differ.",
    ),
    (
        "K107",
        "legacy-exclude-is-global",
        "An NNI 2.x config with exclude: True is translated by NNI 3.0 (when the list's first "
        "config is NNI 2.x) into excludes of every config of the list: it removes its modules "
        "from all of them, not only from the configs after it. convert writes it as an "
        "`exclude ... from KIND` statement.",
        "Nothing to fix; in NNI 3.0 syntax write exclude_op_* keys in the configs concerned.",
    ),
    (
        "K121",
        "preset-not-expressible",
        "A scheme= preset whose meaning NNI 3.0, and so dsl-compress, cannot hold: W8A8 "
        "quantizes activations dynamically, per token, at run time, while NNI scales "
        "activations statically from calibration.",
        "Quantize the weights with scheme=W8A16 and the inputs statically in a statement of "
        "their own (quantize Linear._input_ quant_dtype=int8 quant_scheme=symmetric).",
    ),
    # the command's last resort
    (
        "I901",
        "internal-error",
        "An exception dsl-compress did not expect: a bug in dsl-compress, not in your input. "
        "The command prints it as one line and exits 2, never with a traceback.",
        "Report it as an issue of dsl-compress with the command line and its input files.",
    ),
    # convert: llm-compressor recipes and ModelOpt quant_cfg (K101-K149 are the command's and NNI's)
    (
        "K150",
        "convert-source-unreadable",
        "The llm-compressor recipe or ModelOpt quant_cfg does not parse (YAML, a Python literal or "
        "JSON) or is not shaped as the tool reads it (a modifier, group or entry of the wrong kind).",
        "Fix the text at the place named; the source tool would reject it too.",
    ),
    (
        "K151",
        "algorithm-not-converted",
        "A calibration algorithm or its knobs (GPTQ block_size/dampening_frac/actorder, "
        "SparseGPT's solver, AWQ, SmoothQuant, observers, ModelOpt's algorithm): not a setting. "
        "The settings it carries are converted; dsl-compress computes plain round-to-nearest "
        "scales and magnitude masks.",
        "Nothing to fix: know that the values will differ from the tool's; run the algorithm "
        "there if it matters.",
    ),
    (
        "K152",
        "no-nni-equivalent",
        "A part of the source with no NNI 3.0 setting: float formats (FP8, NVFP4, MXFP, ModelOpt "
        "(E,M) tuples), dynamic (per-token, run-time) activation scales, kv-cache schemes. "
        "Reported, not guessed: the output leaves those tensors unquantized.",
        "Quantize them with the source tool, or choose an integer static scheme.",
    ),
    (
        "K153",
        "regex-targets-ranked-alphabetically",
        "compressed-tensors ranks the re: targets matching one module by the pattern's text, "
        "alphabetically, not by how specific they are: with re:.*q_proj$ and re:.*proj$ in two "
        "groups, q_proj gets the re:.*proj$ group (compressed-tensors #847). The conversion "
        "reproduces that order.",
        "If the other group was meant, say so in the rules (an exact name or a narrower pattern).",
    ),
    (
        "K154",
        "ignore-misses-sparsity-names",
        "SparseGPT and Wanda name each pruned layer '<target>.<sub>': a Linear target is named "
        "'lm_head.', so ignore: [lm_head] (or re:.*lm_head$) matches nothing and lm_head is pruned "
        "(llm-compressor #1142). The conversion reproduces it.",
        "In the recipe write ignore: ['re:.*lm_head']; in the rules add exclude lm_head from prune.",
    ),
    (
        "K155",
        "recipe-without-stages",
        "llm-compressor reads only '<x>_stage' keys holding '<y>_modifiers' mappings; anything else "
        "(a flat recipe with the modifier at the top level) is skipped silently: 0 modifiers.",
        "Nest the modifiers: quant_stage: {quant_modifiers: {QuantizationModifier: {...}}}.",
    ),
    (
        "K156",
        "modelopt-default-last",
        'ModelOpt 0.47 rewrites the legacy dict key "default" to "*" in place, so a trailing '
        '"default": {"enable": False} disables every quantizer set before it (ModelOpt <=0.40 '
        'applied "default" first). The conversion follows 0.47.',
        "Put \"default\" first, or use the list form with {quantizer_name: '*', enable: False} first.",
    ),
    (
        "K157",
        "modelopt-pattern-wider-than-meant",
        "A ModelOpt pattern that does not end in a quantizer name (*q_proj*) matches every quantizer "
        "of the module: weight, input and output; and re: patterns mean nothing to fnmatch.",
        "End the pattern with the quantizer: *q_proj.weight_quantizer.",
    ),
    (
        "K158",
        "exact-names-added",
        "The source's selection could not be written with general statements alone (its "
        "precedence or matching differs from ours on this model): exact module-name statements "
        "were added so that every tensor gets what the source gives it.",
        "Review the statements marked 'exact name'; they may show a selection the author did not mean.",
    ),
    (
        "K159",
        "conversion-not-reproduced",
        "With the model, the converted rules do not give a tensor the settings the source tool "
        "gives it, or do not compile.",
        "Write the named tensor's statement by hand.",
    ),
    (
        "K160",
        "source-part-not-converted",
        "A part of the source the converter does not read (an unknown modifier or key, a list of "
        "sparsities without the model): reported, never dropped silently.",
        "Convert it by hand, or give the model (--model) where the message says so.",
    ),
    (
        "K161",
        "source-target-matches-nothing",
        "With the model, a target, ignore entry or pattern of the source selects no module; the "
        "source tool only logs it (or raises, for SparseGPT targets).",
        "Fix the name: compressed-tensors compares full module names and re: patterns from the start.",
    ),
)

# A .rules setting's value is checked by the config_list checks; the language reports each of
# their codes under its own, so a rules file's problems all read in the E family.
LANGUAGE_CODE_OF: dict[str, str] = {
    "C101": "E203",
    "C102": "E202",
    "C103": "E203",
    "C104": "E207",
    "C105": "E203",
    "C106": "E203",
    "C107": "E203",
    "C108": "E203",
    "C109": "E203",
    "C110": "E203",
    "C111": "E203",
    "C112": "E203",
}
"""The language's code for each config_list (schema) code."""

LINT_CODE_OF: dict[str, str] = {
    info.predicts: code for code, info in CODES.items() if info.predicts is not None
}
"""The lint code that foretells each engine code it can (see CodeInfo.predicts)."""
