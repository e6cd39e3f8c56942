"""{a,b} sets inside a segment, as in a shell: parsed as one segment, matched, printed back."""

from __future__ import annotations

import pytest
from torch import nn

import dsl_compress
from dsl_compress import Mode
from dsl_compress.language.format import format_rules
from dsl_compress.language.parse import parse_rule_file
from dsl_compress.language.syntax import Segment
from dsl_compress.resolve.selectors import brace_expansions


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        for name in ("q_proj", "k_proj", "v_proj", "o_proj", "qa", "qb", "ka", "kb"):
            setattr(self, name, nn.Linear(4, 4))


class Decoder(nn.Module):
    """layers.{0,1}.attn with q/k/v/o projections, and a top-level q_proj."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleDict({"attn": Attention()}) for _ in range(2))
        self.q_proj = nn.Linear(4, 4)


def segments_of(text: str) -> list[Segment]:
    return list(parse_rule_file(text).statements[0].selector.path.segments)


def modules_of(text: str, mode: Mode = Mode.PRUNE) -> list[str]:
    compiled = dsl_compress.parse(text, "t.rules").compile(Decoder())
    return list(dict.fromkeys(e.module for e in compiled.plan.of_mode(mode)))


@pytest.mark.parametrize(
    "segment",
    ["{q,k}_proj", "x{a,b}y*", "{a,b}{c,d}", "layer{1,2}", "{in,out}x", "in{a,b}"],
)
def test_a_set_run_together_with_text_is_one_pattern_segment(segment: str):
    first, second = segments_of(f"prune **.{segment}.weight sparse_ratio=0.5")[1:]
    assert first == Segment((segment,), braced=False)
    assert second == Segment(("weight",))


def test_a_set_standing_alone_is_still_a_set_segment():
    segments = segments_of("quantize a.{q,k}.{weight,_input_} quant_dtype=int8")
    assert segments[1] == Segment(("q", "k"), braced=True)
    assert segments[2] == Segment(("weight", "_input_"), braced=True)


def test_issue_selector_was_a_syntax_error_and_now_selects_q_and_k_projections():
    assert modules_of("prune **.{q,k}_proj.weight sparse_ratio=0.5") == [
        "layers.0.attn.q_proj",
        "layers.0.attn.k_proj",
        "layers.1.attn.q_proj",
        "layers.1.attn.k_proj",
        "q_proj",
    ]


@pytest.mark.parametrize(
    "selector, expected",
    [
        (
            "layers.{0,1}.attn.{q,o}_proj",
            ["0.attn.q_proj", "0.attn.o_proj", "1.attn.q_proj", "1.attn.o_proj"],
        ),
        ("layers.1.attn.{q,k}{a,b}", ["1.attn.qa", "1.attn.qb", "1.attn.ka", "1.attn.kb"]),
        ("layers.0.attn.{q,v}*", ["0.attn.q_proj", "0.attn.v_proj", "0.attn.qa", "0.attn.qb"]),
        ("layers.1.attn.{k,x}_pro*", ["1.attn.k_proj"]),
        ("{layers,x}.1.*.o_pro{j,k}", ["1.attn.o_proj"]),
    ],
)
def test_sets_combine_with_text_and_stars_inside_one_segment(selector, expected):
    names = modules_of(f"prune {selector}.weight sparse_ratio=0.5")
    assert names == ["layers." + name for name in expected]


def test_star_in_a_combined_segment_stays_within_the_segment():
    assert modules_of("prune {layers,x}*.weight sparse_ratio=0.5") == []


def test_a_last_segment_like_q_k_proj_is_a_module_name_so_template_targets_apply():
    compiled = dsl_compress.parse("prune layers.0.attn.{q,k}_proj sparse_ratio=0.5").compile(
        Decoder()
    )
    targets = [(e.module, e.target) for e in compiled.plan.of_mode(Mode.PRUNE)]
    assert targets == [
        (f"layers.0.attn.{m}", t) for m in ("q_proj", "k_proj") for t in ("weight", "bias")
    ]


def test_a_last_segment_whose_expansions_are_all_targets_names_targets():
    text = "quantize q_proj._{in,out}put_ quant_dtype=int8"
    compiled = dsl_compress.parse(text).compile(Decoder())
    targets = [(e.module, e.target) for e in compiled.plan.of_mode(Mode.QUANTIZE)]
    assert targets == [("q_proj", "_input_0"), ("q_proj", "_output_0")]


def test_brace_expansions_in_shell_order():
    assert brace_expansions("{a,b}{c,d}") == ("ac", "ad", "bc", "bd")
    assert brace_expansions("x{1,2}y") == ("x1y", "x2y")
    assert brace_expansions("plain") == ("plain",)


def test_config_list_without_a_model_matches_the_same_names():
    rules = dsl_compress.parse("prune **.{q,k}_proj.weight sparse_ratio=0.5")
    (config,) = rules.compile().config_list["prune"]
    model = Decoder()
    plan = dsl_compress.build_plan(model, [config], "prune")
    assert [e.module for e in plan.entries] == modules_of(
        "prune **.{q,k}_proj.weight sparse_ratio=0.5"
    )


@pytest.mark.parametrize(
    "text",
    [
        "prune **.{q,k}_proj.weight sparse_ratio=0.5\n",
        "quantize layer{1,2}.*.{weight,_input_} quant_dtype=int8 except {a,b}{c,d}.x{a,b}y*\n",
        "align {a,b}_bn.weight with {a,b}_conv.weight dims=[0]\n",
    ],
)
def test_fmt_prints_combined_segments_back_unchanged(text: str):
    assert format_rules(text) == text
    assert parse_rule_file(format_rules(text)) == parse_rule_file(text)


def test_fmt_normalises_spacing_around_but_never_inside_a_combined_segment():
    messy = "prune   **.{q,k}_proj.weight    sparse_ratio = 0.5 ;"
    assert format_rules(messy) == "prune **.{q,k}_proj.weight sparse_ratio=0.5\n"
