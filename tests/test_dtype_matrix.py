"""Every engine path keeps the model's dtype: fp32, fp16, bf16 and fp64, on CPU (and CUDA when present).

Each path runs on a tiny model cast to the dtype and checks the forward through the
compression, finalize (plain weights of the model's dtype) and restore (the weights back
bit for bit); scales and zero points are float32 whatever the model's dtype.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

import dsl_compress as dc
from dsl_compress.engine import transforms
from dsl_compress.engine.quant_math import (
    fake_quantize,
    fused_fake_quantize,
    fused_kernels_pay_off,
    quant_range,
    scale_zero_point,
)
from dsl_compress.engine.quantize import QuantParams, weight_min_max
from dsl_compress.engine.transforms import TargetTransform
from dsl_compress.io.outputs import quant_tensors
from dsl_compress.schema.granularity import parse_granularity

pytestmark = pytest.mark.filterwarnings("ignore:.*X804")

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


class Tiny(nn.Module):
    """conv -> bn -> relu -> flatten -> fc1 -> relu -> fc2: every kind of target the engine handles."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(y.flatten(1))))


def tiny(dtype: torch.dtype, device: str) -> nn.Module:
    torch.manual_seed(0)
    return Tiny().to(device=device, dtype=dtype).eval()


def batches(dtype: torch.dtype, device: str, count: int = 2) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [
        torch.randn(2, 3, 4, 4, generator=gen).to(device=device, dtype=dtype) for _ in range(count)
    ]


def loss_fn(model, batch):
    return model(batch).float().pow(2).mean()


def op_types(granularity) -> list[str]:
    # A [2, 2] block does not divide the conv's 3 x 3 kernel.
    return ["Linear"] if isinstance(granularity, list) else ["Linear", "Conv2d"]


def prune_with(metric: str, granularity=None, **setting) -> Callable:
    config = {"op_types": op_types(granularity), **(setting or {"sparse_ratio": 0.5})}
    if granularity is not None:
        config["granularity"] = granularity

    def run(model, calib):
        return dc.prune(model, [config], metric, calib=calib, loss_fn=loss_fn)

    return run


def quantize_with(targets, granularity=None, scheme="symmetric", fused=False) -> Callable:
    config = {"op_types": op_types(granularity), "quant_dtype": "int8", "quant_scheme": scheme}
    config["target_names"] = list(targets)
    if granularity is not None:
        config["granularity"] = granularity

    def run(model, calib):
        return dc.quantize(model, [config], calib, fused=fused)

    return run


def rules(text: str) -> Callable:
    def run(model, calib):
        return dc.apply(dc.parse(text), model, calib, loss_fn=loss_fn)

    return run


def distill(model, calib):
    weight = model.fc1.weight
    teacher = tiny(weight.dtype, weight.device.type)
    config = [{"op_names": ["fc1", "fc2"], "target_names": ["_output_"], "lambda": 0.5}]
    compression = dc.distill(model, teacher, config)
    teacher(calib[0])
    return compression


def composed(model, calib):
    dc.prune(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}], "l1")
    return quantize_with(["weight", "_input_"], scheme="affine")(model, calib)


PATHS = {
    **{
        f"prune-{metric}-{name}": prune_with(metric, granularity)
        for metric in ("level", "l1", "l2", "random", "taylor")
        for name, granularity in (
            ("default", None),
            ("out_channel", "out_channel"),
            ("in_channel", "in_channel"),
            ("block", [2, 2]),
        )
    },
    "prune-fpgm-out_channel": prune_with("fpgm", "out_channel"),
    "prune-threshold": prune_with("l1", None, sparse_threshold=0.1),
    "prune-global": prune_with("l1", "out_channel", sparse_ratio=0.5, global_group_id="g"),
    "prune-dependency": rules(
        "prune fc1.weight sparse_ratio=0.5 granularity=out_channel metric=l1\n"
        "align fc1.bias with fc1.weight dims=[0]\n"
        "align bn.weight with conv.weight dims=[0]\n"
        "prune conv.weight sparse_ratio=0.5 granularity=out_channel"
    ),
    "prune-activation-add": rules(
        "prune fc1.weight sparse_ratio=0.5 granularity=out_channel\n"
        "align fc1._output_ with fc1.weight dims=[0] granularity=[-1, 1] apply_method=add\n"
        "align fc2._input_ with fc1.weight dims=[0] granularity=[-1, 1]"
    ),
    **{
        f"quantize-weight-{name}-{scheme}-{'fused' if fused else 'exact'}": quantize_with(
            ["weight"], granularity, scheme, fused
        )
        for name, granularity in (
            ("tensor", None),
            ("out_channel", "out_channel"),
            ("in_channel", "in_channel"),
            ("block", [2, 2]),
        )
        for scheme in ("symmetric", "affine")
        for fused in (False, True)
    },
    **{
        f"quantize-activation-{name}-{'fused' if fused else 'exact'}": quantize_with(
            ["_input_", "_output_"], granularity, "affine", fused
        )
        for name, granularity in (("tensor", None), ("per_channel", "per_channel"))
        for fused in (False, True)
    },
    "distill": distill,
    "composed": composed,
}


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_dtypes(model: nn.Module, dtype: torch.dtype) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            assert tensor.dtype == dtype, f"{name} is {tensor.dtype}, the model is {dtype}"


