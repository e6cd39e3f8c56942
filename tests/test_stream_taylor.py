"""The taylor metric streamed (forward and backward with each module's weights read as it runs,
and read again where backward needs them) scores as the in-memory engine, bit for bit, and no
weight stays in memory through backward."""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest
import torch
from torch import nn

import dsl_compress as dc
from dsl_compress.diagnostics import CompressionError, CompressionWarning
from dsl_compress.engine.prune import _taylor_scores
from dsl_compress.engine.stream import StreamRun
from dsl_compress.engine.stream_taylor import streamed_taylor_scores
from dsl_compress.vocab import Mode
from test_stream import Recorder

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


class Residual(nn.Module):
    """A residual connection, a module run twice in one forward, a conv and a BN's buffers."""

    def __init__(self):
        super().__init__()
        self.up, self.mid, self.down = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 16)
        self.bn = nn.BatchNorm1d(32)
        self.conv = nn.Conv1d(4, 4, 3, padding=1)

    def forward(self, x):
        h = self.bn(torch.relu(self.up(x)))
        h = h + self.mid(torch.relu(self.mid(h)))
        y = self.down(h)
        return self.conv(y.view(y.shape[0], 4, 4)).flatten(1)


TAYLOR = """
prune up.weight sparse_ratio=0.5 granularity=out_channel metric=taylor;
prune mid.weight sparse_ratio=0.5 metric=taylor;
prune down.weight sparse_ratio=0.3 metric=taylor group=g;
prune conv.weight sparse_ratio=0.3 metric=taylor group=g;
"""
MIXED = TAYLOR + """
prune up.bias sparse_ratio=0.25 metric=l1;
quantize Linear.weight quant_dtype=int8 granularity=out_channel;
quantize down._input_0 quant_dtype=int8;
"""


def loss_fn(model, batch):
    return model(batch).float().pow(2).mean()


def _case(dtype, seed=0):
    torch.manual_seed(seed)
    source = Residual()
    source.bn.running_mean.uniform_(-0.5, 0.5)
    state = {k: v.detach().clone().to(dtype) for k, v in source.state_dict().items()}
    batches = [torch.randn(4, 16).to(dtype) for _ in range(3)]
    model = Residual().to(dtype)
    model.load_state_dict(state)
    with torch.device("meta"):
        skeleton = Residual().to(dtype)
    return state, batches, model, skeleton


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_streamed_scores_are_the_in_memory_scores_bit_for_bit(dtype):
    state, batches, model, skeleton = _case(dtype)
    entries = dc.parse(TAYLOR).compile(model).plan.of_mode(Mode.PRUNE)
    expected = _taylor_scores(model, dict(model.named_modules()), entries, batches, loss_fn)
    found = streamed_taylor_scores(skeleton, entries, batches, loss_fn, lambda n: state[n].clone())
    assert found.keys() == expected.keys() and len(found) == 4
    for key, score in expected.items():
        assert found[key].dtype == torch.float32
        assert torch.equal(found[key], score), key
        assert score.count_nonzero() > 0
    assert all(t.is_meta for t in skeleton.state_dict().values())


