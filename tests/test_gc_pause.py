"""The collector belongs to the caller: library calls never switch it; the command pauses it
for text jobs and always gives it back."""

from __future__ import annotations

import gc

import pytest

import dsl_compress as dc
from cli_runner import run
from dsl_compress.cli.gc_pause import gc_paused
from dsl_compress.diagnostics import CompressionError
from dsl_compress.models import resnet
from dsl_compress.tools.lint import lint

RULES = "prune Conv2d.weight sparse_ratio=0.5 granularity=out_channel\n"


@pytest.fixture
def switches(monkeypatch):
    """Every gc.disable()/gc.enable() call made while the test runs."""
    calls = []
    real_disable, real_enable = gc.disable, gc.enable
    monkeypatch.setattr(gc, "disable", lambda: (calls.append("disable"), real_disable())[1])
    monkeypatch.setattr(gc, "enable", lambda: (calls.append("enable"), real_enable())[1])
    return calls


def test_library_calls_leave_the_collector_alone(switches, tmp_path):
    path = tmp_path / "r.rules"
    path.write_text(RULES)
    dc.parse(RULES, str(path)).compile()
    dc.load(path).compile(resnet())
    lint([str(path)])
    with pytest.raises(CompressionError):
        dc.parse("prune Conv2d.weight sparse_ratio=2").compile()
    assert switches == []
    assert gc.isenabled()


def test_the_collector_is_off_inside_and_back_on_after_an_error():
    with pytest.raises(ValueError):
        with gc_paused():
            assert not gc.isenabled()
            raise ValueError("boom")
    assert gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_command_pauses_for_lint_and_gives_it_back(switches, capsys, tmp_path):
    path = tmp_path / "r.rules"
    path.write_text(RULES)
    assert run(capsys, "lint", path).code == 0
    assert switches == ["disable", "enable"]
    assert gc.isenabled()
