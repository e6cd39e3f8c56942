"""A streamed run (StreamRun over a meta skeleton and a tensor reader) is the in-memory apply,
bit for bit: every mask stage, both quantization granularities, fp32, fp16 and bf16."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch
from torch import nn

import dsl_compress as dc
from dsl_compress.diagnostics import CompressionError, CompressionWarning
from dsl_compress.engine.stream import StreamRun

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


class Blocks(nn.Module):
    """Two up/BN/down blocks and a conv stem: every stage has targets of two kinds."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.up1, self.bn1, self.down1 = nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 16)
        self.up2, self.bn2, self.down2 = nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 16)


RULES = {
    "ratio_blocks_and_align": """
        prune up*.weight sparse_ratio=0.5 granularity=out_channel metric=l1;
        align bn*.weight with up*.weight dims=[0];
        align bn*.bias with bn*.weight dims=[0];
    """,
    "global_group_level": "prune down*.weight sparse_ratio=0.4 group=downs;",
    "global_group_bounds": """
        prune down1.weight sparse_ratio=0.6 group=g max_sparse_ratio=0.5;
        prune down2.weight sparse_ratio=0.6 group=g max_sparse_ratio=0.9;
    """,
    "global_blocks_and_elements": """
        prune up*.weight sparse_ratio=0.3 group=mixed granularity=out_channel metric=l2;
        prune down*.weight sparse_ratio=0.3 group=mixed;
    """,
    "dependency_group": """
        prune up*.weight sparse_ratio=0.5 dependency_group_id=1 granularity=out_channel;
    """,
    "threshold_with_bounds": """
        prune Linear.weight sparse_threshold=0.1 min_sparse_ratio=0.2 max_sparse_ratio=0.6;
    """,
    "fpgm_and_random": """
        prune stem.weight sparse_ratio=0.5 granularity=out_channel metric=fpgm;
        prune down*.weight sparse_ratio=0.5 metric=random;
    """,
    "quant_per_tensor_and_channel": """
        quantize up*.weight quant_dtype=int8 granularity=out_channel;
        quantize down*.weight quant_dtype=uint4 quant_scheme=affine;
        quantize stem.weight quant_dtype=int4 granularity=out_channel;
    """,
    "quant_groups": """
        quantize up*.weight quant_dtype=int4 granularity=[1, 8];
        quantize down*.weight quant_dtype=uint8 quant_scheme=affine granularity=[1, 16];
    """,
    "prune_then_quantize": """
        prune up*.weight sparse_ratio=0.5 granularity=out_channel;
        align bn*.weight with up*.weight dims=[0];
        prune down*.weight sparse_ratio=0.3 group=downs;
        quantize Linear.weight quant_dtype=int8 granularity=out_channel;
    """,
}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = Blocks()
    for module in (model.bn1, model.bn2):  # BN weights that differ, so aligns show
        module.weight.data.uniform_(0.5, 1.5)
        module.bias.data.uniform_(-0.5, 0.5)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _in_memory(rules, state, dtype):
    model = Blocks().to(dtype)
    model.load_state_dict(state)
    compression = dc.apply(rules, model, seed=5)
    masks = {f"{m}.{t}": v for m, d in compression.masks().items() for t, v in d.items()}
    quant = {f"{m}.{t}": p for m, d in compression.quant_params().items() for t, p in d.items()}
    final = {k: v.detach().clone() for k, v in compression.finalize().state_dict().items()}
    return final, masks, quant, compression.plan


def _streamed(rules, state, dtype, reads: Counter | None = None, scales_like_weights=False):
    with torch.device("meta"):
        skeleton = Blocks().to(dtype)
    plan = rules.compile(skeleton).plan
    kinds = {k: v.dtype for k, v in skeleton.state_dict().items()}

    def read(name):
        if reads is not None:
            reads[name] += 1
        tensor = state[name]
        return tensor.to(kinds[name]) if tensor.is_floating_point() else tensor.clone()

    run = StreamRun(skeleton, plan, read, seed=5, scales_like_weights=scales_like_weights)
    sink = Recorder()
    result = run.run(sink)
    return sink, result, run, plan


