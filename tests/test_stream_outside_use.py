"""A tensor used outside its own module's forward (a head tied by hand, nn.MultiheadAttention's
out_proj, a loss reading a parameter) is read for the op that uses it when streamed, so
calibration, taylor scores and the distillation loss are the in-memory ones bit for bit; a
meta tensor that is none of the skeleton's is X805, never uninitialised memory."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import dsl_compress as dc
from dsl_compress.diagnostics import CompressionError, CompressionWarning
from dsl_compress.engine.onload import onloaded
from dsl_compress.engine.stream import StreamRun
from dsl_compress.engine.stream_distill import StreamTeacher
from dsl_compress.tools.apply_job import apply_plan_job
from dsl_compress.vocab import Mode
from test_stream import Recorder

DTYPES = [torch.float32, torch.bfloat16]


class TiedByHand(nn.Module):
    """The output head is the embedding's weight, used in the parent's forward."""

    def __init__(self):
        super().__init__()
        self.emb, self.mid, self.proj = nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(10, 4)

    def forward(self, ids):
        h = torch.relu(self.mid(self.emb(ids)))
        return self.proj(h @ self.emb.weight.t())


class Attention(nn.Module):
    """nn.MultiheadAttention uses its out_proj's weight inside its own forward."""

    def __init__(self):
        super().__init__()
        self.att, self.fc = nn.MultiheadAttention(8, 2, batch_first=True), nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(self.att(x, x, x)[0])


class Encoder(nn.Module):
    """nn.TransformerEncoder with a padding mask: its nested-tensor path, taken in eval."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0)
        self.enc, self.fc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True), nn.Linear(
            8, 8
        )
        self.eval()

    def forward(self, x):
        padding = torch.zeros(x.shape[:2], dtype=torch.bool)
        padding[:, -2:] = True
        return self.fc(self.enc(x, src_key_padding_mask=padding))


class SiblingMask(nn.Module):
    """An encoder layer handed a buffer of a module that never runs."""

    def __init__(self):
        super().__init__()
        self.masks = nn.Module()
        self.masks.register_buffer("causal", torch.triu(torch.full((5, 5), float("-inf")), 1))
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0)
        self.fc = nn.Linear(8, 8)
        self.eval()

    def forward(self, x):
        return self.fc(self.layer(x, src_mask=self.masks.causal))


class CrossAttention(nn.Module):
    """Attention to a sibling's weight, whose kernel differs for a frozen one."""

    def __init__(self):
        super().__init__()
        self.mem, self.fc = nn.Embedding(6, 8), nn.Linear(8, 8)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.eval()

    def forward(self, x):
        memory = self.mem.weight.expand(x.shape[0], 6, 8)
        return self.fc(self.att(x, memory, memory, need_weights=False)[0])


class Recurrent(nn.Module):
    """nn.LSTM, whose CPU kernel differs for frozen weights even without gradients."""

    def __init__(self):
        super().__init__()
        self.inp, self.rnn, self.fc = (
            nn.Linear(8, 8),
            nn.LSTM(8, 8, batch_first=True),
            nn.Linear(8, 8),
        )

    def forward(self, x):
        return self.fc(self.rnn(self.inp(x))[0])


def _tokens(dtype):
    return [torch.randint(0, 10, (4, 5)) for _ in range(3)]


def _sequences(dtype):
    return [torch.randn(2, 5, 8).to(dtype) for _ in range(3)]


_FC_RULES = """
prune fc.weight sparse_ratio=0.5 metric=taylor;
quantize fc._input_0 quant_dtype=int8;
distill fc._output_0;
"""

CASES = {
    "tied by hand": (
        TiedByHand,
        _tokens,
        """
        prune mid.weight sparse_ratio=0.5 metric=taylor;
        prune emb.weight sparse_ratio=0.25 metric=taylor;
        quantize mid._input_0 quant_dtype=int8;
        quantize proj._input_0 quant_dtype=int8;
        distill proj._output_0 lambda=0.5;
        """,
    ),
    "multihead attention": (
        Attention,
        _sequences,
        """
        register prune NonDynamicallyQuantizableLinear { weight granularity=[-1] }
        prune fc.weight sparse_ratio=0.5 metric=taylor;
        prune att.out_proj.weight sparse_ratio=0.5 metric=taylor;
        quantize fc._input_0 quant_dtype=int8;
        distill fc._output_0;
        """,
    ),
    "transformer encoder": (
        Encoder,
        _sequences,
        _FC_RULES + "prune enc.layers.1.linear1.weight sparse_ratio=0.5;",
    ),
    "encoder layer given a sibling's buffer": (
        SiblingMask,
        _sequences,
        _FC_RULES + "prune layer.linear2.weight sparse_ratio=0.5;",
    ),
    "cross attention": (
        CrossAttention,
        _sequences,
        "register prune NonDynamicallyQuantizableLinear { weight granularity=[-1] }\n"
        + _FC_RULES
        + "prune att.out_proj.weight sparse_ratio=0.5;",
    ),
    "lstm": (Recurrent, _sequences, _FC_RULES + "prune inp.weight sparse_ratio=0.5 metric=taylor;"),
}


