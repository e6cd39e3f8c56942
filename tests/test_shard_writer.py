"""io/shard_writer.py: safetensors files written tensor by tensor, read back by safetensors itself;
Hugging Face shards and their index; errors; a full disk; apply --max-shard-size; memory."""

from __future__ import annotations

import errno
import gc
import json
import os
import random
import re
import tracemalloc
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import dsl_compress
from cli_runner import run
from dsl_compress import CompressionError, CompressionWarning
from dsl_compress.models import resnet
from dsl_compress.io import shard_writer
from dsl_compress.io.shard_writer import (
    PlannedTensor,
    ShardedWriter,
    parse_shard_size,
    write_safetensors,
)
from dsl_compress.tools.apply_job import apply_plan_job, write_outputs
from output_files import fail_writes_to, read_metadata, read_tensors, tensor_files

RULES = Path(__file__).resolve().parents[1] / "rules" / "resnet_channels.rules"
RULES_TEXT = RULES.read_text(encoding="utf-8") + (
    "quantize Conv2d.weight quant_dtype=int8 quant_scheme=symmetric granularity=out_channel\n"
)
RESNET = "dsl_compress.models:resnet"


def sample_tensors() -> dict[str, torch.Tensor]:
    """One tensor per dtype and shape kind the files must hold, values seeded."""
    gen = torch.Generator().manual_seed(0)
    return {
        "fp32": torch.randn(3, 5, generator=gen),
        "fp16": torch.randn(7, generator=gen).half(),
        "bf16": torch.randn(2, 3, generator=gen).bfloat16(),
        "int8": torch.randint(-128, 128, (9,), generator=gen, dtype=torch.int8),
        "bool": torch.rand(4, 3, generator=gen) > 0.5,
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "int64": torch.arange(3),
    }


def plan_of(tensors: dict[str, torch.Tensor]) -> list[PlannedTensor]:
    return [PlannedTensor.of(name, tensor) for name, tensor in tensors.items()]


def header_of(path: Path) -> tuple[int, dict]:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return length, json.loads(raw[8 : 8 + length])


def assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name


def run_job(dtype=torch.float32):
    """resnet in ``dtype``, channel-pruned and int8 per-channel weight-quantized."""
    model = resnet().to(dtype)
    plan = dsl_compress.parse(RULES_TEXT, "r.rules").compile(model).plan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompressionWarning)
        return apply_plan_job(model, plan)


# ----- one file -----------------------------------------------------------------------------------


