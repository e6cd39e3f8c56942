"""Module selection as NNI 3.0 (nni-semantics.md §1.4), with errors and warnings where NNI is silent."""

from __future__ import annotations

import pytest
from torch import nn

from dsl_compress.diagnostics import Severity
from dsl_compress.resolve.from_config import select
from dsl_compress.resolve.model_index import ModelIndex


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.conv = nn.Conv2d(1, 1, 1)
        self.relu = nn.ReLU()


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = Block()
        self.b2 = Block()
        self.fc = nn.Linear(2, 2)
        self.shared = self.b1.fc


@pytest.fixture
def index():
    return ModelIndex.of(M())


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"op_types": ["Linear"]}, ["b1.fc", "b2.fc", "fc"]),
        ({"op_names_re": [".*fc$"]}, ["b1.fc", "b2.fc", "fc"]),
        (
            {"op_names": ["b1.fc"], "op_names_re": ["b2.*"], "op_types": ["Linear"]},
            ["b1.fc", "b2.fc"],
        ),
        ({"op_types": ["Linear"], "exclude_op_names_re": ["b1"]}, ["b2.fc", "fc"]),
        ({"op_types": ["M"]}, [""]),
        ({"op_names_re": ["fc"]}, ["fc"]),
        ({"op_names_re": ["b1"]}, ["b1", "b1.fc", "b1.conv", "b1.relu"]),
        ({"op_types": ["Linear"], "exclude_op_types": ["Linear"]}, []),
        ({"op_names": ["fc"], "op_types": []}, ["fc"]),
    ],
)
def test_selection_table(index, config, expected):
    names, _ = select(index, config, "config_list[0]")
    assert names == expected


def test_alias_is_configured_once_under_its_first_name(index):
    names, diags = select(index, {"op_names": ["shared"]}, "config_list[0]")
    assert names == ["b1.fc"]
    assert [d.code for d in diags] == ["S204"]
    assert "'shared' is the same module object as 'b1.fc'" in diags[0].message


def test_unknown_op_name_is_an_error_with_a_suggestion(index):
    names, diags = select(index, {"op_names": ["b1.fc", "b1.fcc"]}, "config_list[3]")
    assert names == ["b1.fc"]
    assert [(d.code, d.severity) for d in diags] == [("S201", Severity.ERROR)]
    assert diags[0].subject == "config_list[3].op_names"
    assert "did you mean 'b1.fc'" in diags[0].hint


def test_unknown_op_name_is_an_error_even_under_a_type_intersection(index):
    _, diags = select(index, {"op_names": ["nope"], "op_types": ["Linear"]}, "config_list[0]")
    assert [d.code for d in diags] == ["S201"]


def test_config_selecting_nothing_is_a_warning_with_the_closest_type(index):
    names, diags = select(index, {"op_types": ["Linaer"]}, "config_list[1]")
    assert names == []
    assert [(d.code, d.severity) for d in diags] == [("S202", Severity.WARNING)]
    assert "config_list[1] selects no module" in diags[0].message
    assert "did you mean 'Linear'" in diags[0].hint


def test_regex_typo_is_reported_with_close_names(index):
    _, diags = select(index, {"op_names_re": ["b3.fc"]}, "config_list[0]")
    assert [d.code for d in diags] == ["S202"]
    assert "b1.fc" in diags[0].hint or "b2.fc" in diags[0].hint