class Recorder:
    """A sink that keeps copies of what it is handed."""

    def __init__(self):
        self.tensors, self.masks, self.scales, self.codes = {}, {}, {}, {}

    def model(self, name, tensor, codes=None):
        assert name not in self.tensors, f"{name} handed on twice"
        self.tensors[name] = tensor.clone()
        if codes is not None:
            self.codes[name] = codes()

    def mask(self, name, mask):
        self.masks[name] = mask.clone()

    def read_mask(self, name):
        return self.masks[name].clone()

    def quant(self, name, params):
        self.scales[name] = params


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", sorted(RULES))
def test_streamed_equals_in_memory_bit_for_bit(case, dtype):
    rules = dc.parse(RULES[case])
    state = _state()
    final, masks, quant, plan = _in_memory(rules, state, dtype)
    sink, result, run, streamed_plan = _streamed(rules, state, dtype)
    assert streamed_plan.to_dicts() == plan.to_dicts()
    assert sink.tensors.keys() == final.keys()
    for name, value in final.items():
        got = sink.tensors[name]
        assert got.dtype == value.dtype and torch.equal(got, value), name
    assert sink.masks.keys() == masks.keys()
    for name, mask in masks.items():
        assert torch.equal(sink.masks[name], mask), name
    assert sink.scales.keys() == quant.keys()
    for name, params in quant.items():
        got = sink.scales[name].to_dict()
        assert torch.equal(got["scale"], params["scale"]), name
        assert torch.equal(got["zero_point"], params["zero_point"]), name
        assert {k: got[k] for k in ("qmin", "qmax", "quant_dtype", "quant_scheme")} == {
            k: params[k] for k in ("qmin", "qmax", "quant_dtype", "quant_scheme")
        }
    assert masks or quant  # every case compresses something


