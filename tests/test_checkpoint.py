"""Checkpoints as users have them: one .safetensors file, a Hugging Face sharded index, a folder
holding either; headers read without the data, every malformed layout one L102 naming it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import dsl_compress as dc
from dsl_compress.io.checkpoint import is_checkpoint, open_checkpoint
from dsl_compress.io.loading import load_weights

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def tensors(dtype=torch.float32) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "a.weight": torch.randn(4, 3).to(dtype),
        "a.bias": torch.randn(4).to(dtype),
        "b.weight": torch.randn(2, 4).to(dtype),
        "steps": torch.tensor(7),
    }


def save_sharded(folder: Path, state: dict, per_shard: int = 2, name: str = "model") -> Path:
    """The Hugging Face layout: model-0000i-of-0000n.safetensors and model.safetensors.index.json."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(state)
    chunks = [names[i : i + per_shard] for i in range(0, len(names), per_shard)]
    weight_map = {}
    for i, chunk in enumerate(chunks, start=1):
        file = f"{name}-{i:05d}-of-{len(chunks):05d}.safetensors"
        save_file({k: state[k] for k in chunk}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({k: file for k in chunk})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = folder / f"{name}.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return index


def l102(call, *args) -> dc.Diagnostic:
    with pytest.raises(dc.CompressionError) as info:
        call(*args)
    (diag,) = info.value.diagnostics
    assert diag.code == "L102", diag
    return diag


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_single_file_reads_names_infos_and_tensors(tmp_path, dtype):
    state = tensors(dtype)
    save_file(state, str(tmp_path / "w.safetensors"), metadata={"who": "me"})
    with open_checkpoint(tmp_path / "w.safetensors") as ckpt:
        assert sorted(ckpt.names()) == sorted(state) and len(ckpt) == 4
        assert "a.bias" in ckpt and "nothing" not in ckpt
        info = ckpt.info("a.weight")
        assert (info.shape, info.dtype, info.file) == ((4, 3), dtype, tmp_path / "w.safetensors")
        assert info.nbytes == 12 * dtype.itemsize
        assert all(torch.equal(ckpt.read(k), v) for k, v in state.items())
        assert ckpt.metadata() == {"who": "me"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_sharded_index_reads_every_shard_in_index_order(tmp_path, dtype):
    state = tensors(dtype)
    index = save_sharded(tmp_path, state)
    with open_checkpoint(index) as ckpt:
        assert ckpt.names() == list(state)
        assert ckpt.info("b.weight").file == tmp_path / "model-00002-of-00002.safetensors"
        assert all(torch.equal(ckpt.read(k), v) for k, v in state.items())
        assert ckpt.metadata() == {"format": "pt"}


def test_shards_are_opened_only_when_read(tmp_path):
    index = save_sharded(tmp_path, tensors())
    ckpt = open_checkpoint(index)
    assert ckpt._handles == {}
    ckpt.read("a.bias")
    assert list(ckpt._handles) == [tmp_path / "model-00001-of-00002.safetensors"]
    value = ckpt.read("a.weight")
    ckpt.close()
    assert ckpt._handles == {} and torch.equal(value, tensors()["a.weight"])


def test_a_folder_prefers_the_index_then_model_safetensors(tmp_path):
    save_sharded(tmp_path, tensors())
    save_file({"other": torch.ones(1)}, str(tmp_path / "model.safetensors"))
    assert open_checkpoint(tmp_path).path == tmp_path / "model.safetensors.index.json"
    (tmp_path / "model.safetensors.index.json").unlink()
    assert open_checkpoint(tmp_path).path == tmp_path / "model.safetensors"


def test_a_folder_with_one_file_or_one_index_names_it(tmp_path):
    save_file(tensors(), str(tmp_path / "weights.safetensors"))
    assert sorted(open_checkpoint(tmp_path).names()) == sorted(tensors())
    assert is_checkpoint(tmp_path)
    other = tmp_path / "sharded"
    save_sharded(other, tensors(), name="diffusion_pytorch_model")
    assert open_checkpoint(other).path.name == "diffusion_pytorch_model.safetensors.index.json"


def test_our_own_masks_and_quant_files_are_passed_over(tmp_path):
    save_file(tensors(), str(tmp_path / "weights.safetensors"))
    save_file({"a.weight": torch.ones(4, 3, dtype=torch.bool)}, str(tmp_path / "masks.safetensors"))
    save_file({"a.weight.scale": torch.ones(4)}, str(tmp_path / "quant.safetensors"))
    assert open_checkpoint(tmp_path).path == tmp_path / "weights.safetensors"
    (tmp_path / "weights.safetensors").unlink()
    (tmp_path / "quant.safetensors").unlink()
    assert open_checkpoint(tmp_path).path == tmp_path / "masks.safetensors"


def test_a_folder_of_several_checkpoints_lists_them(tmp_path):
    save_file(tensors(), str(tmp_path / "first.safetensors"))
    save_file(tensors(), str(tmp_path / "second.safetensors"))
    diag = l102(open_checkpoint, tmp_path)
    assert "holds 2 checkpoints: first.safetensors, second.safetensors" in diag.message
    assert f"--weights {tmp_path / 'first.safetensors'}" in diag.hint
    assert not is_checkpoint(tmp_path)


def test_shards_without_their_index_are_ambiguous(tmp_path):
    save_sharded(tmp_path, tensors())
    (tmp_path / "model.safetensors.index.json").unlink()
    diag = l102(open_checkpoint, tmp_path)
    assert "model-00001-of-00002.safetensors, model-00002-of-00002" in diag.message
    assert "shards need their .safetensors.index.json" in diag.hint


def test_a_folder_with_no_checkpoint(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    diag = l102(open_checkpoint, tmp_path)
    assert "holds no .safetensors file or index" in diag.message and ".bin" in diag.hint
    assert not is_checkpoint(tmp_path) and not is_checkpoint(tmp_path / "none")
    assert "no weights file or folder" in l102(open_checkpoint, tmp_path / "none").message


def test_is_checkpoint_knows_files_by_name(tmp_path):
    index = save_sharded(tmp_path / "s", tensors())
    assert is_checkpoint(index) and is_checkpoint(tmp_path / "s")
    (tmp_path / "w.pt").write_bytes(b"x")
    assert not is_checkpoint(tmp_path / "w.pt")


# ----- index errors -------------------------------------------------------------------------------


def test_a_shard_the_index_names_is_missing(tmp_path):
    index = save_sharded(tmp_path, tensors())
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    diag = l102(open_checkpoint, index)
    assert "names the shard 'model-00002-of-00002.safetensors', which is not in" in diag.message
    assert "copy every shard" in diag.hint


def test_a_tensor_the_index_names_that_its_shard_lacks(tmp_path):
    index = save_sharded(tmp_path, tensors())
    data = json.loads(index.read_text())
    data["weight_map"]["ghost"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    diag = l102(open_checkpoint, index)
    assert "places 'ghost' in 'model-00001-of-00002.safetensors', which does not hold it" in (
        diag.message
    )
    assert diag.subject == f"{index}:ghost"


def test_one_tensor_in_two_shards(tmp_path):
    index = save_sharded(tmp_path, tensors())
    save_file(
        {"b.weight": torch.ones(2, 4), "a.bias": torch.ones(4)},
        str(tmp_path / "model-00002-of-00002.safetensors"),
    )
    diag = l102(open_checkpoint, index)
    assert "'a.bias' is in two shards" in diag.message
    assert "'model-00001-of-00002.safetensors' and 'model-00002-of-00002" in diag.message


def test_one_tensor_named_twice_in_the_index(tmp_path):
    index = save_sharded(tmp_path, tensors())
    text = index.read_text().replace('"weight_map": {', '"weight_map": {"a.bias": "x", ', 1)
    index.write_text(text)
    assert "'a.bias' appears twice" in l102(open_checkpoint, index).message


def test_a_shard_tensor_the_index_does_not_name(tmp_path):
    index = save_sharded(tmp_path, tensors())
    data = json.loads(index.read_text())
    del data["weight_map"]["steps"]
    index.write_text(json.dumps(data))
    diag = l102(open_checkpoint, index)
    assert "holds tensors" in diag.message and "does not name: steps" in diag.message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", 'no "weight_map" object'),
        ('{"weight_map": {}}', 'no "weight_map" object'),
        ('{"weight_map": {"a": 3}}', "weight_map values that are not file names: a"),
    ],
)
def test_malformed_indexes(tmp_path, text, fragment):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(text)
    diag = l102(open_checkpoint, index)
    assert f"'{index}' is not a safetensors index" in diag.message and fragment in diag.message


# ----- header errors ------------------------------------------------------------------------------


def write_raw(path: Path, header: dict, data: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(
    "header, data, fragment",
    [
        ({"t": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, 4, "has dtype 'F33'"),
        ({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4, "has shape [-1]"),
        ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, 4, "has data_offsets [0]"),
        ({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, 4, "spans 4 bytes"),
        ({"t": [1]}, 0, "'t' is a JSON list"),
        ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 2, "file is truncated"),
        ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, 8, "starts at byte 4"),
        ({"__metadata__": {"a": 1}}, 0, "__metadata__ is not an object of strings"),
    ],
)
def test_malformed_headers_name_the_file_and_tensor(tmp_path, header, data, fragment):
    file = write_raw(tmp_path / "w.safetensors", header, b"\0" * data)
    diag = l102(open_checkpoint, file)
    assert diag.message.startswith(f"cannot read '{file}': ") and fragment in diag.message
    if "t" in header and "truncated" not in fragment:
        assert diag.subject == f"{file}:t"


@pytest.mark.parametrize("content", [b"", b"short", b"garbage garbage", b"\x02\0\0\0\0\0\0\0[]"])
def test_files_that_are_not_safetensors(tmp_path, content):
    file = tmp_path / "w.safetensors"
    file.write_bytes(content)
    diag = l102(open_checkpoint, file)
    assert diag.message.startswith(f"cannot read '{file}'")


class CountingStream:
    """A file opened for the header, counting the bytes asked of it."""

    def __init__(self, stream, reads: list[int]):
        self.stream, self.reads = stream, reads

    def read(self, size: int = -1) -> bytes:
        self.reads.append(size)
        return self.stream.read(size)

    def fileno(self) -> int:
        return self.stream.fileno()

    def __enter__(self) -> CountingStream:
        return self

    def __exit__(self, *exc) -> None:
        self.stream.close()


def test_headers_are_read_without_the_data(tmp_path, monkeypatch):
    """A 4 GiB tensor in a sparse file: opening reads the header and nothing of the data."""
    size = 1 << 30
    file = write_raw(
        tmp_path / "big.safetensors",
        {"big": {"dtype": "F32", "shape": [size], "data_offsets": [0, 4 * size]}},
    )
    with file.open("r+b") as stream:
        stream.truncate(file.stat().st_size + 4 * size)
    reads: list[int] = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda *a, **k: CountingStream(real_open(*a, **k), reads))
    ckpt = open_checkpoint(file)
    assert ckpt.info("big").nbytes == 4 * size and ckpt.info("big").shape == (size,)
    assert reads[0] == 8 and len(reads) == 2 and sum(reads) < 200


@pytest.mark.parametrize("dtype", [["F32"], {"name": "F32"}, 7, None])
def test_a_dtype_that_is_no_name_is_l102(tmp_path, dtype):
    header = {"a": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    assert "has dtype" in l102(open_checkpoint, path).message


def test_an_index_may_name_a_shard_as_dot_slash_but_not_outside_its_folder(tmp_path):
    state = tensors()
    index = save_sharded(tmp_path / "ck", state)
    data = json.loads(index.read_text())
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = "./" + data["weight_map"][first]
    index.write_text(json.dumps(data))
    with open_checkpoint(index) as checkpoint:
        assert torch.equal(checkpoint.read(first), state[first])
    data["weight_map"][first] = "../elsewhere/" + data["weight_map"][first].lstrip("./")
    index.write_text(json.dumps(data))
    assert "outside the index's folder" in l102(open_checkpoint, index).message


def test_a_model_with_extra_state_is_l102_not_a_crash(tmp_path):
    class Stateful(torch.nn.Linear):
        def get_extra_state(self):
            return {"step": 3}

        def set_extra_state(self, state):
            pass

    model = torch.nn.Sequential(Stateful(2, 2))
    weights = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    save_file(weights, str(tmp_path / "w.safetensors"))
    diag = l102(load_weights, model, tmp_path / "w.safetensors")
    assert "0._extra_state" in diag.message and "extra state" in diag.message
