"""The engine: plan x model -> Compression (masks, simulated quantization, distillation); the only
stage that changes a model.

The engine sees the plan, never the rules: it imports `dsl_compress.plan`, `dsl_compress.schema`,
the root modules (`diagnostics`, `codes`, `vocab`, `forward_signature`) and torch; never
`language` or `resolve`. This file imports nothing, so the torch-free `align_shapes` stays usable
by the linter without loading torch.

`prune` (with `metrics`, `masks`, `align`), `quantize` (with `quant_math`) and `distill` compute
what a plan asks for, running the model through `calibration` where needed; `compression` installs
it as `transforms` on parameters and `taps` on inputs and outputs, and owns the lifecycle.
"""
