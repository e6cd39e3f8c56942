"""JSON text that strict parsers accept, for the files we write: no bare Infinity or NaN.

The convention for non-finite floats: an infinity is written as the number ``1e999``
(``-1e999``), which every JSON parser reads back as infinity and which the .rules language
spells the same way; NaN has no JSON number, so it is written as the string ``"NaN"``.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Python's json writes non-finite floats as bare words; strings are matched first so that a
# string holding those words is left alone.
_BARE_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')
_SPELLING = {"Infinity": "1e999", "-Infinity": "-1e999", "NaN": '"NaN"'}


def json_text(data: Any, indent: int | None = 2) -> str:
    """``data`` as JSON (ending in a newline) with non-finite floats spelled as documented."""
    text = json.dumps(data, indent=indent)
    return _BARE_WORD.sub(lambda m: _SPELLING[m[1]] if m[1] else m[0], text) + "\n"