def loss_fn(model, batch):
    return model(batch).float().pow(2).mean()


def _case(build, make_batches, dtype):
    torch.manual_seed(0)
    state = {k: v.detach().clone().to(dtype) for k, v in build().state_dict().items()}
    teacher_state = {k: v * 1.25 for k, v in state.items()}
    batches = make_batches(dtype)
    return state, teacher_state, batches


def _in_memory(build, rules, state, teacher_state, batches, loss, dtype):
    model, teacher = build().to(dtype), build().to(dtype)
    model.load_state_dict(state)
    teacher.load_state_dict(teacher_state)
    plan = rules.compile(model).plan
    teacher = teacher if plan.of_mode(Mode.DISTILL) else None
    result = apply_plan_job(model, plan, calib=batches, teacher=teacher, loss_fn=loss)
    compression = result.compression
    masks = {f"{m}.{t}": v for m, d in compression.masks().items() for t, v in d.items()}
    quant = {f"{m}.{t}": p for m, d in compression.quant_params().items() for t, p in d.items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*\[X804\]", CompressionWarning)  # run-time parts
        final = {k: v.detach().clone() for k, v in compression.finalize().state_dict().items()}
    return masks, quant, final, result.distill


def _streamed(build, rules, state, teacher_state, batches, loss, dtype):
    with torch.device("meta"):
        skeleton, teacher = build().to(dtype), build().to(dtype)
    plan = rules.compile(skeleton).plan
    run = StreamRun(skeleton, plan, lambda n: state[n].clone())
    run.calibrate(batches, None, loss)
    if plan.of_mode(Mode.DISTILL):
        teacher_read = lambda n: teacher_state[n].clone()  # noqa: E731
        run.report_distillation(StreamTeacher(teacher, teacher_read), batches)
    sink = Recorder()
    run.run(sink)
    assert all(t.is_meta for t in [*skeleton.state_dict().values(), *teacher.state_dict().values()])
    return sink, run.distill_report


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_tensor_used_outside_its_module_streams_as_in_memory(case, dtype):
    build, make_batches, text = CASES[case]
    state, teacher_state, batches = _case(build, make_batches, dtype)
    rules = dc.parse(text)
    given = (rules, state, teacher_state, batches, loss_fn, dtype)
    masks, quant, final, report = _in_memory(build, *given)
    sink, streamed_report = _streamed(build, *given)
    assert sink.masks.keys() == masks.keys() and len(masks) == 2
    assert all(torch.equal(sink.masks[k], v) for k, v in masks.items())
    assert sink.scales.keys() == quant.keys()
    assert all(torch.equal(sink.scales[k].scale, p["scale"]) for k, p in quant.items())
    assert all(torch.equal(sink.tensors[k], v) for k, v in final.items())
    assert report is not None and report.total > 0
    assert streamed_report == report


class Penalised(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def penalised_loss(model, batch):
    return model(batch).float().pow(2).mean() + 0.1 * model.up.weight.float().pow(2).sum()


def _taylor_of_penalised_equals_in_memory(loss, dtype):
    """Taylor masks and final tensors of ``Penalised`` under ``loss``: streamed as in memory."""
    state, teacher_state, batches = _case(Penalised, lambda d: [torch.randn(4, 8).to(d)] * 2, dtype)
    rules = dc.parse(
        "prune up.weight sparse_ratio=0.5 metric=taylor;\n"
        "prune down.weight sparse_ratio=0.5 metric=taylor;\n"
    )
    given = (rules, state, teacher_state, batches, loss, dtype)
    masks, _, final, _ = _in_memory(Penalised, *given)
    sink, _ = _streamed(Penalised, *given)
    assert sink.masks.keys() == masks.keys() and len(masks) == 2
    assert all(torch.equal(sink.masks[k], v) for k, v in masks.items())
    assert all(torch.equal(sink.tensors[k], v) for k, v in final.items())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_loss_reading_a_parameter_scores_as_in_memory(dtype):
    _taylor_of_penalised_equals_in_memory(penalised_loss, dtype)


class Stray(nn.Module):
    """A tensor made in __init__ but not registered: on the meta device in a skeleton."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.offset = torch.ones(4)

    def forward(self, x):
        return self.fc(x) + self.offset


def test_a_meta_tensor_that_is_not_the_skeletons_is_x805_naming_it():
    state = Stray().state_dict()
    with torch.device("meta"):
        skeleton = Stray()
    with pytest.raises(CompressionError) as caught, onloaded(skeleton, state.__getitem__):
        skeleton(torch.ones(2, 4))
    found = caught.value.diagnostics[0]
    assert found.code == "X805" and "'offset'" in found.message and found.hint


def test_geometry_of_an_unloaded_tensor_reads_nothing():
    reads = []
    state = TiedByHand().state_dict()
    with torch.device("meta"):
        skeleton = TiedByHand()
    with onloaded(skeleton, lambda name: reads.append(name) or state[name]):
        weight = skeleton.emb.weight
        assert (weight.shape, weight.dtype, weight.dim(), weight.numel()) == (
            (10, 8),
            torch.float32,
            2,
            80,
        )
        assert not reads
        assert torch.equal(weight.t() + 0, state["emb.weight"].t())
    assert reads == ["emb.weight"] and skeleton.emb.weight.is_meta


def inference_target_loss(model, batch):
    with torch.inference_mode():
        target = model(batch)
    return (model(batch) - target.clone()).float().pow(2).mean() + loss_fn(model, batch)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_loss_running_the_model_in_inference_mode_scores_as_in_memory(dtype):
    _taylor_of_penalised_equals_in_memory(inference_target_loss, dtype)


class Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("acc", torch.zeros(8))


class CopiesIntoSibling(nn.Module):
    def __init__(self):
        super().__init__()
        self.h, self.fc = Holder(), nn.Linear(8, 8)

    def forward(self, x):
        self.h.acc.copy_(x.mean(0))
        return self.fc(x + self.h.acc)


class AddsIntoSibling(CopiesIntoSibling):
    def forward(self, x):
        self.h.acc += x.mean(0)
        return self.fc(x + self.h.acc)


class AssignsSibling(CopiesIntoSibling):
    def forward(self, x):
        self.h.acc = x.mean(0)
        return self.fc(x + self.h.acc)


def _skeleton_of(build):
    state = build().state_dict()
    with torch.device("meta"):
        skeleton = build()
    return skeleton, lambda name: state[name].clone()


@pytest.mark.parametrize("build", [CopiesIntoSibling, AddsIntoSibling], ids=lambda b: b.__name__)
def test_writing_into_a_tensor_read_for_one_op_is_x805_naming_it(build):
    skeleton, read = _skeleton_of(build)
    with pytest.raises(CompressionError) as caught, onloaded(skeleton, read):
        skeleton(torch.ones(2, 8))
    found = caught.value.diagnostics[0]
    assert found.code == "X805" and "'h.acc'" in found.message and found.hint
    assert all(t.is_meta for t in skeleton.state_dict().values())


def test_the_skeleton_is_all_meta_after_the_block_whatever_the_model_assigned():
    skeleton, read = _skeleton_of(AssignsSibling)
    with onloaded(skeleton, read):
        assert skeleton(torch.ones(2, 8)).device.type == "cpu"
        assert not skeleton.h.acc.is_meta
    assert all(t.is_meta for t in skeleton.state_dict().values())


class Refuses(nn.Linear):
    def forward(self, x):
        raise NotImplementedError("not this batch")


class FallsBack(nn.Module):
    """A child's forward raises, and the parent catches it and runs another."""

    def __init__(self):
        super().__init__()
        self.fast, self.slow = Refuses(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        try:
            return self.fast(x)
        except NotImplementedError:
            return self.slow(x)


def test_a_module_whose_forward_raises_is_unloaded():
    skeleton, read = _skeleton_of(FallsBack)
    with onloaded(skeleton, read):
        assert skeleton(torch.ones(4, 8)).device.type == "cpu"
        assert skeleton.fast.weight.is_meta and skeleton.slow.weight.is_meta
        assert not skeleton.fast.__dict__.get("_dsl_compress_loads")


def test_a_stray_meta_tensor_given_to_a_fused_module_is_x805():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0).eval()
    state = layer.state_dict()
    with torch.device("meta"):
        skeleton = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0).eval()
    stray = torch.empty(5, 5, device="meta")
    with pytest.raises(CompressionError) as caught, onloaded(skeleton, state.__getitem__):
        skeleton(torch.ones(2, 5, 8), src_mask=stray)
    assert caught.value.diagnostics[0].code == "X805"
    assert all(t.is_meta for t in skeleton.state_dict().values())


def test_the_device_of_an_unloaded_tensor_is_read_once_per_block():
    reads = []
    state = TiedByHand().state_dict()
    with torch.device("meta"):
        skeleton = TiedByHand()
    with onloaded(skeleton, lambda name: reads.append(name) or state[name]):
        devices = [next(skeleton.parameters()).device for _ in range(3)]
        stray = torch.empty(2, device="meta").device
    assert devices == [torch.device("cpu")] * 3 and stray == torch.device("meta")
    assert reads == ["emb.weight"] and skeleton.emb.weight.is_meta


def test_a_tensor_read_inside_inference_mode_is_normal_and_takes_no_gradient():
    made = []
    state = Penalised().state_dict()
    with torch.device("meta"):
        skeleton = Penalised()

    def read(name):
        made.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        return state[name].clone()

    with torch.inference_mode(), onloaded(skeleton, read):
        out = skeleton(torch.ones(2, 8))
    assert out.is_inference() and made and set(made) == {(False, False)}
