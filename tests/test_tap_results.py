"""Each activation tap hands its module a result of its own, made from what its input and its
scale and zero point hold at that forward: a consumer that writes into its input touches
no other, nothing outlives the forward, ``torch.func`` transforms and concurrent forwards
get the formula's bits, and writes that bypass the version counter are seen."""

from __future__ import annotations

import sys
import threading
import weakref

import pytest
import torch
from torch import nn

import dsl_compress as dc
from dsl_compress import QuantizationSetting
from dsl_compress.engine.quant_dtypes import quant_range
from dsl_compress.engine.quant_math import broadcast_blocks
from dsl_compress.engine.quant_steps import compute_dtype
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.transforms import TargetTransform
from dsl_compress.schema.granularity import parse_granularity

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
BITS = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}
INPUTS = [{"op_types": ["Linear"], "target_names": ["_input_"], "quant_dtype": "int8"}]
INPUT_TEMPLATE = {
    "_input_": {
        "quant_dtype": None,
        "quant_scheme": None,
        "granularity": "default",
        "apply_method": "clamp_round",
    }
}


def assert_bits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert torch.equal(
        actual.contiguous().view(BITS[actual.dtype]), expected.view(BITS[actual.dtype])
    )


def reference(x, scale, zp, qrange, kernel=None):
    """NNI's expression, out of place, in the compute dtype; the result in x's dtype."""
    scale, zp = (broadcast_blocks(t, x, kernel, "tensor") for t in (scale, zp))
    y = x.to(compute_dtype(x.dtype))
    q = torch.round(torch.clamp(y / scale + zp, qrange.qmin, qrange.qmax))
    return ((q - zp) * scale).to(x.dtype)


def quant(scale=0.05, zp=0.0, kernel=None):
    as_tensor = lambda v: v if isinstance(v, torch.Tensor) else torch.tensor(v)  # noqa: E731
    return QuantParams(as_tensor(scale), as_tensor(zp), quant_range("int8"), None, kernel)


def expected(tap: TargetTransform | QuantParams, x: torch.Tensor) -> torch.Tensor:
    """The formula with the scale and zero point the tap holds now."""
    params = tap.quant if isinstance(tap, TargetTransform) else tap
    return reference(x, tap.scale, tap.zero_point, params.qrange, params.kernel)


class Qkv(nn.Module):
    """Three projections of one input, then one of their sum."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(8, 8) for _ in range(4))

    def forward(self, x):
        return self.out(self.q(x) + self.k(x) * self.v(x))


def quantized_qkv(dtype=torch.float32):
    """The model and its input quantization parameters by module name."""
    torch.manual_seed(0)
    model = Qkv().to(dtype).eval()
    compression = dc.quantize(model, INPUTS, calib=[torch.randn(4, 8).to(dtype)])
    return model, {key[0]: params for key, params in compression.quant_table.items()}


# ----- one result per tap and per call -----


@pytest.mark.parametrize("dtype", DTYPES + [torch.float64], ids=str)
def test_q_k_v_each_get_their_own_input_with_the_formula_bits(dtype):
    model, params = quantized_qkv(dtype)
    seen, x = {}, torch.randn(4, 8).to(dtype)
    for name in ("q", "k", "v"):
        hook = lambda m, args, name=name: seen.__setitem__(name, args[0])  # noqa: E731
        getattr(model, name).register_forward_pre_hook(hook)
    with torch.no_grad():
        model(x)
    assert seen["q"] is not seen["k"] and seen["k"] is not seen["v"]
    for name in ("q", "k", "v"):
        assert_bits(seen[name], expected(params[name], x))


class ViewThenInPlace(nn.Module):
    """One module returns a view of its (tapped) input, the next writes its input in place."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Flatten(0), nn.ReLU(inplace=True)

    def forward(self, x):
        return self.a(x), self.b(x)


@pytest.fixture
def flatten_taps():
    QuantizationSetting.register("Flatten", INPUT_TEMPLATE)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_an_in_place_consumer_does_not_write_into_another_taps_result(dtype, flatten_taps):
    torch.manual_seed(0)
    x = torch.randn(4, 8).to(dtype)
    model = ViewThenInPlace().eval()
    spec = [{"op_names": ["a", "b"], "target_names": ["_input_"], "quant_dtype": "int8"}]
    tap = dc.quantize(model, spec, calib=[x.clone()]).quant_table[("a", "_input_0")]
    with torch.no_grad():
        viewed, relu = model(x)
    assert bool((viewed < 0).any())
    assert_bits(viewed, expected(tap, x).flatten(0))
    assert_bits(relu, torch.relu(expected(tap, x)))


class LinearAndInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act = nn.Linear(8, 8), nn.ReLU(inplace=True)

    def forward(self, x):
        return self.fc(x).sum() + self.act(x).sum()


def test_training_through_taps_on_one_input_with_an_in_place_consumer_backpropagates():
    torch.manual_seed(0)
    model = LinearAndInPlace()
    spec = [{"op_names": ["fc", "act"], "target_names": ["_input_"], "quant_dtype": "int8"}]
    dc.quantize(model, spec, calib=[torch.randn(4, 8)])
    model.train()
    model(torch.randn(4, 8)).backward()
    assert model.fc.weight.grad is not None and bool(model.fc.weight.grad.abs().sum() > 0)


def test_one_tap_called_twice_on_one_input_gives_two_results(flatten_taps):
    flatten = nn.Flatten(0)
    spec = [{"op_types": ["Flatten"], "target_names": ["_input_"], "quant_dtype": "int8"}]
    dc.quantize(nn.Sequential(flatten), spec, calib=[torch.randn(4, 8)])
    x = torch.randn(4, 8)
    with torch.no_grad():
        first = flatten(x)
        kept = first.clone()
        flatten(x).mul_(0)
    assert torch.equal(first, kept)


def test_no_tap_result_outlives_the_forward():
    model, _ = quantized_qkv()
    results = []
    model.out.register_forward_pre_hook(lambda m, args: results.append(weakref.ref(args[0])))
    with torch.no_grad():
        out = model(torch.randn(4, 8))
    del out
    assert len(results) == 1 and results[0]() is None


# ----- torch.func -----


def test_vmap_over_a_model_with_input_taps_gives_the_per_sample_bits():
    model, _ = quantized_qkv()
    x = torch.randn(3, 4, 8)
    with torch.no_grad():
        batched = torch.func.vmap(model)(x)
        one_by_one = torch.stack([model(sample) for sample in x])
    assert_bits(batched, one_by_one)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("granularity", [None, "per_channel"])
def test_vmap_over_a_tap_gives_the_formula_bits(dtype, granularity):
    """Per tap in every dtype (a low-precision matmul may sum in another order under vmap)."""
    kernel = parse_granularity(granularity) if granularity else None
    blocks = (8,) if granularity else ()
    tap = TargetTransform(quant=quant(torch.rand(blocks) * 0.1 + 1e-2, torch.zeros(blocks), kernel))
    x = (torch.randn(3, 4, 8) * 3).to(dtype)
    with torch.no_grad():
        batched = torch.func.vmap(tap)(x)
    assert_bits(batched, torch.stack([expected(tap, sample) for sample in x]))


# ----- concurrent forwards -----