def test_streamed_scores_are_on_disk_and_read_one_at_a_time():
    # An fp32 score per target in memory would be twice a bf16 model: each is a file until
    # its mask is made, read (and divided) on each lookup, and its file goes with its key.
    state, batches, model, skeleton = _case(torch.float32)
    entries = dc.parse(TAYLOR).compile(model).plan.of_mode(Mode.PRUNE)
    expected = _taylor_scores(model, dict(model.named_modules()), entries, batches, loss_fn)
    found = streamed_taylor_scores(skeleton, entries, batches, loss_fn, lambda n: state[n].clone())
    folder = found._totals._folder
    assert len(list(folder.iterdir())) == len(expected) == 4
    key = next(iter(expected))
    first, again = found[key], found[key]
    assert first is not again and torch.equal(first, again) and torch.equal(first, expected[key])
    for key in list(found):
        del found[key]
    assert list(folder.iterdir()) == []
    del found, first, again
    gc.collect()
    assert not folder.exists()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_taylor_composed_with_quantization_and_other_metrics_streams_as_in_memory(dtype):
    state, batches, model, skeleton = _case(dtype, seed=1)
    rules = dc.parse(MIXED)
    compression = dc.apply(rules, model, calib=batches, loss_fn=loss_fn)
    masks = {f"{m}.{t}": v for m, d in compression.masks().items() for t, v in d.items()}
    quant = {f"{m}.{t}": p for m, d in compression.quant_params().items() for t, p in d.items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*\[X804\]", CompressionWarning)  # run-time parts
        final = {k: v.detach().clone() for k, v in compression.finalize().state_dict().items()}
    run = StreamRun(skeleton, rules.compile(skeleton).plan, lambda n: state[n].clone())
    run.calibrate(batches, None, loss_fn)
    sink = Recorder()
    run.run(sink)
    assert sink.masks.keys() == masks.keys()
    assert all(torch.equal(sink.masks[k], v) for k, v in masks.items())
    assert sink.scales.keys() == quant.keys()
    assert all(torch.equal(sink.scales[k].scale, p["scale"]) for k, p in quant.items())
    assert all(torch.equal(sink.tensors[k], v) for k, v in final.items())


def _watched_reader(state):
    """A checkpoint reader handing out copies, and weak references to every copy it made."""
    loaded: list[weakref.ref] = []

    def read(name):
        tensor = state[name].clone()
        loaded.append(weakref.ref(tensor))
        return tensor

    return read, loaded


def test_no_loaded_weight_is_alive_when_backward_starts():
    state, batches, model, skeleton = _case(torch.float32)
    entries = dc.parse(TAYLOR).compile(model).plan.of_mode(Mode.PRUNE)
    read, loaded = _watched_reader(state)
    alive_at_backward: list[int] = []

    def watched_loss(model, batch):
        loss = loss_fn(model, batch)
        gc.collect()
        alive_at_backward.append(sum(ref() is not None for ref in loaded))
        return loss

    streamed_taylor_scores(skeleton, entries, batches, watched_loss, read)
    assert alive_at_backward == [0, 0, 0]
    reads_per_batch = len(loaded) / len(batches)
    assert reads_per_batch > len(state)  # backward read the weights again
    gc.collect()
    assert all(ref() is None for ref in loaded)


def test_the_same_pass_holding_weights_is_caught_by_that_count(monkeypatch):
    # Without packing saved weights by reference, autograd keeps them: the count above sees it.
    from dsl_compress.engine import stream_taylor

    monkeypatch.setattr(stream_taylor._GradientPass, "_pack", lambda self, tensor: tensor)
    state, batches, model, skeleton = _case(torch.float32)
    entries = dc.parse(TAYLOR).compile(model).plan.of_mode(Mode.PRUNE)
    read, loaded = _watched_reader(state)

    def watched_loss(model, batch):
        loss = loss_fn(model, batch)
        gc.collect()
        assert sum(ref() is not None for ref in loaded) > 0
        return loss

    streamed_taylor_scores(skeleton, entries, batches[:1], watched_loss, read)


def test_a_streamed_taylor_plan_without_a_loss_is_p507_before_any_read():
    state, batches, model, skeleton = _case(torch.float32)
    reads = []
    run = StreamRun(
        skeleton, dc.parse(TAYLOR).compile(skeleton).plan, lambda n: reads.append(n) or state[n]
    )
    with pytest.raises(CompressionError) as caught:
        run.calibrate(batches)
    assert caught.value.diagnostics[0].code == "P507" and not reads


def test_a_frozen_taylor_target_is_p507_as_in_memory():
    state, batches, model, skeleton = _case(torch.float32)
    skeleton.up.weight.requires_grad_(False)
    entries = dc.parse(TAYLOR).compile(skeleton).plan.of_mode(Mode.PRUNE)
    with pytest.raises(CompressionError) as caught:
        streamed_taylor_scores(skeleton, entries, batches, loss_fn, state.__getitem__)
    assert caught.value.diagnostics[0].code == "P507"
    assert "requires_grad=False" in caught.value.diagnostics[0].message


class _Decaying(nn.Module):
    """A buffer the forward changes in place before the product that saves it for backward."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.register_buffer("scale", torch.full((8,), 2.0))

    def forward(self, x):
        self.scale.mul_(0.5)
        return self.fc(x) * self.scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_a_buffer_changed_in_place_is_saved_as_changed_not_read_again(dtype):
    torch.manual_seed(0)
    state = {k: v.to(dtype) for k, v in _Decaying().state_dict().items()}
    model = _Decaying().to(dtype)
    model.load_state_dict(state)
    with torch.device("meta"):
        skeleton = _Decaying().to(dtype)
    entries = dc.parse("prune fc.weight sparse_ratio=0.5 metric=taylor;").compile(model)
    entries = entries.plan.of_mode(Mode.PRUNE)
    batches = [torch.randn(4, 8).to(dtype)]
    expected = _taylor_scores(model, dict(model.named_modules()), entries, batches, loss_fn)
    found = streamed_taylor_scores(skeleton, entries, batches, loss_fn, lambda n: state[n].clone())
    assert torch.equal(found[("fc", "weight")], expected[("fc", "weight")])


class _HalfShare:
    """A distributed run's share owning every tensor but the mid and down ones."""

    def owns(self, name):
        return not name.startswith(("mid.", "down."))

    def reduce(self, tensor):
        return None


def test_scores_are_dropped_when_not_owned_and_once_their_mask_is_made():
    state, batches, model, skeleton = _case(torch.float32)
    plan = dc.parse(TAYLOR.replace("group=g", "")).compile(skeleton).plan
    run = StreamRun(skeleton, plan, lambda n: state[n].clone())
    run.calibrate(batches, None, loss_fn)
    assert len(run._scores) == 4
    held: list[set] = []
    sink = Recorder()
    handed = sink.model
    sink.model = lambda name, tensor, codes=None: held.append(set(run._scores)) or handed(
        name, tensor, codes
    )
    run.run(sink, share=_HalfShare())
    assert held[0] <= {("up", "weight"), ("conv", "weight")}  # others' dropped before the loop
    assert run._scores == {}