@pytest.mark.parametrize("scales_like_weights", [False, True], ids=["fp32-scales", "rounded"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "case", ["quant_per_tensor_and_channel", "quant_groups", "prune_then_quantize"]
)
def test_codes_dequantize_to_the_final_value(case, dtype, scales_like_weights):
    """Each quantized tensor's codes, in its dtype's range, give its final value (masked
    elements included) as (codes - zero point) * scale; with scales_like_weights every scale
    is a value of the weight's dtype."""
    rules = dc.parse(RULES[case])
    sink, *_ = _streamed(rules, _state(), dtype, scales_like_weights=scales_like_weights)
    assert sink.codes.keys() == sink.scales.keys() and sink.codes
    for name, codes in sink.codes.items():
        params, final = sink.scales[name], sink.tensors[name]
        assert codes.dtype == torch.int16
        assert params.qrange.qmin <= int(codes.min()) and int(codes.max()) <= params.qrange.qmax
        kernel, scale, zp = params.kernel, params.scale, params.zero_point
        if kernel is not None:
            scale, zp = kernel.expand(scale, final.shape), kernel.expand(zp, final.shape)
        value = ((codes.to(torch.float32) - zp) * scale).to(dtype)
        assert torch.equal(value, final), name
        rounded = params.scale.to(dtype).to(params.scale.dtype)
        assert torch.equal(rounded, params.scale) == (scales_like_weights or dtype == torch.float32)


def test_rounded_scales_change_only_what_the_weight_dtype_cannot_hold():
    """fp32 weights: rounding a scale to fp32 changes nothing, bit for bit."""
    rules = dc.parse(RULES["prune_then_quantize"])
    plain, *_ = _streamed(rules, _state(), torch.float32)
    rounded, *_ = _streamed(rules, _state(), torch.float32, scales_like_weights=True)
    for name, value in plain.tensors.items():
        assert torch.equal(value, rounded.tensors[name]), name


@pytest.mark.parametrize("case", sorted(RULES))
def test_layout_announces_exactly_what_is_handed_on(case):
    sink, _, run, _ = _streamed(dc.parse(RULES[case]), _state(), torch.bfloat16)
    layout = run.layout
    planned = {t.name: (t.shape, t.dtype) for t in layout.model}
    assert planned == {k: (tuple(v.shape), v.dtype) for k, v in sink.tensors.items()}
    assert {t.name: t.shape for t in layout.masks} == {
        k: tuple(v.shape) for k, v in sink.masks.items()
    }
    scales = {}
    for name, params in sink.scales.items():
        scales[f"{name}.scale"] = tuple(params.scale.shape)
        scales[f"{name}.zero_point"] = tuple(params.zero_point.shape)
        assert dict(layout.quant_metadata[name]) == {
            k: v for k, v in params.to_dict().items() if not isinstance(v, torch.Tensor)
        }
    assert {t.name: t.shape for t in layout.quant} == scales


def test_each_tensor_outside_a_group_is_read_once():
    reads: Counter = Counter()
    rules = dc.parse(RULES["prune_then_quantize"])
    sink, *_ = _streamed(rules, _state(), torch.float32, reads)
    grouped = {"down1.weight", "down2.weight"}
    assert all(count == 1 for name, count in reads.items() if name not in grouped)
    # a global group: a statistics pass, then the mask pass
    assert all(2 <= reads[name] <= 4 for name in grouped)
    assert set(reads) == set(sink.tensors)


def test_settings_errors_are_raised_before_any_read():
    reads: Counter = Counter()
    text = "prune up1.weight sparse_ratio=0.5 granularity=[5, 5];"
    with pytest.raises(CompressionError) as caught:
        _streamed(dc.parse(text), _state(), torch.float32, reads)
    assert caught.value.diagnostics[0].code.startswith("P")
    assert not reads


def test_progress_counts_every_tensor_and_its_bytes():
    rules = dc.parse(RULES["prune_then_quantize"])
    with torch.device("meta"):
        skeleton = Blocks()
    state = _state()
    run = StreamRun(skeleton, rules.compile(skeleton).plan, lambda n: state[n].clone())
    calls = []
    run.run(Recorder(), lambda done, total, label: calls.append((done, total, label)))
    assert [c[0] for c in calls] == list(range(1, len(state) + 1))
    assert {c[1] for c in calls} == {len(state)}
    megabytes = sum(t.numel() * t.element_size() for t in state.values()) / 1e6
    assert calls[-1][2].startswith(f"{megabytes:,.0f} of {megabytes:,.0f} MB ")


class Mlp(nn.Module):
    """Up, BN, ReLU, down: a forward for calibration, with buffers (BN's running stats)."""

    def __init__(self):
        super().__init__()
        self.up, self.bn, self.down = nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 16)

    def forward(self, x):
        return self.down(torch.relu(self.bn(self.up(x))))


OBSERVED = """
    quantize Linear.weight quant_dtype=int8 granularity=out_channel;
    quantize Linear._input_0 quant_dtype=int8;
    quantize down._output_0 quant_dtype=uint8 quant_scheme=affine;
"""


IO_MASKED = """
    prune up.weight sparse_ratio=0.5 granularity=out_channel metric=l1;
    align up._output_0 with up.weight dims=[0];
    align down._input_0 with up.weight dims=[0] apply_method=add;
"""

MASKED_OBSERVED = """
    prune up.weight sparse_ratio=0.5 granularity=out_channel metric=l1;
    align bn.weight with up.weight dims=[0];
    prune down.weight sparse_ratio=0.3 apply_method=add;
""" + OBSERVED