def test_every_dtype_and_shape_round_trips_through_safetensors(tmp_path):
    tensors = sample_tensors()
    paths = write_safetensors(tmp_path, "model", tensors, metadata={"format": "pt"})
    assert paths == [tmp_path / "model.safetensors"]
    assert_same(load_file(paths[0]), tensors)
    with safe_open(paths[0], "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
        assert_same({name: handle.get_tensor(name) for name in handle.keys()}, tensors)


def test_the_header_is_padded_and_every_tensor_starts_aligned_to_its_element_size(tmp_path):
    write_safetensors(tmp_path, "model", sample_tensors())
    length, header = header_of(tmp_path / "model.safetensors")
    assert length % 8 == 0 and "__metadata__" not in header  # none given: none written
    raw = (tmp_path / "model.safetensors").read_bytes()
    assert raw[8 : 8 + length].rstrip(b" ").endswith(b"}")
    ranges = sorted(entry["data_offsets"] for entry in header.values())
    assert ranges[0][0] == 0 and ranges[-1][1] == len(raw) - 8 - length  # tiled, no hole
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    itemsize = {"F64": 8, "I64": 8, "F32": 4, "F16": 2, "BF16": 2, "I8": 1, "BOOL": 1}
    for entry in header.values():
        assert entry["data_offsets"][0] % itemsize[entry["dtype"]] == 0


def test_tensors_written_in_any_order_give_the_same_bytes(tmp_path):
    tensors = sample_tensors()
    names = list(tensors)
    files = []
    for attempt, order in enumerate(
        [names, names[::-1], random.Random(3).sample(names, len(names))]
    ):
        with ShardedWriter(tmp_path, f"m{attempt}", plan_of(tensors)) as writer:
            for name in order:
                writer.write(name, tensors[name])
        files.append((tmp_path / f"m{attempt}.safetensors").read_bytes())
    assert files[0] == files[1] == files[2]
    assert_same(load_file(tmp_path / "m2.safetensors"), tensors)


def test_a_plan_of_no_tensors_is_a_readable_empty_file(tmp_path):
    assert write_safetensors(tmp_path, "quant", {}) == [tmp_path / "quant.safetensors"]
    assert load_file(tmp_path / "quant.safetensors") == {}


def test_strided_and_shared_tensors_are_written_as_their_values(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {"t": base.t(), "cols": base[:, ::2], "same": base, "again": base}
    write_safetensors(tmp_path, "model", tensors)
    assert_same(load_file(tmp_path / "model.safetensors"), tensors)


def test_files_get_the_users_normal_mode(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    paths = write_safetensors(tmp_path, "m", sample_tensors(), max_shard_size=64)
    assert {path.stat().st_mode & 0o777 for path in paths} == {0o666 & ~umask}


# ----- shards -------------------------------------------------------------------------------------


def floats(*counts: int) -> dict[str, torch.Tensor]:
    """Tensors t0, t1, ... of ``counts`` float32 values (4 bytes each)."""
    return {f"t{i}": torch.full((count,), float(i)) for i, count in enumerate(counts)}


def shard_contents(folder: Path, prefix: str) -> list[list[str]]:
    return [sorted(load_file(path)) for path in tensor_files(folder, prefix)]


def test_tensors_that_fit_exactly_stay_in_one_unsharded_file(tmp_path):
    paths = write_safetensors(tmp_path, "model", floats(25, 25), max_shard_size=200)
    assert paths == [tmp_path / "model.safetensors"]
    assert not (tmp_path / "model.safetensors.index.json").exists()


def test_one_byte_less_makes_two_shards_and_an_index(tmp_path):
    tensors = floats(25, 25)
    paths = write_safetensors(tmp_path, "model", tensors, max_shard_size=199)
    assert [p.name for p in paths] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    assert json.loads(paths[-1].read_text()) == {
        "metadata": {"total_size": 200},
        "weight_map": {
            "t0": "model-00001-of-00002.safetensors",
            "t1": "model-00002-of-00002.safetensors",
        },
    }
    assert_same(read_tensors(tmp_path, "model"), tensors)


def test_a_tensor_larger_than_the_limit_gets_a_shard_of_its_own(tmp_path):
    tensors = floats(5, 100, 5, 5)
    write_safetensors(tmp_path, "masks", tensors, max_shard_size=60)
    assert shard_contents(tmp_path, "masks") == [["t0"], ["t1"], ["t2", "t3"]]
    assert_same(read_tensors(tmp_path, "masks"), tensors)


def test_many_small_tensors_fill_shards_greedily_in_plan_order(tmp_path):
    tensors = floats(*[10] * 10)  # 40 bytes each
    paths = write_safetensors(tmp_path, "model", tensors, max_shard_size=100)
    assert len(paths) == 6 and paths[-1].name == "model.safetensors.index.json"
    assert shard_contents(tmp_path, "model") == [[f"t{i}", f"t{i + 1}"] for i in range(0, 10, 2)]
    index = json.loads(paths[-1].read_text())
    assert list(index["weight_map"]) == sorted(tensors)
    assert index["metadata"]["total_size"] == 400


def test_every_shard_carries_the_metadata_and_holds_any_dtype(tmp_path):
    tensors = sample_tensors()
    write_safetensors(tmp_path, "quant", tensors, max_shard_size=16, metadata={"a": '{"b": 1}'})
    assert len(tensor_files(tmp_path, "quant")) > 3
    for path in tensor_files(tmp_path, "quant"):
        with safe_open(path, "pt") as handle:
            assert handle.metadata() == {"a": '{"b": 1}'}
    assert_same(read_tensors(tmp_path, "quant"), tensors)


# ----- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [
        ("5GB", 5 * 10**9),
        ("500MB", 500 * 10**6),
        ("2GiB", 2 * 2**30),
        ("1000000", 1_000_000),
        ("1.5 kb", 1500),
        ("64KiB", 65536),
        ("8B", 8),
    ],
)
def test_shard_sizes_are_read_in_decimal_and_binary_units(text, size):
    assert parse_shard_size(text) == size


@pytest.mark.parametrize("text", ["", "5XB", "GB", "-5GB", "0", "0.1B", "5 GB extra", "1e9"])
def test_a_bad_shard_size_is_l105_naming_the_option(text):
    with pytest.raises(CompressionError) as caught:
        parse_shard_size(text)
    assert caught.value.codes == ["L105"]
    diagnostic = caught.value.diagnostics[0]
    assert "--max-shard-size" in diagnostic.message and f"'{text}'" in diagnostic.message
    assert "5GB" in diagnostic.hint


# ----- errors -------------------------------------------------------------------------------------


def test_a_tensor_never_written_is_an_error_naming_it_and_no_index(tmp_path):
    tensors = floats(10, 10, 10)
    writer = ShardedWriter(tmp_path, "model", plan_of(tensors), max_shard_size=40)
    writer.write("t1", tensors["t1"])
    with pytest.raises(CompressionError, match=r"t0, t2 were never written") as caught:
        writer.close()
    assert caught.value.codes == ["X803"]
    assert not (tmp_path / "model.safetensors.index.json").exists()


@pytest.mark.parametrize(
    "name, tensor, words",
    [
        ("t0", torch.zeros(10), "written twice"),
        ("t9", torch.zeros(10), "not a planned tensor"),
        ("t1", torch.zeros(11), "planned (10,) torch.float32"),
        ("t1", torch.zeros(10, dtype=torch.float16), "planned (10,) torch.float32"),
        ("t1", torch.zeros(10, device="meta"), "meta device"),
    ],
)
def test_a_write_off_the_plan_is_x803(tmp_path, name, tensor, words):
    tensors = floats(10, 10)
    with ShardedWriter(tmp_path, "model", plan_of(tensors)) as writer:
        writer.write("t0", tensors["t0"])
        with pytest.raises(CompressionError, match=re.escape(words)) as caught:
            writer.write(name, tensor)
        assert caught.value.codes == ["X803"]
        writer.write("t1", tensors["t1"])
    assert_same(load_file(tmp_path / "model.safetensors"), tensors)


@pytest.mark.parametrize(
    "plan, words",
    [
        ([PlannedTensor("a", (1,), torch.float32)] * 2, "planned more than once"),
        ([PlannedTensor("a", (1,), torch.complex128)], "stores no torch.complex128"),
        ([PlannedTensor("__metadata__", (1,), torch.float32)], "cannot be stored"),
    ],
)
def test_a_plan_no_file_can_hold_is_x803_and_creates_nothing(tmp_path, plan, words):
    with pytest.raises(CompressionError, match=words):
        ShardedWriter(tmp_path, "model", plan)
    assert list(tmp_path.iterdir()) == []


def test_a_non_positive_limit_is_x803(tmp_path):
    with pytest.raises(CompressionError, match="positive byte count") as caught:
        ShardedWriter(tmp_path, "model", [], max_shard_size=0)
    assert caught.value.codes == ["X803"]


def test_an_exception_inside_the_writer_closes_it_without_an_index(tmp_path):
    tensors = floats(10, 10)
    with pytest.raises(RuntimeError, match="stop"):
        with ShardedWriter(tmp_path, "model", plan_of(tensors), max_shard_size=40) as writer:
            writer.write("t0", tensors["t0"])
            raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    with pytest.raises(CompressionError, match="is closed"):
        writer.write("t1", tensors["t1"])


def test_short_writes_are_continued_until_every_byte_is_written(tmp_path, monkeypatch):
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: real(fd, data[:7], offset))
    tensors = sample_tensors()
    write_safetensors(tmp_path, "model", tensors, metadata={"format": "pt"})
    assert_same(load_file(tmp_path / "model.safetensors"), tensors)


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    fail_writes_to(monkeypatch, "-00002-of-00002.safetensors", OSError(errno.ENOSPC, "full"))
    with pytest.raises(OSError) as caught:
        write_safetensors(tmp_path, "masks", floats(10, 10), max_shard_size=40)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "masks-00002-of-00002.safetensors")


