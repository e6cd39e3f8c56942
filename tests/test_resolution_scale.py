"""The shortcuts that make resolution fast on large models change nothing a user can see."""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dsl_compress as dc
from dsl_compress.resolve import from_rules as compiler
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.selectors import glob_pattern, glob_prefix, regex_prefix
from dsl_compress.language.syntax import Segment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from rules_workloads import rules_text  # noqa: E402
from workloads import wide_model  # noqa: E402

EXTRA = """\
prune Linear.bias sparse_ratio=0.5
prune Linear.weight sparse_ratio=0.2 except stem.block1.fc0, re"decoder\\.block[02]\\..*"
prune re"(stem|head)\\.block1\\.conv.".weight sparse_ratio=0.6
quantize BatchNorm2d quant_dtype=int8
quantize Linear quant_dtype=int4
exclude stem.block2.** from quantize
align **.bn0.weight with **.conv0.weight dims=[0]
"""


def small_model() -> nn.Module:
    model = wide_model(120, device="cpu")
    model["stem"]["block0"].fc1.register_parameter("bias", None)  # a module without the target
    model["head"]["block1"] = model["head"]["block0"]  # aliases: one module, two names
    return model


class _Forgetful(dict):
    """A cache that never keeps anything: every tensor settled and checked on its own."""

    def __setitem__(self, key, value) -> None:
        pass


def _resolved(text: str, model: nn.Module):
    """Plan entries with their settings, diagnostics, and each tensor's statements in order."""
    compiled = dc.parse(text, "bench.rules").compile(model, trace=True)
    plan = compiled.plan
    contributions = {
        key: [c.rule.index for c in found] for key, found in compiled.contributions.items()
    }
    return (
        plan.entries,
        [(e.setting, e.key_origins) for e in plan.entries],
        [str(d) for d in compiled.diagnostics],
        contributions,
    )


def _one_tensor_at_a_time(monkeypatch) -> None:
    """Resolution without type groups and without shared settlement."""
    monkeypatch.setattr(compiler, "_type_wide", lambda rule: False)
    outcome = functools.partial(compiler._Outcome, settled=_Forgetful())
    monkeypatch.setattr(compiler, "_Outcome", outcome)


@pytest.mark.parametrize("seed", range(4))
def test_type_groups_and_shared_settlement_give_the_plan_of_one_tensor_at_a_time(seed, monkeypatch):
    text = rules_text(150, blocks=3, seed=seed) + EXTRA
    model = small_model()
    fast = _resolved(text, model)
    _one_tensor_at_a_time(monkeypatch)
    slow = _resolved(text, model)
    assert len(fast[0]) > 100
    assert fast == slow


class _Root(nn.Sequential):
    pass


