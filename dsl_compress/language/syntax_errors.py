"""Syntax errors in words: what was found, what was expected, where, and a did-you-mean for keywords."""

from __future__ import annotations

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput

from dsl_compress.diagnostics import Diagnostic, Severity, Span, did_you_mean, replacing, sole_match
from dsl_compress.language.lark_parser import setting_parts
from dsl_compress.language.statement_split import Chunk

# How terminals are named in error messages: words a user recognises, never __ANON_0.
TERMINAL_WORDS = {
    "NAME": "a name",
    "SETTING": "a name",
    "PATTERN": "a module name, type or pattern",
    "WORD": "a module name, type or pattern",
    "NUMBER": "a number",
    "STRING": 'a string ("...")',
    "REGEX": 'a regex (re"...")',
    "EQUALS": "'='",
    "DOT": "'.'",
    "COMMA": "','",
    "_SEMICOLON": "';'",
    "_NEWLINE": "a new line",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LBRACKET": "'['",
    "RBRACKET": "']'",
    "$END": "the end of the file",
}
# A {a,b} set with a space inside, touching a word or another set: meant as one segment.
_SPACED_SET = re.compile(
    r'[A-Za-z0-9_*]*(?:[A-Za-z0-9_*]\{[^{}\n"]*\s[^{}\n"]*\}|\{[^{}\n"]*\s[^{}\n"]*\}[A-Za-z0-9_*{])'
    r"[A-Za-z0-9_*{},]*"
)
STATEMENT_KEYWORDS = ("let", "include", "prune", "quantize", "distill", "align", "exclude")
STATEMENT_KEYWORDS += ("register",)
KEYWORDS = STATEMENT_KEYWORDS + ("with", "from", "except", "in")


def syntax_diagnostic(
    exc: UnexpectedInput, chunk: Chunk, path: str | None, what: str = "statement"
) -> Diagnostic:
    """A syntax error in words: what was found, what was expected, where (``what`` is being
    parsed: a statement, or a selector given on the command line)."""
    line, column = chunk.absolute(*_position(exc, chunk.text))
    expected = _expected(exc)
    hint = f"expected {_listed(expected)}" if expected else None
    keyword = None
    if isinstance(exc, UnexpectedCharacters):
        code, message, width, hint = _bad_character(exc, chunk.text, hint)
    elif getattr(exc, "token", None) is None or exc.token.type == "$END":
        code, message, width = "E103", f"the {what} ends too early", 1
    else:
        token = _as_spelt_apart(exc.token)
        code, message, width = "E101", f"unexpected {_describe(token)}", max(1, len(str(token)))
        hint = _keyword_hint(token, expected) or hint
        keyword = _keyword_fix(token, expected)
    spaced = _spaced_set_hint(chunk.text)
    hint = spaced or hint
    span = Span(path, line, column, line, column + width)
    fixes = (replacing(span, str(token), keyword),) if keyword and not spaced else ()
    return Diagnostic(
        code, Severity.ERROR, message, span=span, subject=path, hint=hint, fixes=fixes
    )


def _as_spelt_apart(token: Token) -> Token:
    """The token an error names: a SETTING token (``key=value``, lexed as one) is named by its
    key, as the key alone would be were the setting spelt with blanks."""
    return setting_parts(token)[0] if token.type == "SETTING" else token


def _bad_character(exc: UnexpectedCharacters, text: str, hint: str | None):
    pos = exc.pos_in_stream
    char = text[pos] if pos < len(text) else "?"
    if char == '"':
        end = text.find("\n", pos)
        width = (len(text) if end < 0 else end) - pos
        return "E102", "unterminated string", width, "close it with '\"' on the same line"
    if char == ":" and (nm := _unquoted_n_m(text, pos)) is not None:
        hint = f'quote it: {nm[0]}="{nm[1]}" (a value with a colon is a string)'
    return "E102", f"unexpected character {char!r}", 1, hint


def _unquoted_n_m(text: str, colon: int) -> tuple[str, str] | None:
    """(key, 'N:M') for an N:M value written without quotes (mask_structure=2:4)."""
    before = re.search(r"(\w+)\s*=\s*(\d+)$", text[:colon])
    after = re.match(r"\d+", text[colon + 1 :])
    if before is None or after is None:
        return None
    return before[1], f"{before[2]}:{after[0]}"


def _keyword_hint(token: Token, expected: set[str]) -> str | None:
    """A misspelt statement keyword ('quantise') gets a did-you-mean, not a list of tokens."""
    starts = _statement_starts(token, expected)
    return did_you_mean(str(token), starts) if starts else None


def _keyword_fix(token: Token, expected: set[str]) -> str | None:
    """The one statement keyword a misspelt one stands for, if only one is close."""
    starts = _statement_starts(token, expected)
    return sole_match(str(token), starts) if starts else None


def _statement_starts(token: Token, expected: set[str]) -> list[str]:
    if token.type not in ("NAME", "PATTERN", "WORD"):
        return []
    return sorted({name.lower() for name in expected} & set(STATEMENT_KEYWORDS))


def _spaced_set_hint(text: str) -> str | None:
    """A {a,b} set run together with a word ({q, k}_proj) lexes as one segment only without
    spaces; with them the parser reads a set, then a setting, and fails somewhere after."""
    words = text.split(maxsplit=1)
    spaced = _SPACED_SET.search(text)
    if spaced is None or not words or words[0] in ("register", "let", "include"):
        return None
    joined = "".join(spaced.group(0).split())
    return f"write '{joined}': no spaces inside a segment with a {{a,b}} set"


def _position(exc: UnexpectedInput, text: str) -> tuple[int, int]:
    """Where to point: the offending token, or just past the last character at the end."""
    if exc.line > 0 and getattr(getattr(exc, "token", None), "type", None) != "$END":
        return exc.line, exc.column
    body = text.rstrip()
    line = body.count("\n") + 1
    return line, len(body) - (body.rfind("\n") + 1) + 1


def _describe(token: Token) -> str:
    if token.type == "_NEWLINE":
        return "end of line"
    if token.type in ("NAME", "PATTERN", "WORD") and str(token) not in KEYWORDS:
        return f"'{token}'"
    return f"'{token}'" if token.type != "$END" else "end of file"


def _expected(exc: UnexpectedInput) -> set[str]:
    """Terminals the parser accepts at the error (exact, from the interactive parser)."""
    parser = getattr(exc, "interactive_parser", None)
    if parser is not None:
        return set(parser.accepts())
    return set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())


def _listed(names: set[str]) -> str:
    words = sorted({_word(name) for name in names})
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1] if words else ""


def _word(terminal: str) -> str:
    if terminal in TERMINAL_WORDS:
        return TERMINAL_WORDS[terminal]
    if terminal.lower() in KEYWORDS:
        return f"'{terminal.lower()}'"
    return terminal.lower()