def test_a_full_disk_in_a_shard_is_l105_through_write_outputs_and_publishes_nothing(
    tmp_path, monkeypatch
):
    result = run_job()
    fail_writes_to(monkeypatch, "masks-00002-of-00005.safetensors", OSError(errno.ENOSPC, "x"))
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, tmp_path / "out", max_shard_size=300)
    assert caught.value.codes == ["L105"]
    assert str(tmp_path / "out" / "masks-00002-of-00005.safetensors") in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_write_outputs_shards_hold_what_one_file_holds(tmp_path, dtype):
    result = run_job(dtype)
    whole = write_outputs(result, tmp_path / "whole")
    result = run_job(dtype)
    sharded = write_outputs(result, tmp_path / "sharded", max_shard_size=2000)
    assert len(sharded) > len(whole)
    for prefix in ("model", "masks", "quant"):
        assert_same(
            read_tensors(tmp_path / "sharded", prefix), read_tensors(tmp_path / "whole", prefix)
        )
    assert read_metadata(tmp_path / "sharded", "model") == {"format": "pt"}
    assert read_tensors(tmp_path / "sharded", "model")["conv1.weight"].dtype == dtype


# ----- the command --------------------------------------------------------------------------------


def test_apply_max_shard_size_shards_model_masks_and_quant_with_the_same_tensors(capsys, tmp_path):
    rules = tmp_path / "r.rules"
    rules.write_text(RULES_TEXT, encoding="utf-8")
    argv = ["apply", rules, "--model", RESNET]
    assert run(capsys, *argv, "--out", tmp_path / "whole").code == 0
    done = run(capsys, *argv, "--out", tmp_path / "sharded", "--max-shard-size", "500B")
    assert done.code == 0, done.err
    names = sorted(os.listdir(tmp_path / "sharded"))
    for prefix in ("model", "masks", "quant"):
        assert f"{prefix}.safetensors.index.json" in names and f"{prefix}.safetensors" not in names
        assert len(tensor_files(tmp_path / "sharded", prefix)) > 1, prefix
        whole = read_tensors(tmp_path / "whole", prefix)
        assert_same(read_tensors(tmp_path / "sharded", prefix), whole)
        assert read_metadata(tmp_path / "sharded", prefix) == read_metadata(
            tmp_path / "whole", prefix
        )
    assert f"wrote {len(names)} files" in done.err


