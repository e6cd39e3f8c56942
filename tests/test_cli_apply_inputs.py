"""What apply takes beside the model (--loss, --teacher, --teacher-weights): the files they name
are inputs an --out may not hold, options that go unused are said so, and their errors name
them (the loss function, the teacher), in memory and streamed alike."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import dsl_compress as dc
from cli_runner import run
from dsl_compress.diagnostics import CompressionError
from dsl_compress.tools.stream_job import StreamJob, stream_apply_job

MODEL_PY = """
import torch
from torch import nn


def build():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))


def narrow():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16))
"""

LOSS_PY = """
from pathlib import Path


def loss(model, batch):
    Path("loss-called").write_text("yes")
    return model(batch).pow(2).mean()


def raising(model, batch):
    raise ValueError("boom")


def vector(model, batch):
    return model(batch).pow(2)
"""

TAYLOR = "prune 0.weight sparse_ratio=0.5 metric=taylor\n"
STREAMS = [(), ("--stream",)]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text(MODEL_PY)
    (tmp_path / "loss.py").write_text(LOSS_PY)
    (tmp_path / "t.rules").write_text(TAYLOR)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    save_file(model.state_dict(), str(tmp_path / "weights.safetensors"))
    torch.save(torch.randn(2, 4, 16), tmp_path / "calib.pt")
    return tmp_path


def _apply(capsys, rules, *extra):
    base = ("apply", rules, "--model", "model.py:build", "--weights", "weights.safetensors")
    return run(capsys, *base, *extra)


@pytest.mark.parametrize("stream", STREAMS, ids=["memory", "stream"])
def test_a_loss_or_teacher_file_inside_out_is_l105_and_kept(project, capsys, stream):
    out = project / "o"
    out.mkdir()
    (out / "loss.py").write_text(LOSS_PY)
    save_file({"x": torch.ones(1)}, str(out / "teacher.safetensors"))
    (project / "d.rules").write_text("distill 2._output_0\n")
    cases = [
        ("t.rules", ("--calib", "calib.pt", "--loss", "o/loss.py:loss")),
        ("d.rules", ("--teacher", "model.py:build", "--teacher-weights", "o/teacher.safetensors")),
    ]
    for rules, given in cases:
        result = _apply(capsys, rules, *given, "--out", "o", "--overwrite", *stream)
        assert result.code == 2 and "L105" in result.err, result.err
    assert (out / "loss.py").read_text() == LOSS_PY
    assert (out / "teacher.safetensors").exists()


def test_teacher_weights_without_a_teacher_is_a_usage_error(project, capsys):
    result = _apply(capsys, "t.rules", "--teacher-weights", "weights.safetensors", "--dry-run")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "X803" in lines[0] and "--teacher SPEC" in lines[0]


@pytest.mark.parametrize("stream", STREAMS, ids=["memory", "stream"])
def test_an_unused_loss_or_teacher_is_a_note(project, capsys, stream):
    (project / "q.rules").write_text("prune 0.weight sparse_ratio=0.5\n")
    given = ("--calib", "calib.pt", "--loss", "loss.py:loss", "--teacher", "model.py:build")
    result = _apply(capsys, "q.rules", *given, "--dry-run", *stream)
    assert result.code == 0, result.err
    notes = [line for line in result.err.splitlines() if "L109" in line]
    assert len(notes) == 2
    assert "--loss" in notes[0] and "--teacher" in notes[1]
    assert not (project / "loss-called").exists()


@pytest.mark.parametrize("calib", [(), ("--calib", "calib.pt")], ids=["no calib", "calib"])
@pytest.mark.parametrize("stream", STREAMS, ids=["memory", "stream"])
def test_a_bad_teacher_link_is_d701_before_any_pass(project, capsys, stream, calib):
    taylor = TAYLOR if calib else ""  # the taylor pass would run first, were links not checked
    (project / "d.rules").write_text(taylor + 'distill 2._output_0 link="nope"\n')
    loss = ("--loss", "loss.py:loss") if calib else ()
    result = _apply(capsys, "d.rules", *calib, *loss, "--dry-run", *stream)
    line = 2 if calib else 1
    assert result.code == 2 and "D701" in result.err and f"d.rules:{line}" in result.err
    assert not (project / "loss-called").exists()


def test_under_torchrun_the_distillation_refusal_comes_before_calibration(project):
    with torch.device("meta"):
        skeleton = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    plan = dc.parse(TAYLOR + "distill 2._output_0\n").compile(skeleton).plan
    calls = []

    def loss(model, batch):
        calls.append(batch)
        return model(batch).pow(2).mean()

    job = StreamJob("weights.safetensors", None, calib=[torch.ones(2, 16)], loss_fn=loss)
    with pytest.raises(CompressionError) as caught:
        stream_apply_job(skeleton, plan, job, team=object())
    assert caught.value.diagnostics[0].code == "X805" and not calls


@pytest.mark.parametrize("stream", STREAMS, ids=["memory", "stream"])
def test_loss_errors_name_the_loss(project, capsys, stream):
    given = ("--calib", "calib.pt", "--dry-run", *stream)
    raised = _apply(capsys, "t.rules", *given, "--loss", "loss.py:raising")
    assert raised.code == 2 and "L108" in raised.err
    assert "the loss function raised ValueError: boom" in raised.err
    assert "--loss loss.py:raising" in raised.err and "running the model" not in raised.err
    vector = _apply(capsys, "t.rules", *given, "--loss", "loss.py:vector")
    assert vector.code == 2 and "--loss loss.py:vector: error[P507]" in vector.err


@pytest.mark.parametrize("stream", STREAMS, ids=["memory", "stream"])
def test_teacher_errors_name_the_teacher(project, capsys, stream):
    (project / "d.rules").write_text("prune 0.weight sparse_ratio=0.5\ndistill 2._output_0\n")
    given = ("--calib", "calib.pt", "--dry-run", *stream)
    failing = _apply(capsys, "d.rules", *given, "--teacher", "model.py:narrow")
    assert failing.code == 2 and "running the teacher on calibration batch 0" in failing.err
    save_file({"0.weight": torch.ones(3)}, str(project / "bad.safetensors"))
    teacher = ("--teacher", "model.py:build", "--teacher-weights", "bad.safetensors")
    bad = _apply(capsys, "d.rules", *given, *teacher)
    assert bad.code == 2 and "L102" in bad.err and "does not match the teacher" in bad.err


@pytest.mark.parametrize("stream", STREAMS, ids=["memory", "stream"])
def test_d703_is_located_at_its_rule(project, capsys, stream):
    (project / "d.rules").write_text(
        'prune 0.weight sparse_ratio=0.5\ndistill 2._output_0 link="0"\n'
    )
    result = _apply(capsys, "d.rules", "--calib", "calib.pt", "--dry-run", *stream)
    assert result.code == 2 and "D703" in result.err and "d.rules:2" in result.err
