"""Parsing, compiling and linting pause the cyclic collector and always give it back."""

from __future__ import annotations

import gc

import pytest

import dsl_compress as dc
from dsl_compress.diagnostics import CompressionError
from dsl_compress.gc_pause import gc_paused, without_gc


def test_the_collector_is_off_inside_and_back_on_after():
    seen = []
    without_gc(lambda: seen.append(gc.isenabled()))()
    assert seen == [False]
    assert gc.isenabled()


def test_the_collector_comes_back_when_parsing_fails():
    with pytest.raises(CompressionError):
        dc.parse("prune Conv2d.weight sparse_ratio=")
    assert gc.isenabled()
    with pytest.raises(CompressionError):
        dc.parse("prune Conv2d.weight sparse_ratio=2").compile()
    assert gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled():
    gc.disable()
    try:
        with gc_paused():
            pass
        dc.parse("prune Conv2d.weight sparse_ratio=0.5").compile()
        assert not gc.isenabled()
    finally:
        gc.enable()