def test_apply_refuses_a_bad_max_shard_size_before_any_work(capsys, tmp_path):
    done = run(capsys, "apply", RULES, "--model", "no_such_module:make", "--out", tmp_path / "o")
    assert "[L101]" in done.err  # the model is looked at ...
    done = run(
        capsys,
        "apply",
        RULES,
        "--model",
        "no_such_module:make",
        "--out",
        tmp_path / "o",
        "--max-shard-size",
        "5 gigs",
    )
    assert done.code == 2 and "[L105]" in done.err and "[L101]" not in done.err  # ... not here
    assert "--max-shard-size '5 gigs' is not a size" in done.err
    assert list(tmp_path.iterdir()) == []


# ----- memory -------------------------------------------------------------------------------------


def test_a_tensor_is_written_from_its_own_memory_in_bounded_chunks(tmp_path, monkeypatch):
    """Every write call's buffer lies inside the tensor's own storage: no copy is made, and no
    call is handed more than CHUNK_BYTES (a switch to save_file, which serializes the whole
    dict through its own writer, makes no such call at all)."""
    tensor = torch.randn(3 * shard_writer.CHUNK_BYTES // 4 + 5)  # three chunks and a bit
    start, nbytes = tensor.data_ptr(), tensor.numel() * 4
    calls = []
    real = os.pwrite

    def recording(fd, data, offset):
        calls.append((np.frombuffer(data, np.uint8).ctypes.data, len(data)))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", recording)
    write_safetensors(tmp_path, "model", {"big": tensor})
    header, *chunks = calls
    assert len(chunks) == 4 and sum(size for _, size in chunks) == nbytes
    assert all(size <= shard_writer.CHUNK_BYTES for _, size in chunks)
    assert all(start <= address and address + size <= start + nbytes for address, size in chunks)
    assert torch.equal(load_file(tmp_path / "model.safetensors")["big"], tensor)


def test_writing_a_64mb_tensor_allocates_no_copy_of_it(tmp_path):
    tensor = torch.randn(16 * 2**20)  # 64 MiB, its memory torch's (tracemalloc sees none of it)
    plan = [PlannedTensor.of("big", tensor)]
    tracemalloc.start()
    try:
        with ShardedWriter(tmp_path, "model", plan) as writer:
            writer.write("big", tensor)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # a bytes or numpy copy of the tensor (or of a chunk) would show here
    assert (tmp_path / "model.safetensors").stat().st_size > 64 * 2**20


def test_the_writer_keeps_no_tensor_it_was_given(tmp_path):
    """Streamed: each tensor is produced, written and dropped before the next exists."""
    shapes = {f"t{i}": (256, 256) for i in range(4)}
    plan = [PlannedTensor(name, shape, torch.float32) for name, shape in shapes.items()]
    alive = []
    with ShardedWriter(tmp_path, "model", plan, max_shard_size=2**18) as writer:
        for i, name in enumerate(shapes):
            tensor = torch.full(shapes[name], float(i))
            writer.write(name, tensor)
            alive.append(weakref.ref(tensor))
            del tensor
            gc.collect()
            assert alive[-1]() is None, name
    state = read_tensors(tmp_path, "model")
    assert all(torch.equal(state[f"t{i}"], torch.full((256, 256), float(i))) for i in range(4))
