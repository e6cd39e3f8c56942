"""Matching module names against selector patterns in bounded time.

Python's ``re`` backtracks: a pattern that can split a name in many ways (``re"(a|a)*b"``,
``re".*.*.*.*x"``, the glob ``*a*a*a*a*a*a*.x``) takes time exponential in a name's length, or
of a high power of it, and one such statement in a pull request would stall lint in CI. A
pattern that cannot do that (at most two unbounded repetitions, a few optional parts, no
repeated group, no inline flags) is matched by ``re`` as it is: every glob of one or two
wildcards and most regexes. Any other is matched by the ``regex`` module under a deadline, and
passing the deadline raises :class:`PatternTooCostly` (E224 at the selector).
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any, Callable

# What matching one selector against one model's module names may take: MATCH_SECONDS, and
# PER_NAME_SECONDS more for each name matched. A pattern that needs more backtracks without
# bound; a real one takes a few microseconds a name (the regex module under a deadline
# about 2.5), so a model of millions of modules gets its time too.
MATCH_SECONDS = 2.0
PER_NAME_SECONDS = 0.001

_UNBOUNDED = frozenset("*+{")
# A repeated group: each repetition may split the text anew ((a|a)*, (a+)+, (x?){9}).
_REPEATED_GROUP = re.compile(r"\)[*+{]")
# Inline flags: verbose mode (?x) lets a quantifier stand apart from what it repeats.
_INLINE_FLAGS = re.compile(r"\(\?[aiLmsux-]")
MAX_UNBOUNDED = 2
MAX_OPTIONAL = 4

Matcher = Callable[[str, float], Any]  # (name, deadline) -> a match or None


class PatternTooCostly(Exception):
    """Matching a pattern passed its deadline, or it uses what the bounded matcher cannot read."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(reason)
        self.pattern, self.reason = pattern, reason


def deadline(names: int) -> float:
    """The deadline of one selector's matching against ``names`` names, begun now
    (``time.monotonic`` seconds)."""
    return time.monotonic() + MATCH_SECONDS + names * PER_NAME_SECONDS


def may_backtrack(pattern: str) -> bool:
    """Whether matching ``pattern`` may cost more than a small power of a name's length.

    Conservative: a quantifier character counts wherever it stands (in a class, escaped by
    verbose mode), so that what it cannot rule out goes to the bounded matcher.
    """
    if _REPEATED_GROUP.search(pattern) or _INLINE_FLAGS.search(pattern):
        return True
    unbounded = optional = 0
    escaped, previous = False, ""
    for char in pattern:
        if escaped:
            escaped, previous = False, ""  # an escaped "(" opens no group: "\(?" is optional
            continue
        if char == "\\":
            escaped = True
        elif char in _UNBOUNDED:
            unbounded += 1
        elif char == "?" and previous != "(":  # "(?:", "(?P<", "(?=" are no quantifiers
            optional += 1
        previous = char
    return unbounded > MAX_UNBOUNDED or optional > MAX_OPTIONAL


@functools.lru_cache(maxsize=65536)
def compiled_regex(pattern: str) -> re.Pattern:
    """One compiled regex per distinct pattern (re's own cache holds only 512); re.error for
    an invalid one."""
    return re.compile(pattern)


@functools.lru_cache(maxsize=65536)
def name_matcher(pattern: str) -> Matcher:
    """``fullmatch`` of ``pattern`` (a valid ``re`` pattern) against a name, before a deadline."""
    if not may_backtrack(pattern):
        fullmatch = compiled_regex(pattern).fullmatch
        return lambda name, _deadline: fullmatch(name)
    import regex  # only for a pattern that needs it

    try:
        compiled = regex.compile(pattern, regex.VERSION0)
    except regex.error as exc:
        reason = f"the bounded matcher cannot read it ({exc})"
        return functools.partial(_refuse, pattern, reason)

    def bounded(name: str, until: float) -> Any:
        try:
            return compiled.fullmatch(name, timeout=max(until - time.monotonic(), 0.0))
        except TimeoutError:
            shown = name if len(name) <= 60 else name[:57] + "..."
            reason = f"matching it passed its deadline (at module '{shown}')"
            raise PatternTooCostly(pattern, reason) from None

    return bounded


def _refuse(pattern: str, reason: str, name: str, until: float) -> Any:
    raise PatternTooCostly(pattern, reason)