def assert_scales_are_float32(compression: dc.Compression) -> None:
    for targets in compression.quant_params().values():
        for params in targets.values():
            assert params["scale"].dtype == torch.float32
            assert params["zero_point"].dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("end", ["finalize", "restore"])
def test_every_path_keeps_the_model_dtype(dtype, path, device, end):
    model, calib = tiny(dtype, device), batches(dtype, device)
    before = state_copy(model)
    compression = PATHS[path](model, calib)
    with torch.no_grad():
        out = model(calib[0])
    assert out.dtype == dtype and out.device.type == device
    assert torch.isfinite(out).all()
    assert_scales_are_float32(compression)
    if path == "distill":
        dc_loss = compression.loss()
        assert torch.isfinite(dc_loss)
    if end == "finalize":
        compression.finalize()
        assert_dtypes(model, dtype)
        with torch.no_grad():
            assert model(calib[0]).dtype == dtype
    else:
        compression.restore()
        after = model.state_dict()
        assert all(torch.equal(after[k], v) for k, v in before.items())
        assert_dtypes(model, dtype)


# ----- the numerics behind the matrix: the compute dtype, fused kernels, stored scales -----


def off_tie(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
    """Where x / scale + zp (in float32) is not within 0.01 of a rounding tie."""
    v = x.float() / scale + zp
    return ((v - v.floor()) - 0.5).abs() > 0.01


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("granularity", [None, "out_channel"], ids=str)
def test_fused_kernels_take_half_dtypes_and_float64_falls_back(dtype, granularity):
    kernel = parse_granularity(granularity) if granularity else None
    x = (torch.randn(16, 32, generator=torch.Generator().manual_seed(3)) * 3).to(dtype)
    lo, hi = weight_min_max(x, kernel)
    scale, zp = scale_zero_point(lo, hi, quant_range("int8"), "affine")
    exact = fake_quantize(x, scale, zp, quant_range("int8"), kernel)
    fused = fused_fake_quantize(x, scale, zp, quant_range("int8"), kernel)
    assert exact.dtype == fused.dtype == dtype
    spread = (lambda t: kernel.expand(t, x.shape)) if kernel else (lambda t: t)
    keep = off_tie(x, spread(scale), spread(zp))
    if dtype == torch.float64:
        keep = torch.ones_like(keep)
    assert torch.equal(exact[keep], fused[keep])


def tie_transform(fused: bool) -> tuple[TargetTransform, torch.Tensor]:
    """A transform and an input at which NNI's x / scale and the fused x * (1 / scale) differ."""
    x, scale = torch.tensor([0.17308007180690765]), torch.tensor(0.038462236523628235)
    params = QuantParams(scale, torch.tensor(0.0), quant_range("int8"), None, None)
    return TargetTransform(quant=params, fused=fused), x


def test_fused_on_cpu_runs_the_exact_formula_which_is_faster_there():
    transform, x = tie_transform(fused=True)
    exact, _ = tie_transform(fused=False)
    assert not fused_kernels_pay_off(x.device)
    assert torch.equal(transform(x), exact(x))
    assert not torch.equal(
        fused_fake_quantize(x, transform.scale, transform.zero_point, transform.quant.qrange),
        exact(x),
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_on_cuda_runs_torch_fused_kernels():
    transform, x = tie_transform(fused=True)
    exact, _ = tie_transform(fused=False)
    transform, exact, x = transform.cuda(), exact.cuda(), x.cuda()
    assert fused_kernels_pay_off(x.device)
    assert not torch.equal(transform(x), exact(x))


def test_the_int32_zero_point_is_read_once_per_change(monkeypatch):
    calls = []
    real = transforms.integer_zero_point
    monkeypatch.setattr(transforms, "integer_zero_point", lambda zp: calls.append(1) or real(zp))
    memo, zp = transforms._IntZeroPoint(), torch.zeros(4, 1)
    assert memo.of(zp).dtype == torch.int32 and memo.of(zp) is memo.of(zp)
    assert len(calls) == 1
    zp.add_(0.5)
    assert memo.of(zp) is None and len(calls) == 2


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_stored_scales_are_float32_whatever_the_model_dtype(dtype):
    model = tiny(dtype, "cpu")
    calib = batches(dtype, "cpu")
    dc.quantize(
        model, [{"op_types": ["Linear"], "target_names": ["_input_"], "quant_dtype": "int8"}], calib
    )
    compression = quantize_with(["weight"], "out_channel")(model, calib)
    tensors, _ = quant_tensors(compression.quant_params())
    assert tensors and all(t.dtype == torch.float32 for t in tensors.values())
    assert model.fc1.weight.dtype == dtype
