"""The JSON we write is strict JSON: infinities as 1e999, NaN as the string "NaN", strings as given."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_compress.io.json_text import json_text

# Strings that look like the bare words Python's json writes for non-finite floats.
TRICKY = st.sampled_from(["Infinity", "-Infinity", "NaN", '"NaN"', 'a\\"Infinity', "1e999"])
LEAVES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    TRICKY,
)
DATA = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=20,
)


def strict_loads(text: str):
    def refuse(word):
        raise ValueError(f"{word} is not JSON")

    return json.loads(text, parse_constant=refuse)


def documented(data):
    """``data`` as the convention reads it back: NaN becomes "NaN", infinities stay."""
    if isinstance(data, float) and math.isnan(data):
        return "NaN"
    if isinstance(data, list):
        return [documented(item) for item in data]
    if isinstance(data, dict):
        return {key: documented(value) for key, value in data.items()}
    return data


@settings(max_examples=200, deadline=None)
@given(DATA, st.sampled_from([None, 2]))
def test_any_data_is_written_as_strict_json_by_the_documented_convention(data, indent):
    text = json_text(data, indent)
    assert text.endswith("\n")
    assert strict_loads(text) == documented(data)


def test_the_spellings():
    assert json_text([math.inf, -math.inf, math.nan, "Infinity"], None) == (
        '[1e999, -1e999, "NaN", "Infinity"]\n'
    )