def run_concurrently(work, threads: int) -> None:
    """``work(i)`` in ``threads`` threads switching as often as the interpreter allows."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        started = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()
    finally:
        sys.setswitchinterval(interval)


def test_concurrent_forwards_of_one_tap_with_inputs_of_two_dtypes_get_their_own_bits():
    """A stress check: the interleaving that went wrong before was hit ~1 in 25,000 calls."""
    tap = TargetTransform(quant=quant(0.0123, 3.0))
    inputs = [torch.randn(64, dtype=torch.float64) * 3, torch.randn(64) * 3]
    wrong = [0, 0, 0, 0]

    def work(i):
        x = inputs[i % 2]
        want = expected(tap, x).view(BITS[x.dtype])
        with torch.no_grad():
            for _ in range(3000):
                wrong[i] += not torch.equal(tap(x).view(BITS[x.dtype]), want)

    run_concurrently(work, 4)
    assert wrong == [0, 0, 0, 0]


def test_concurrent_forwards_of_a_model_give_each_input_its_output():
    model, _ = quantized_qkv()
    inputs = [torch.randn(4, 8) * (i + 1) for i in range(2)]
    with torch.no_grad():
        wanted = [model(x.clone()) for x in inputs]
    wrong = [0, 0]

    def work(i):
        with torch.no_grad():
            for _ in range(1500):
                wrong[i] += not torch.equal(model(inputs[i]), wanted[i])

    run_concurrently(work, 2)
    assert wrong == [0, 0]


# ----- writes the version counter does not see -----


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_zero_point_written_through_data_after_a_zero_forward_is_used(dtype):
    tap = TargetTransform(quant=quant(0.05, 0.0))
    x = (torch.randn(64) * 3).to(dtype)
    with torch.no_grad():
        tap(x)
        tap.zero_point.data.fill_(3.0)
        assert_bits(tap(x), expected(tap, x))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("granularity", [[-1, 4], "per_channel", None])
def test_a_scale_written_through_data_is_used(dtype, granularity):
    kernel = parse_granularity(granularity) if granularity else None
    blocks = (1, 4) if granularity == [-1, 4] else (16,) if granularity else ()
    tap = TargetTransform(quant=quant(torch.full(blocks, 0.05), torch.zeros(blocks), kernel))
    x = (torch.randn(2, 16) * 3).to(dtype)
    with torch.no_grad():
        tap(x)
        tap.scale.data.mul_(2.0)
        assert_bits(tap(x), expected(tap, x))
        tap.scale.data = torch.full(blocks, 0.2)
        assert_bits(tap(x), expected(tap, x))


@pytest.mark.parametrize("granularity", [[-1, 4], None])
def test_buffers_replaced_twice_between_forwards_are_used(granularity):
    kernel = parse_granularity(granularity) if granularity else None
    blocks = (1, 4) if granularity else ()
    x = torch.randn(2, 16) * 3
    for i in range(50):
        tap = TargetTransform(quant=quant(torch.full(blocks, 0.05), torch.zeros(blocks), kernel))
        with torch.no_grad():
            tap(x)
            tap.scale, tap.zero_point = torch.full(blocks, 0.07), torch.full(blocks, 1.0)
            tap.scale, tap.zero_point = torch.full(blocks, 0.09 + i * 1e-3), torch.full(blocks, 5.0)
            assert_bits(tap(x), expected(tap, x))


class WriteBetween(nn.Module):
    """Two projections of one input, which ``write`` changes between them."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(8, 8), nn.Linear(8, 8)
        self.write = None

    def forward(self, x):
        self.first(x)
        if self.write is not None:
            self.write(x)
        return self.second(x)


def transpose_through_data(x):
    x.data = x.data.t()


INPUT_WRITES = {
    "data": lambda x: x.data.mul_(3.0),
    "numpy": lambda x: x.numpy().__imul__(3),
    "detach": lambda x: x.detach().mul_(3.0),
    "transpose": transpose_through_data,
    "set": lambda x: x.set_(torch.randn(8, 8)),
}


@pytest.mark.parametrize("write", list(INPUT_WRITES))
def test_an_input_written_between_two_taps_is_quantized_as_it_is_then(write):
    torch.manual_seed(0)
    model = WriteBetween().eval()
    compression = dc.quantize(model, INPUTS, calib=[torch.randn(8, 8)])
    model.write = INPUT_WRITES[write]
    params = compression.quant_table[("second", "_input_0")]
    seen = {}
    model.second.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    x = torch.randn(8, 8)
    with torch.no_grad():
        model(x)
    assert_bits(seen["x"], expected(params, x))


# ----- what a new input shape costs -----


def test_a_new_input_shape_reads_no_scale_or_zero_point_values():
    """Only the broadcast depends on the input's shape: no value read (a device sync on a GPU)
    and no check over the zero point happen when the sequence length changes."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    hidden = 16
    kernel = parse_granularity([-1, -1, 1])
    tap = TargetTransform(quant=quant(torch.rand(hidden) * 0.1 + 1e-3, torch.zeros(hidden), kernel))
    with torch.no_grad():
        tap(torch.randn(1, 3, hidden))
        with Ops() as ops:
            out = tap(torch.randn(1, 5, hidden))
    assert not {"_local_scalar_dense", "all", "any", "eq", "signbit"} & set(ops.names)
    assert out.shape == (1, 5, hidden)


def test_steps_handed_to_one_forward_stay_those_of_its_input():
    """What a forward got from the prepared lookup is not changed by a later lookup for
    another input (another thread's), which the stress tests above hit only by chance."""
    tap = TargetTransform(quant=quant(0.0123, 3.0))
    wide, narrow = torch.randn(64, dtype=torch.float64), torch.randn(64)
    held = tap._prepared.of(wide, tap.scale, tap.zero_point, tap.quant)
    tap._prepared.of(narrow, tap.scale, tap.zero_point, tap.quant)
    assert held.work is torch.float64
    assert_bits(held.apply(wide), expected(tap, wide))
