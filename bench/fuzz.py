"""The fuzz suite's long profile: thousands of examples per property instead of CI's few.

python bench/fuzz.py            # DSL_COMPRESS_FUZZ=long python -m pytest tests/test_fuzz.py ...
python bench/fuzz.py -k format  # any further pytest arguments pass through

The fuzzed properties of fmt and lint a piece at a time (tests/test_*_pieces.py) run too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    env = {**os.environ, "DSL_COMPRESS_FUZZ": "long"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    files = ["tests/test_fuzz.py", "tests/test_format_pieces.py", "tests/test_lint_pieces.py"]
    command = [sys.executable, "-m", "pytest", *files, "-p", "no:cacheprovider"]
    return subprocess.call([*command, *argv], cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
