"""NNI 3.0 as a peer: its own virtual environment, made on demand, and jobs run in it as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# NNI 3.0 pins filelock<3.12, so it never shares an environment with dsl-compress.
VENV = Path(os.environ.get("DSL_COMPRESS_NNI_VENV", BENCH / ".nni-venv"))
JOBS = BENCH / "nni_jobs"
REQUIREMENTS = ("torch==2.13.0", "nni==3.0")


class NniUnavailable(RuntimeError):
    """The NNI environment could not be made (no registry, pip failed); the peer is skipped."""


def nni_python() -> Path:
    """The NNI venv's interpreter, creating the venv and installing NNI 3.0 the first time."""
    python = VENV / "bin" / "python"
    if python.is_file() and _has_nni(python):
        return python
    print(f"creating the NNI 3.0 environment in {VENV} (once)...", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not _has_nni(python):
        raise NniUnavailable(f"pip install {' '.join(REQUIREMENTS)} failed:\n{done.stderr[-2000:]}")
    return python


def _has_nni(python: Path) -> bool:
    probe = "import nni, torch; assert nni.__version__ == '3.0'"
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def run_nni_job(script: str, *args: str, timeout: float = 1800) -> dict:
    """Run ``bench/nni_jobs/<script>`` with NNI's interpreter; it prints one JSON object last."""
    done = subprocess.run(
        [str(nni_python()), str(JOBS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"NNI job {script} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
