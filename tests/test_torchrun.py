"""`torchrun --standalone --nproc-per-node 2 -m dsl_compress apply ... --stream`: two processes on
gloo write the very files one process writes, and a failing rank publishes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hf_models import save_llama
from output_files import read_tensors
from test_cli_stream import MODEL_PY, RULES, _shards, _state

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch build has no torch.distributed"
)

REPO = Path(__file__).resolve().parent.parent

FAILING_RANK_1 = """
import errno, os, sys
if os.environ.get("RANK") == "1":
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.pwrite = full
from dsl_compress.cli.main import main
sys.exit(main())
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "model.py").write_text(MODEL_PY.format(dtype="bfloat16"))
    (tmp_path / "a.rules").write_text(RULES)
    state = _state("bfloat16")
    save_file(state, str(tmp_path / "weights.safetensors"))
    _shards(state, tmp_path / "sharded")
    return tmp_path


def _command(folder: Path, *argv: str, ranks: int | None = 2, program=("-m", "dsl_compress")):
    """Run the command in ``folder``, under torchrun with ``ranks`` processes (or alone)."""
    launcher = [sys.executable]
    if ranks is not None:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return subprocess.run(
        [*launcher, *program, *argv],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


APPLY = ("apply", "a.rules", "--model", "model.py:build", "--weights", "sharded", "--stream")


def test_two_ranks_write_the_files_one_process_writes(project):
    sizes = ("--max-shard-size", "2KB")
    alone = _command(project, *APPLY, "--out", "alone", *sizes, ranks=None)
    assert alone.returncode == 0, alone.stderr
    ranked = _command(project, *APPLY, "--out", "ranked", *sizes)
    assert ranked.returncode == 0, ranked.stderr
    files = sorted(p.name for p in (project / "alone").iterdir())
    assert files == sorted(p.name for p in (project / "ranked").iterdir())
    assert len([f for f in files if f.startswith("model-")]) > 1
    for name in files:
        assert (project / "ranked" / name).read_bytes() == (project / "alone" / name).read_bytes()
    assert ranked.stdout.count("total") == 1  # rank 0 alone prints the summary
    assert ranked.stdout == alone.stdout


def test_two_ranks_equal_the_in_memory_apply(project):
    memory = _command(project, *APPLY[:-1], "--out", "memory", ranks=None)
    assert memory.returncode == 0, memory.stderr
    ranked = _command(project, *APPLY, "--out", "ranked")
    assert ranked.returncode == 0, ranked.stderr
    for prefix in ("model", "masks", "quant"):
        left, right = read_tensors(project / "memory", prefix), read_tensors(
            project / "ranked", prefix
        )
        assert left.keys() == right.keys()
        assert all(torch.equal(left[k], right[k]) for k in left), prefix


def test_a_failing_rank_publishes_nothing_and_the_next_run_cleans_up(project):
    (project / "failing.py").write_text(FAILING_RANK_1)
    failed = _command(project, *APPLY, "--out", "out", program=("failing.py",))
    assert failed.returncode != 0
    assert "error[L105]" in failed.stderr and "No space left on device" in failed.stderr
    assert not (project / "out").exists()
    again = _command(project, *APPLY, "--out", "out", ranks=None)
    assert again.returncode == 0, again.stderr
    assert (project / "out" / "model.safetensors").is_file()
    assert [p.name for p in project.iterdir() if p.name.startswith(".")] == []


def test_apply_without_stream_under_torchrun_is_x806(project):
    result = _command(project, *APPLY[:-1], "--out", "out")
    assert result.returncode != 0
    assert "error[X806]" in result.stderr
    assert not (project / "out").exists()


def _calibrated(project: Path, rules: str) -> tuple[str, ...]:
    """A rules file and calibration batches in ``project``; the streamed apply's arguments."""
    torch.save(torch.randn(3, 4, 16).to(torch.bfloat16), project / "calib.pt")
    (project / "c.rules").write_text(rules)
    model = ("--model", "model.py:build", "--weights", "sharded")
    return ("apply", "c.rules", *model, "--calib", "calib.pt", "--stream")


def _ranked_equals_alone(project, common):
    """Run apply as one process and on 2 ranks; every output file is the same, byte for byte."""
    alone = _command(project, *common, "--out", "alone", ranks=None)
    assert alone.returncode == 0, alone.stderr
    ranked = _command(project, *common, "--out", "ranked")
    assert ranked.returncode == 0, ranked.stderr
    for name in sorted(p.name for p in (project / "alone").iterdir()):
        assert (project / "ranked" / name).read_bytes() == (project / "alone" / name).read_bytes()
    return ranked


def test_two_ranks_calibrate_input_quantization_through_masks_as_one_process(project):
    common = _calibrated(
        project,
        "prune 0.weight sparse_ratio=0.5 granularity=out_channel\n"
        "prune 2.weight sparse_ratio=0.4 group=downs\n"
        "prune 5.weight sparse_ratio=0.4 group=downs\n"
        "align 3._output_0 with 0.weight dims=[0]\n"
        "align 5._input_0 with 0.weight dims=[0]\n"
        "quantize Linear.weight quant_dtype=int8 granularity=out_channel\n"
        "quantize Linear._input_0 quant_dtype=int8\n",
    )
    ranked = _ranked_equals_alone(project, common)
    assert ranked.stderr.count("warning[X804]") == 1  # rank 0 alone reports


def test_two_ranks_dry_run_through_masks_reports_as_one_process(project):
    rules = (
        "prune 0.weight sparse_ratio=0.5 granularity=out_channel\n"
        "prune 3.weight sparse_ratio=0.5 granularity=out_channel\n"
        "quantize Linear._input_0 quant_dtype=int8\n"
    )
    common = (*_calibrated(project, rules), "--dry-run")
    alone = _command(project, *common, ranks=None)
    assert alone.returncode == 0, alone.stderr
    ranked = _command(project, *common)
    assert ranked.returncode == 0, ranked.stderr
    assert ranked.stdout == alone.stdout


def test_two_ranks_score_taylor_as_one_process(project):
    # Every rank runs the whole forward and backward pass: each needs every gradient.
    (project / "loss.py").write_text(
        "def loss(model, batch):\n    return model(batch).float().pow(2).mean()\n"
    )
    common = _calibrated(
        project,
        "prune 0.weight sparse_ratio=0.5 granularity=out_channel metric=taylor\n"
        "prune 2.weight sparse_ratio=0.4 group=downs metric=taylor\n"
        "prune 5.weight sparse_ratio=0.4 group=downs metric=taylor\n"
        "quantize Linear.weight quant_dtype=int8\n",
    )
    common += ("--loss", "loss.py:loss")
    _ranked_equals_alone(project, common)


def test_the_distillation_loss_under_torchrun_is_x805_and_publishes_nothing(project):
    common = _calibrated(project, "prune 0.weight sparse_ratio=0.5\ndistill 8._output_0\n")
    ranked = _command(project, *common, "--out", "ranked")
    assert ranked.returncode != 0
    assert "error[X805]" in ranked.stderr and "one process" in ranked.stderr
    assert not (project / "ranked").exists()


def test_a_rank_variable_alone_does_not_silence_a_single_process(project, capsys, monkeypatch):
    from cli_runner import run

    monkeypatch.chdir(project)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    (project / "w.rules").write_text("prune nothing.weight sparse_ratio=0.5\n")
    args = ("--weights", "sharded", "--dry-run", "--stream", "--allow-unmatched")
    result = run(capsys, "apply", "w.rules", "--model", "model.py:build", *args)
    assert result.code == 0 and "warning[W301]" in result.err


def test_two_ranks_write_the_compressed_tensors_folder_one_process_writes(tmp_path):
    pytest.importorskip("transformers")
    dims = dict(hidden_size=64, intermediate_size=128, tie_word_embeddings=False)
    save_llama(tmp_path / "llama", torch.bfloat16, **dims)
    (tmp_path / "w4.rules").write_text(
        'prune **.mlp.*_proj.weight mask_structure="2:4";\n'
        "quantize Linear.weight quant_dtype=int4 granularity=[1, 32];\nexclude lm_head;\n"
    )
    apply = ("apply", "w4.rules", "--model", "hf:llama", "--format", "compressed-tensors")
    sizes = ("--max-shard-size", "40KB")
    alone = _command(tmp_path, *apply, "--out", "alone", *sizes, ranks=None)
    assert alone.returncode == 0, alone.stderr
    ranked = _command(tmp_path, *apply, "--out", "ranked", *sizes)
    assert ranked.returncode == 0, ranked.stderr
    files = sorted(p.relative_to(tmp_path / "alone") for p in (tmp_path / "alone").rglob("*"))
    assert files == sorted(
        p.relative_to(tmp_path / "ranked") for p in (tmp_path / "ranked").rglob("*")
    )
    assert len([f for f in files if f.name.startswith("model-")]) > 1
    for name in files:
        if (tmp_path / "alone" / name).is_file():
            assert (tmp_path / "ranked" / name).read_bytes() == (
                tmp_path / "alone" / name
            ).read_bytes()