@pytest.mark.parametrize(
    "rules_text",
    [OBSERVED, MASKED_OBSERVED, IO_MASKED, IO_MASKED + OBSERVED],
    ids=["alone", "masked", "io masks", "io masks and observed"],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_observed_targets_are_calibrated_by_onloading_as_in_memory(dtype, rules_text):
    torch.manual_seed(0)
    source = Mlp().eval()
    source.bn.running_mean.uniform_(-1, 1)
    state = {k: v.detach().clone() for k, v in source.state_dict().items()}
    batches = [torch.randn(4, 16).to(dtype) for _ in range(3)]
    rules = dc.parse(rules_text)
    model = Mlp().to(dtype).eval()
    model.load_state_dict(state)
    compression = dc.apply(rules, model, calib=batches)
    expected = {f"{m}.{t}": p for m, d in compression.quant_params().items() for t, p in d.items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*\[X804\]", CompressionWarning)  # run-time parts
        final = {k: v.clone() for k, v in compression.finalize().state_dict().items()}

    with torch.device("meta"):
        skeleton = Mlp().to(dtype).eval()
    kinds = {k: v.dtype for k, v in skeleton.state_dict().items()}
    reads: Counter = Counter()

    def read(name):
        reads[name] += 1
        return state[name].to(kinds[name])

    run = StreamRun(skeleton, rules.compile(skeleton).plan, read)
    run.calibrate(batches)
    sink = Recorder()
    run.run(sink)
    assert sink.scales.keys() == expected.keys()
    for name, params in expected.items():
        assert torch.equal(sink.scales[name].scale, params["scale"]), name
        assert torch.equal(sink.scales[name].zero_point, params["zero_point"]), name
    assert all(torch.equal(sink.tensors[k], v) for k, v in final.items())
    assert all(p.is_meta for p in skeleton.parameters())  # the skeleton is left as it was
    assert all(b.is_meta for b in skeleton.buffers())
    assert {t.name for t in run.layout.quant} == {
        f"{name}.{part}" for name in expected for part in ("scale", "zero_point")
    }
    masks = {f"{m}.{t}": v for m, d in compression.masks().items() for t, v in d.items()}
    assert sink.masks.keys() == masks.keys()
    assert all(torch.equal(sink.masks[k], v) for k, v in masks.items())
    # read once per batch to calibrate (and once for its first-batch shape and once for its
    # mask, when masks come first), then once to compress
    if rules_text in (OBSERVED, MASKED_OBSERVED):
        assert reads["up.weight"] == len(batches) + (3 if masks else 1)


def test_observed_targets_without_batches_are_q602():
    with torch.device("meta"):
        skeleton = Mlp().eval()
    run = StreamRun(skeleton, dc.parse(OBSERVED).compile(skeleton).plan, lambda n: None)
    with pytest.raises(CompressionError) as caught:
        run.calibrate(None)
    assert [d.code for d in caught.value.diagnostics] == ["Q602"]


def test_align_targets_follow_their_source_so_its_reduced_mask_is_held_briefly():
    with torch.device("meta"):
        skeleton = Blocks()
    plan = dc.parse(RULES["ratio_blocks_and_align"]).compile(skeleton).plan
    run = StreamRun(skeleton, plan, lambda name: None)
    assert run._order()[:6] == [
        "up1.weight",
        "bn1.weight",
        "bn1.bias",
        "up2.weight",
        "bn2.weight",
        "bn2.bias",
    ]


class Gated(nn.Module):
    """A module that only batches with a positive mean reach: its input is first seen late."""

    def __init__(self):
        super().__init__()
        self.up, self.extra = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x):
        y = self.up(x)
        return self.extra(y) if bool(x.mean() > 0) else y


def test_a_target_first_reached_by_a_later_batch_is_laid_out_and_observed_as_in_memory():
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in Gated().state_dict().items()}
    batches = [-torch.ones(2, 16), torch.ones(2, 16)]
    rules = dc.parse("prune up.weight sparse_ratio=0.5; quantize extra._input_0 quant_dtype=int8;")
    model = Gated()
    model.load_state_dict(state)
    expected = dc.apply(rules, model, calib=batches).quant_params()["extra"]["_input_0"]
    with torch.device("meta"):
        skeleton = Gated()
    run = StreamRun(skeleton, rules.compile(skeleton).plan, lambda name: state[name].clone())
    run.calibrate(batches)
    sink = Recorder()
    run.run(sink)
    assert torch.equal(sink.scales["extra._input_0"].scale, expected["scale"])
    assert "extra._input_0.scale" in {t.name for t in run.layout.quant}