CASES = {
    # The root is of the statement's type: an explicit output never lands on it.
    "root": ("distill Sequential._output_ lambda=0.5 apply_method=mse", nn.Sequential),
    # Explicit and template-target statements of one type: contributions in statement order.
    "order": (
        "prune Conv2d.weight sparse_ratio=0.5\nprune Conv2d sparse_ratio=0.6\n"
        "prune Conv2d sparse_ratio=0.7\nprune conv*.weight sparse_ratio=0.2\n"
        "prune Conv2d.weight sparse_ratio=0.3",
        _Root,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_edge_cases_resolve_as_one_tensor_at_a_time(case, monkeypatch):
    text, root = CASES[case]
    model = root(nn.Conv2d(2, 2, 1), nn.Sequential(nn.Linear(2, 2)), nn.Conv2d(2, 2, 1))
    model.conv1 = nn.Conv2d(2, 2, 1)
    fast = _resolved(text, model)
    _one_tensor_at_a_time(monkeypatch)
    assert fast == _resolved(text, model)
    assert fast[0] and all(e.module for e in fast[0])


def test_entries_do_not_share_setting_dicts():
    compiled = dc.parse("prune Linear.weight sparse_ratio=0.5").compile(small_model())
    first, second = compiled.plan.entries[:2]
    assert first.setting == second.setting and first.setting is not second.setting
    first.setting["sparse_ratio"] = 0.9
    assert second.setting["sparse_ratio"] == 0.5


NAMES = [
    "",
    "a",
    "a.b",
    "a.bc",
    "a.b.c",
    "ab.c",
    "a.b1",
    "a.b12.c",
    "x.a.b",
    "a.b.c.d",
    "enc.layer10.fc",
    "enc.layer1.fc",
    "enc.layer.fc",
    "dec.layer1.fc",
    "a{b}",
]
REGEXES = [
    r"a\.b",
    r"a\.b?",
    r"a\.b*\.c",
    r"a.b",
    r"enc\.layer1[0-9]*\.fc",
    r"enc\.layer1\d?\.fc",
    r"(enc|dec)\.layer1\.fc",
    r"enc|dec\.layer1\.fc",
    r"a\.b{1,2}",
    r"(?i)A\.B",
    r"a\.b+.*",
    r"[ax]\..*",
    r"a\.b\.c\.d",
    r".*",
]


@pytest.mark.parametrize("pattern", REGEXES)
def test_regex_prefix_is_shared_by_every_full_match(pattern):
    prefix = regex_prefix(pattern)
    matched = [n for n in NAMES if re.fullmatch(pattern, n)]
    assert all(n.startswith(prefix) for n in matched), (prefix, matched)


SEGMENT = st.sampled_from(["a", "b", "b*", "*", "**", "enc", "layer1*", "{b,c}", "c{1,2}", "fc"])


@settings(max_examples=200, deadline=None)
@given(st.lists(SEGMENT, min_size=1, max_size=4))
def test_glob_prefix_is_shared_by_every_match(texts):
    segments = tuple(_segment(t) for t in texts)
    regex = re.compile(glob_pattern(segments))
    prefix = glob_prefix(segments)
    matched = [n for n in NAMES if regex.fullmatch(n)]
    assert all(n.startswith(prefix) for n in matched), (texts, prefix, matched)


def _segment(text: str) -> Segment:
    if text.startswith("{"):
        return Segment(tuple(text[1:-1].split(",")), True)
    return Segment((text,))


SELECTORS = [
    "prune enc.layer1*.fc",
    "prune enc.**",
    'prune re"enc\\.layer1[0-9]*\\.fc"',
    "prune Linear in enc.**",
    'prune Linear in re"(enc|dec)\\..*"',
    "prune a.{b,bc}.weight",
    "prune **.fc",
    "prune Linear",
]


@pytest.mark.parametrize("statement", SELECTORS)
def test_selectors_match_what_a_scan_of_every_name_matches(statement):
    model = nn.Module()
    for stage in ("enc", "dec"):
        part = nn.Module()
        for name in ("layer", "layer1", "layer10", "layer2"):
            block = nn.Module()
            block.fc = nn.Linear(2, 2)
            block.add_module("fc2", block.fc)  # alias
            part.add_module(name, block)
        model.add_module(stage, part)
    model.a = nn.Module()
    model.a.b = nn.Linear(2, 2)
    model.a.bc = nn.Linear(2, 2)
    index = ModelIndex.of(model)
    (rule,) = dc.parse(statement).check().rules
    selector = rule.selector
    expected = {}
    for name in index.modules:
        typed = selector.type_name is None or index.type_names[name] == selector.type_name
        scope, pattern = selector.scope_pattern, selector.name_pattern
        scoped = scope is None or re.fullmatch(scope, name)
        named = pattern is None or re.fullmatch(pattern, name)
        if typed and scoped and named:
            expected.setdefault(index.canonical[name], None)
    assert [m.module for m in selector.matches(index)] == list(expected)
    assert selector.names(index) == list(expected)
    assert expected


def test_the_index_walks_modules_as_named_modules_does():
    model = small_model()
    model["stem"]["block0"].add_module("gone", None)  # a None child is skipped
    model["stem"]["block1"].add_module("again", model["stem"]["block0"])  # an alias subtree
    index = ModelIndex.of(model)
    expected = list(model.named_modules(remove_duplicate=False))
    assert list(index.modules) == [name for name, _ in expected]
    assert all(index.modules[name] is module for name, module in expected)


def test_prefix_narrowing_keeps_names_with_the_highest_code_point():
    model = nn.ModuleDict({"a": nn.Linear(2, 2), "a\U0010ffffb": nn.Linear(2, 2)})
    model.add_module("b", nn.Linear(2, 2))
    index = ModelIndex.of(model)
    assert index.with_prefix("a") == ["a", "a\U0010ffffb"]
    assert index.with_prefix("a\U0010ffff", "Linear") == ["a\U0010ffffb"]
    assert index.with_prefix("\U0010ffff") == []
