"""The .rules parser: exact syntax trees, spans and comments, and golden files of syntax errors."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path as FilePath

import pytest

import golden

from dsl_compress.diagnostics import CompressionError, Span
from dsl_compress.vocab import Mode
from dsl_compress.language.parse import load_rule_file, parse_rule_file
from dsl_compress.language.syntax import (
    Align,
    Comment,
    Compress,
    Exclude,
    Include,
    Let,
    ListValue,
    Literal,
    Path,
    Register,
    RegisterTarget,
    RuleFile,
    Segment,
    Selector,
    Setting,
)

# The full example of issue 3, line for line: the register blocks are lines 13-17 and 18 (the
# backslash is Python's, so the second block is one line of .rules text, as in the issue).
EXAMPLE = """\
let ratio = 0.5
include "base.rules"

prune Conv2d.weight sparse_ratio=ratio granularity=out_channel metric=l1
prune layer1.*.conv*.weight sparse_ratio=0.25 group=backbone   # global group
prune fc.weight sparse_ratio=0.8 except head.*
align bn*.weight with conv*.weight dims=[0]
align bn*.bias with conv*.weight dims=[0]
quantize Linear.{weight,_input_,_output_} quant_dtype=int8 quant_scheme=symmetric
quantize Conv2d.weight quant_dtype=int4 quant_scheme=affine granularity=out_channel
distill layer4._output_ lambda=0.5 link=layer4 apply_method=kl
exclude classifier.**
register prune CustomizedModule {
  p1 granularity=[1,-1]
  p2 granularity=[1,-1]
  _output_ align=p1 dims=[0] granularity=[-1,1]
}
register quantize CustomizedModule { _input_ granularity=[-1,1]; p1 granularity=[1,-1]; \
p2 granularity=[1,-1]; _output_ granularity=[-1,1] }
"""

ONE_LINER = (
    "prune Conv2d.weight granularity=out_channel; align bn*.weight with conv*.weight dims=[0]"
)

GOLDEN_DIR = FilePath(__file__).parent / "data" / "parse_errors"


# Builders for expected trees; spans are left out (they do not take part in equality).
def glob(*words: str) -> Path:
    return Path(tuple(Segment((w,)) for w in words))


def braced(*options: str) -> Segment:
    return Segment(tuple(options), braced=True)


def sel(path: Path, scope: Path | None = None) -> Selector:
    return Selector(path, scope)


def num(value: int | float) -> Literal:
    return Literal(value)


def word(text: str) -> Literal:
    return Literal(text, is_word=True)


def lst(*items) -> ListValue:
    return ListValue(tuple(items))


def settings(**pairs) -> tuple[Setting, ...]:
    return tuple(
        Setting(k, v if isinstance(v, (Literal, ListValue)) else num(v)) for k, v in pairs.items()
    )


def target(name: str, **pairs) -> RegisterTarget:
    return RegisterTarget(name, settings(**pairs))


CUSTOM_PRUNE = Register(
    Mode.PRUNE,
    "CustomizedModule",
    (
        target("p1", granularity=lst(num(1), num(-1))),
        target("p2", granularity=lst(num(1), num(-1))),
        target("_output_", align=word("p1"), dims=lst(num(0)), granularity=lst(num(-1), num(1))),
    ),
)
CUSTOM_QUANTIZE = Register(
    Mode.QUANTIZE,
    "CustomizedModule",
    (
        target("_input_", granularity=lst(num(-1), num(1))),
        target("p1", granularity=lst(num(1), num(-1))),
        target("p2", granularity=lst(num(1), num(-1))),
        target("_output_", granularity=lst(num(-1), num(1))),
    ),
)
BN_WEIGHT_TO_CONV = Align(
    sel(glob("bn*", "weight")), sel(glob("conv*", "weight")), settings(dims=lst(num(0)))
)

EXPECTED_EXAMPLE = (
    Let("ratio", num(0.5)),
    Include("base.rules"),
    Compress(
        Mode.PRUNE,
        sel(glob("Conv2d", "weight")),
        settings(sparse_ratio=word("ratio"), granularity=word("out_channel"), metric=word("l1")),
    ),
    Compress(
        Mode.PRUNE,
        sel(glob("layer1", "*", "conv*", "weight")),
        settings(sparse_ratio=0.25, group=word("backbone")),
    ),
    Compress(
        Mode.PRUNE, sel(glob("fc", "weight")), settings(sparse_ratio=0.8), (sel(glob("head", "*")),)
    ),
    BN_WEIGHT_TO_CONV,
    Align(sel(glob("bn*", "bias")), sel(glob("conv*", "weight")), settings(dims=lst(num(0)))),
    Compress(
        Mode.QUANTIZE,
        sel(Path((Segment(("Linear",)), braced("weight", "_input_", "_output_")))),
        settings(quant_dtype=word("int8"), quant_scheme=word("symmetric")),
    ),
    Compress(
        Mode.QUANTIZE,
        sel(glob("Conv2d", "weight")),
        settings(
            quant_dtype=word("int4"), quant_scheme=word("affine"), granularity=word("out_channel")
        ),
    ),
    Compress(
        Mode.DISTILL,
        sel(glob("layer4", "_output_")),
        settings(**{"lambda": 0.5, "link": word("layer4"), "apply_method": word("kl")}),
    ),
    Exclude(sel(glob("classifier", "**"))),
    CUSTOM_PRUNE,
    CUSTOM_QUANTIZE,
)


def test_issue_example_parses_to_the_exact_tree():
    assert parse_rule_file(EXAMPLE).statements == EXPECTED_EXAMPLE


def test_one_liner_with_semicolon_gives_two_statements():
    expected = (
        Compress(
            Mode.PRUNE, sel(glob("Conv2d", "weight")), settings(granularity=word("out_channel"))
        ),
        BN_WEIGHT_TO_CONV,
    )
    assert parse_rule_file(ONE_LINER).statements == expected


def test_braced_target_segment():
    segment = parse_rule_file(EXAMPLE).statements[7].selector.path.segments[1]
    assert segment == Segment(("weight", "_input_", "_output_"), braced=True)
    assert segment.text == "{weight,_input_,_output_}"
    assert parse_rule_file("quantize a.{x,x,y} quant_dtype=int8").statements[
        0
    ].selector.path == Path((Segment(("a",)), braced("x", "y")))


def test_regex_path_with_target_scope_nested_list_and_numbers():
    text = (
        r'prune re"layer\d+\.conv\"x\"".weight in encoder.** '
        'sparse_ratio=-1.5e-3 shift=+2 half=.5 zero=-0 mix=[[1], "back", -1] '
        'flag=true nothing=none note="a\\"b\\\\c" except a.b, Conv2d in head.*'
    )
    expected = Compress(
        Mode.PRUNE,
        sel(
            Path((Segment(("weight",)),), regex=r'layer\d+\.conv"x"'),
            scope=glob("encoder", "**"),
        ),
        (
            Setting("sparse_ratio", num(-0.0015)),
            Setting("shift", num(2)),
            Setting("half", num(0.5)),
            Setting("zero", num(0)),
            Setting("mix", lst(lst(num(1)), Literal("back"), num(-1))),
            Setting("flag", word("true")),
            Setting("nothing", word("none")),
            Setting("note", Literal('a"b\\c')),
        ),
        (sel(glob("a", "b")), sel(glob("Conv2d"), scope=glob("head", "*"))),
    )
    (statement,) = parse_rule_file(text).statements
    assert statement == expected
    assert type(statement.settings[0].value.value) is float
    assert type(statement.settings[1].value.value) is int
    assert type(statement.settings[4].value.items[2].value) is int


def test_regex_without_trailing_segment_keeps_backslashes():
    (statement,) = parse_rule_file(r'quantize re"fc\d+\\x" quant_dtype=int8').statements
    assert statement.selector.path == Path((), regex=r"fc\d+\\x")


def test_exclude_forms():
    statements = parse_rule_file(
        'exclude head.* from quantize\nexclude re"aux.*" from prune\nexclude x from distill'
    ).statements
    assert statements == (
        Exclude(sel(glob("head", "*")), Mode.QUANTIZE),
        Exclude(sel(Path((), regex="aux.*")), Mode.PRUNE),
        Exclude(sel(glob("x")), Mode.DISTILL),
    )


def test_align_with_except_and_type_scope():
    (statement,) = parse_rule_file(
        "align Linear.bias in enc.** with Linear.weight dims=[0] except enc.fc"
    ).statements
    assert statement == Align(
        sel(glob("Linear", "bias"), scope=glob("enc", "**")),
        sel(glob("Linear", "weight")),
        settings(dims=lst(num(0))),
        (sel(glob("enc", "fc")),),
    )


# ----- spans ---------------------------------------------------------------------------------


def test_statement_spans_are_one_based_with_exclusive_end():
    statements = parse_rule_file(EXAMPLE, "ex.rules").statements
    assert statements[0].span == Span("ex.rules", 1, 1, 1, 16)
    assert statements[2].span == Span("ex.rules", 4, 1, 4, 73)
    # The trailing comment is not part of the statement.
    assert statements[3].span == Span("ex.rules", 5, 1, 5, 61)
    compress = statements[4]
    assert compress.settings[0].span == Span("ex.rules", 6, 17, 6, 33)
    assert compress.excepts[0].span == Span("ex.rules", 6, 41, 6, 47)
    path = statements[7].selector.path
    assert path.segments[0].span == Span("ex.rules", 9, 10, 9, 16)
    assert path.segments[1].span == Span("ex.rules", 9, 17, 9, 42)


def test_spans_inside_a_multi_line_register_block():
    register = parse_rule_file(EXAMPLE, "ex.rules").statements[11]
    assert register.span == Span("ex.rules", 13, 1, 17, 2)
    p1, p2, output = register.targets
    assert p1.span == Span("ex.rules", 14, 3, 14, 24)
    assert p2.settings[0].value.span == Span("ex.rules", 15, 18, 15, 24)
    assert output.span.line == 16 and output.span.column == 3
    dims = output.settings[1]
    assert (dims.key, dims.span) == ("dims", Span("ex.rules", 16, 21, 16, 29))
    assert dims.value.span == Span("ex.rules", 16, 26, 16, 29)
    assert dims.value.items[0].span == Span("ex.rules", 16, 27, 16, 28)


def test_spans_after_semicolons_on_one_line():
    register = parse_rule_file(EXAMPLE, "ex.rules").statements[12]
    assert register.span == Span("ex.rules", 18, 1, 18, 141)
    assert [(t.name, t.span.line, t.span.column) for t in register.targets] == [
        ("_input_", 18, 38),
        ("p1", 18, 66),
        ("p2", 18, 89),
        ("_output_", 18, 112),
    ]
    first, align = parse_rule_file(ONE_LINER).statements
    assert first.span == Span(None, 1, 1, 1, 44)
    assert align.span == Span(None, 1, 46, 1, 89)
    assert align.selector.span == Span(None, 1, 52, 1, 62)
    assert align.partner.span == Span(None, 1, 68, 1, 80)
    assert align.settings[0].span == Span(None, 1, 81, 1, 89)
    assert align.settings[0].value.items[0].span == Span(None, 1, 87, 1, 88)


def test_spans_after_blank_lines_and_crlf():
    statements = parse_rule_file("\r\n\r\n  prune a.b x=1\r\nexclude c.*\r\n").statements
    assert statements[0].span == Span(None, 3, 3, 3, 16)
    assert statements[1].span == Span(None, 4, 1, 4, 12)


def test_line_continuation_joins_lines_and_keeps_positions():
    (statement,) = parse_rule_file("prune fc.weight \\\n  sparse_ratio=0.5\n").statements
    assert statement == Compress(Mode.PRUNE, sel(glob("fc", "weight")), settings(sparse_ratio=0.5))
    assert statement.settings[0].span == Span(None, 2, 3, 2, 19)
    assert statement.span == Span(None, 1, 1, 2, 19)


def test_equality_ignores_spans_and_layout():
    assert parse_rule_file("prune a.b x=1") == parse_rule_file(
        "\n\n   prune   a.b    x=1   # why\n", "other.rules"
    )


# ----- comments, newlines, empty input -------------------------------------------------------


def test_comments_are_collected_with_line_and_trailing_flag():
    text = (
        "# header\n"
        "prune a.b x=1  # after code\n"
        "   # indented, own line\n"
        "register prune M {  # opens\n"
        "  p1 g=[1,-1]; # after semicolon\n"
        "}\n"
        "# last"
    )
    rule_file = parse_rule_file(text)
    assert rule_file.comments == (
        Comment("# header", 1, False),
        Comment("# after code", 2, True),
        Comment("# indented, own line", 3, False),
        Comment("# opens", 4, True),
        Comment("# after semicolon", 5, True),
        Comment("# last", 7, False),
    )
    assert len(rule_file.statements) == 2
    assert parse_rule_file(EXAMPLE).comments == (Comment("# global group", 5, True),)


def test_hash_inside_a_string_is_not_a_comment():
    rule_file = parse_rule_file('include "a#b.rules"  # real')
    assert rule_file.statements == (Include("a#b.rules"),)
    assert rule_file.comments == (Comment("# real", 1, True),)


def test_newlines_inside_brackets_do_not_end_the_statement():
    text = "align bn.weight with conv.weight dims=[\n  0,  # first\n  1,\n]\nexclude x.*"
    rule_file = parse_rule_file(text)
    assert rule_file.statements == (
        Align(
            sel(glob("bn", "weight")),
            sel(glob("conv", "weight")),
            settings(dims=lst(num(0), num(1))),
        ),
        Exclude(sel(glob("x", "*"))),
    )
    assert rule_file.statements[0].settings[0].value.span == Span(None, 1, 39, 4, 2)
    assert rule_file.statements[1].span.line == 5
    assert rule_file.comments == (Comment("# first", 2, True),)


@pytest.mark.parametrize(
    "text", ["", "\n", "   \n\t\n", ";;\n;", "# only a comment", "# a\n\n  # b\n"]
)
def test_empty_and_comment_only_files_have_no_statements(text):
    rule_file = parse_rule_file(text)
    assert rule_file.statements == ()
    assert all(not c.trailing for c in rule_file.comments)
    assert len(rule_file.comments) == text.count("#")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("blanks", ["", " ", "\t\f "])
def test_lines_of_blanks_and_comments_end_nothing_and_keep_their_comments(newline, blanks):
    lines = [
        "prune a.weight sparse_ratio=0.5",
        f"{blanks}# one",
        blanks,
        f"{blanks}#",
        "align bn.weight with conv.weight dims=[",
        f"{blanks}# inside a list",
        blanks,
        "  0]",
        "register prune M {",
        f"{blanks}# inside a block",
        blanks,
        "  p1 granularity=[1,-1]",
        "}",
        f"{blanks}# ends with a backslash \\",
        f"{blanks}# after it",
    ]
    rule_file = parse_rule_file(newline.join(lines) + newline)
    assert [s.span.line for s in rule_file.statements] == [1, 5, 9]
    assert rule_file.statements[1].span.end_line == 8
    assert rule_file.statements[2].targets[0].span.line == 12
    comments = [(c.text, c.line, c.trailing) for c in rule_file.comments]
    own_lines = [(line.strip(), n) for n, line in enumerate(lines, 1) if "#" in line]
    assert comments == [(text, n, False) for text, n in own_lines]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("between", ["# a comment", "", "  "])
def test_a_continued_line_ends_at_the_next_line_break_even_before_a_comment_line(newline, between):
    # "\" continues a statement onto the next line only: a comment or blank line there ends it,
    # so the setting two lines down stands alone (and is an error).
    text = f"prune a.weight \\{newline}{between}{newline}sparse_ratio=0.5{newline}"
    with pytest.raises(CompressionError) as caught:
        parse_rule_file(text)
    assert [d.span.line for d in caught.value.diagnostics] == [3]
    continued = parse_rule_file(f"prune a.weight \\{newline}  sparse_ratio=0.5{newline}")
    assert continued.statements[0].settings[0].span.line == 2


def test_separators_may_repeat():
    statements = parse_rule_file("prune a.b x=1;;\n;\n\nprune c.d y=2;").statements
    assert statements == (
        Compress(Mode.PRUNE, sel(glob("a", "b")), settings(x=1)),
        Compress(Mode.PRUNE, sel(glob("c", "d")), settings(y=2)),
    )


def test_load_reads_the_file_and_sets_the_path(tmp_path):
    file = tmp_path / "model.rules"
    file.write_text(EXAMPLE, encoding="utf-8")
    rule_file = load_rule_file(file)
    assert rule_file == RuleFile(EXPECTED_EXAMPLE)
    assert rule_file.path == str(file)
    assert rule_file.statements[11].targets[2].span.file == str(file)
    assert load_rule_file(str(file)).statements[0].span == Span(str(file), 1, 1, 1, 16)


def test_load_reports_errors_with_the_path(tmp_path):
    file = tmp_path / "bad.rules"
    file.write_text("prune a.b x=1\nalign a.b c.d\n", encoding="utf-8")
    with pytest.raises(CompressionError) as caught:
        load_rule_file(file)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.span == Span(str(file), 2, 11, 2, 12)
    assert str(diagnostic.span) == f"{file}:2:11"


def test_every_error_is_reported_and_good_statements_are_not():
    text = "prune a.b x=\nprune c.d y=1\nalign a.b c.d\nexclude e.*; prune f.g z=@\nlet q = 1"
    with pytest.raises(CompressionError) as caught:
        parse_rule_file(text)
    found = [(d.code, d.span.line, d.span.column) for d in caught.value.diagnostics]
    assert found == [("E103", 1, 13), ("E101", 3, 11), ("E102", 4, 26)]
    assert all(d.hint and d.hint.startswith("expected ") for d in caught.value.diagnostics)


# ----- golden files of syntax errors -------------------------------------------------------------


def golden_cases() -> list:
    return golden.cases(GOLDEN_DIR)


def render_errors(source: FilePath) -> str:
    """Every diagnostic of the file, rendered with its source line, separated by a blank line."""
    text = source.read_text(encoding="utf-8")
    try:
        parse_rule_file(text, source.name)
    except CompressionError as exc:
        lines = text.splitlines()
        return "\n\n".join(d.render(lines) for d in exc.diagnostics) + "\n"
    return "<parsed without errors>\n"


def expected_path(source: FilePath) -> FilePath:
    return source.with_name(source.name[: -len(".rules")] + ".expected.txt")


def test_there_are_golden_parse_error_cases():
    assert len(golden_cases()) >= 8
    for case in golden_cases():
        assert expected_path(case.values[0]).is_file() or golden.UPDATE


@pytest.mark.parametrize("source", golden_cases())
def test_parse_errors_golden(source: FilePath):
    golden.check(render_errors(source), expected_path(source))


# Raw grammar names that must never reach a user: Lark's anonymous and end-of-input terminals,
# and every named terminal of grammar/rules.lark.
_RAW_NAMES = re.compile(r"__ANON|\$END|\b(_?[A-Z][A-Z_]*[A-Z])\b")
_SOURCE_EXCERPT = re.compile(r"^ +\d* \| ")


def _raw_names(rendered: str) -> list[str]:
    words = []
    for line in rendered.splitlines():
        if _SOURCE_EXCERPT.match(line):
            continue  # the user's own text
        words += [m.group(0) for m in _RAW_NAMES.finditer(line)]
    return words


@pytest.mark.parametrize(
    "source", [pytest.param(s, id=s.name) for s in sorted(GOLDEN_DIR.glob("*.rules"))]
)
def test_golden_messages_name_expectations_in_words(source: FilePath):
    for rendered in (render_errors(source), expected_path(source).read_text(encoding="utf-8")):
        assert _raw_names(rendered) == [], rendered
        assert "error[" in rendered, rendered


def test_raw_name_check_catches_terminal_names():
    assert _raw_names(
        "x:1:1: error[E101] unexpected __ANON_0\n  help: expected RBRACE or $END"
    ) == [
        "__ANON",
        "RBRACE",
        "$END",
    ]
    assert _raw_names("  help: expected _SEMICOLON or PATTERN\n  3 | prune NAME.weight") == [
        "_SEMICOLON",
        "PATTERN",
    ]


# A setting written without blanks is one SETTING token, which the builder splits; spelt any
# other way it is three tokens or more. The two spellings must mean the same.
SETTING_SPELLINGS = [
    ("sparse_ratio=0.5", "sparse_ratio = 0.5"),
    ("quant_dtype=int8", "quant_dtype =int8"),
    ('mask_structure="2:4"', 'mask_structure= "2:4"'),
    ('apply_method="a\\"b"', 'apply_method = "a\\"b"'),
    ("lambda=-1.5e-3", "lambda = -1.5e-3"),
    ("dims=+3", "dims \\\n= +3"),
]


def _token_types(text: str) -> list[str]:
    """The tokens the parser takes for ``text``, through Lark's interactive parser: up to a
    syntax error, that token too, if there is one."""
    from lark.exceptions import UnexpectedInput

    from dsl_compress.language.lark_parser import build_parser
    from dsl_compress.language.tree_builder import SyntaxBuilder

    parser = build_parser(SyntaxBuilder(), lambda token: token)
    types = []
    with contextlib.suppress(UnexpectedInput):
        for token in parser.parse_interactive(text, start="start").iter_parse():
            types.append(token.type)
    return types


@pytest.mark.parametrize("together, apart", SETTING_SPELLINGS)
def test_a_setting_means_the_same_written_together_or_apart(together, apart):
    for head, tail in [("prune a.weight ", ""), ("register prune X { p1 ", " }")]:
        joined = parse_rule_file(f"{head}{together} x=1{tail}\n").statements
        spaced = parse_rule_file(f"{head}{apart} x = 1{tail}\n").statements
        assert joined == spaced


def test_a_setting_written_together_is_one_token():
    text = 'prune a.weight sparse_ratio=0.5 metric=l1 group="g"\n'
    assert _token_types(text) == ["PRUNE", "PATTERN"] + ["SETTING"] * 3 + ["_NEWLINE"]
    spaced = _token_types("prune a.weight sparse_ratio = 0.5 dims=[0]\n")
    assert spaced == ["PRUNE", "PATTERN", "NAME", "EQUALS", "NUMBER"] + [
        "NAME",
        "EQUALS",
        "LBRACKET",
        "NUMBER",
        "RBRACKET",
        "_NEWLINE",
    ]


@pytest.mark.parametrize("keyword", ["in", "except", "with", "from", "prune", "let"])
def test_a_keyword_before_equals_reads_as_the_keyword_in_either_spelling(keyword):
    """A keyword is never a SETTING's key: `in=1` is read as `in = 1` is."""
    results = []
    for text in (f"prune a.weight {keyword}=1\n", f"prune a.weight {keyword} = 1\n"):
        try:
            results.append(("parsed", parse_rule_file(text).statements))
        except CompressionError as exc:
            results.append(("error", [(d.code, d.message) for d in exc.diagnostics]))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "together, apart",
    [
        ("a.{b,c}.weight", "a.{ b, c }.weight"),
        ("Linear.{_input_,_output_}", "Linear.{ _input_ , _output_ }"),
        ("s.block{1,2}.{conv,bn}*.{weight,bias}", "s.block{1,2}.{conv,bn}*.{weight ,bias}"),
        ("a.{b,b,c}.x", "a.{b, b, c}.x"),
    ],
)
def test_a_set_in_a_dotted_run_means_what_it_means_spelt_apart(together, apart):
    """A {a,b} set standing alone after a dot is part of the PATTERN token (the builder splits
    it); spelt with blanks it is a set_segment of its own. Both build the same nodes."""
    joined = parse_rule_file(f"prune {together} sparse_ratio=0.5\n").statements
    assert joined == parse_rule_file(f"prune {apart} sparse_ratio=0.5\n").statements
    assert _token_types(f"prune {together}\n") == ["PRUNE", "PATTERN", "_NEWLINE"]


@pytest.mark.parametrize("path", ["{a,b}.weight", "a.{with,b}", "a.{in}", "a.{b,,c}"])
def test_a_set_the_run_does_not_take_is_read_as_before(path):
    """A set at a path's start is set_segment's (it may be a target set: {weight,bias}); a set
    holding a keyword or an empty word is not a run's part, and is an error where it was."""
    assert "LBRACE" in _token_types(f"prune {path}\n")
    if path.startswith("{"):
        assert parse_rule_file(f"prune {path}\n").statements[0].selector.path.segments[0].braced
    else:
        with pytest.raises(CompressionError):
            parse_rule_file(f"prune {path}\n")
