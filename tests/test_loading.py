"""Loading models, weights and calibration batches from what the command line names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import assert_same_state, state_copy
from dsl_compress import CompressionError
from dsl_compress.io.loading import load_calib, load_model, load_weights
from dsl_compress.models import TinyResNet, example_model

USER_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def make():
    return Net()


def broken():
    raise ValueError("no weights here")


def not_module():
    return [1, 2]


def the_class():
    return Net


def exits():
    raise SystemExit(3)


def batches():
    return [torch.ones(2, 4), torch.zeros(2, 4)]


def failing_batches():
    yield torch.ones(2, 4)
    raise RuntimeError("disk gone")


def no_batches():
    return []


def number():
    return 7


NUMBER = 3
"""


def expect_error(code: str, fragment: str, fn, *args) -> CompressionError:
    """One diagnostic with ``code`` whose message (or hint) contains ``fragment``."""
    with pytest.raises(CompressionError) as info:
        fn(*args)
    (diag,) = info.value.diagnostics
    assert diag.code == code
    assert fragment in f"{diag.message} {diag.hint}", diag.render()
    return info.value


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "nets.py"
    path.write_text(USER_FILE)
    return path


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A package in the working folder, forgotten by sys.modules afterwards."""
    package = tmp_path / "userpkg_loading"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_FILE)
    (package / "needs_dep.py").write_text("import not_installed_dependency_q\n")
    (package / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    yield "userpkg_loading"
    for name in [n for n in sys.modules if n.startswith("userpkg_loading")]:
        del sys.modules[name]


# ----- models --------------------------------------------------------------------------------


def test_bundled_model_by_module_spec():
    assert isinstance(load_model("dsl_compress.models:resnet"), TinyResNet)


def test_class_is_a_callable_spec():
    assert isinstance(load_model("dsl_compress.models:TinyResNet"), TinyResNet)


def test_model_from_a_file(user_file: Path):
    model = load_model(f"{user_file}:make")
    assert type(model).__name__ == "Net"
    assert model(torch.ones(1, 4)).shape == (1, 2)


def test_two_files_with_one_name_stay_apart(tmp_path: Path, user_file: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "nets.py").write_text("from torch import nn\ndef make():\n    return nn.ReLU()\n")
    assert type(load_model(f"{user_file}:make")).__name__ == "Net"
    assert isinstance(load_model(f"{other / 'nets.py'}:make"), torch.nn.ReLU)


def test_model_from_the_working_folder(user_package: str):
    path = list(sys.path)
    assert type(load_model(f"{user_package}.nets:make")).__name__ == "Net"
    assert sys.path == path


def test_relative_file_spec(user_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(user_file.parent)
    assert type(load_model("nets.py:make")).__name__ == "Net"


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("dsl_compress.models", "has no ':callable' part"),
        ("dsl_compress.models", "package.module:callable or path/to/file.py:callable"),
        (":resnet", "has no ':callable' part"),
        ("no_such_package_q.models:make", "no module named 'no_such_package_q'"),
        ("dsl_compress.no_such_module:make", "no module named 'dsl_compress.no_such_module'"),
        ("dsl_compress.models:resnt", "has no attribute 'resnt'"),
        ("dsl_compress.models:resnt", "did you mean 'resnet'"),
        ("dsl_compress.models:EXAMPLE_MODELS", "is a dict, not a callable"),
        ("missing/dir/model.py:make", "no file 'missing/dir/model.py'"),
    ],
)
def test_bad_model_specs(spec: str, fragment: str):
    error = expect_error("L101", fragment, load_model, spec)
    assert error.diagnostics[0].subject == spec


@pytest.mark.parametrize(
    "attr, fragment",
    [
        ("broken", "raised ValueError: no weights here"),
        ("exits", "raised SystemExit: 3"),
        ("not_module", "returned a list, not a torch.nn.Module"),
        ("the_class", "returned the class Net"),
        ("NUMBER", "is an int, not a callable"),
        ("mak", "did you mean 'make'"),
    ],
)
def test_bad_factories(user_file: Path, attr: str, fragment: str):
    expect_error("L101", fragment, load_model, f"{user_file}:{attr}")


def test_import_errors_name_the_module(user_package: str):
    expect_error(
        "L101",
        f"importing '{user_package}.needs_dep' raised ModuleNotFoundError: "
        "No module named 'not_installed_dependency_q'",
        load_model,
        f"{user_package}.needs_dep:make",
    )
    expect_error(
        "L101", "raised RuntimeError: boom at import", load_model, f"{user_package}.raises:make"
    )


def test_failed_file_import_leaves_no_module(tmp_path: Path):
    path = tmp_path / "bad.py"
    path.write_text("raise SystemExit('no')\n")
    before = set(sys.modules)
    expect_error("L101", f"importing '{path}' raised SystemExit: no", load_model, f"{path}:make")
    assert set(sys.modules) == before


# ----- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_weights_round_trip(tmp_path: Path, suffix: str):
    source, target = example_model("resnet", seed=1)[0], example_model("resnet", seed=2)[0]
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    load_weights(target, str(path))
    assert_same_state(target, state_copy(source))


def test_weights_in_a_checkpoint_dict(tmp_path: Path):
    source, target = example_model("cnn", seed=1)[0], example_model("cnn", seed=2)[0]
    torch.save({"epoch": 3, "state_dict": source.state_dict()}, tmp_path / "ckpt.pt")
    load_weights(target, str(tmp_path / "ckpt.pt"))
    assert_same_state(target, state_copy(source))


def test_mismatched_weights_leave_the_model_unchanged(tmp_path: Path):
    model = example_model("cnn")[0]
    saved = state_copy(model)
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(3, 16)
    save_file(state, tmp_path / "w.safetensors")
    error = expect_error(
        "L102", "does not match the model", load_weights, model, str(tmp_path / "w.safetensors")
    )
    message = error.diagnostics[0].message
    assert "1 missing key (fc.bias)" in message
    assert "1 unexpected key (extra.weight)" in message
    assert "1 shape mismatch (fc.weight (file [3, 16], model [10, 16]))" in message
    assert_same_state(model, saved)


def test_long_key_lists_are_cut(tmp_path: Path):
    model = example_model("resnet")[0]
    torch.save({"fc.weight": model.fc.weight}, tmp_path / "w.pt")
    count = len(model.state_dict()) - 1
    expect_error("L102", f"{count} missing keys (", load_weights, model, str(tmp_path / "w.pt"))
    expect_error("L102", f"and {count - 5} more", load_weights, model, str(tmp_path / "w.pt"))


def test_wrapper_prefix_is_pointed_out(tmp_path: Path):
    model = example_model("cnn")[0]
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "w.pt")
    expect_error("L102", "keys start with 'module.'", load_weights, model, str(tmp_path / "w.pt"))


LOADED = []


class Payload:
    """Unpickling it would run code: weights_only loading must refuse it."""

    def __reduce__(self):
        return (LOADED.append, ("ran",))


class Call:
    """Unpickling it calls ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


@pytest.mark.parametrize(
    "payload",
    [Payload(), Call(eval, "1"), Call(os.getpid), Call(sys.exit, 0)],
    ids=["a test's callable", "builtin", "of a module torch blocks (os)", "sys"],
)
def test_pickled_objects_are_refused_and_named(tmp_path: Path, payload):
    torch.save({"fc.weight": payload}, tmp_path / "w.pt")
    model = example_model("cnn")[0]
    expect_error("L102", "holds a pickled", load_weights, model, str(tmp_path / "w.pt"))
    assert LOADED == []


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("w.bin", b"x", "is not a .safetensors, .pt or .pth file"),
        ("w.pt", b"not a torch file", "cannot read"),
        ("w.safetensors", b"garbage garbage", "cannot read"),
    ],
)
def test_unreadable_weights(tmp_path: Path, name: str, content: bytes, fragment: str):
    (tmp_path / name).write_bytes(content)
    model = example_model("cnn")[0]
    expect_error("L102", fragment, load_weights, model, str(tmp_path / name))


@pytest.mark.parametrize("garbled", [False, True])
def test_a_pickle_of_another_protocol_is_named_in_the_error_not_in_torchs_remark(
    tmp_path: Path, garbled: bool
):
    import warnings

    model = example_model("cnn")[0]
    path = tmp_path / "w.pt"
    torch.save(state_copy(model), path, pickle_protocol=4)  # weights_only reads protocol 2
    if garbled:
        path.write_bytes(b"\x80\x04" + bytes(range(97, 160)))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fragment = "cannot read" if garbled else "pickled with protocol 4"
        error = expect_error("L102", fragment, load_weights, model, str(path))
    if not garbled:
        hint = "save it with torch.save's default protocol, or as .safetensors"
        assert error.diagnostics[0].hint == hint
    assert not [w for w in seen if "pickle protocol" in str(w.message)]


def test_torchs_other_warnings_while_loading_are_shown(tmp_path: Path, monkeypatch):
    import warnings

    model = example_model("cnn")[0]
    torch.save(state_copy(model), tmp_path / "w.pt")
    real_load = torch.load

    def remarking_load(*args, **options):
        warnings.warn("a remark of torch's", UserWarning)
        return real_load(*args, **options)

    monkeypatch.setattr(torch, "load", remarking_load)
    with pytest.warns(UserWarning, match="a remark of torch's"):
        load_weights(model, str(tmp_path / "w.pt"))


def test_weights_file_must_hold_a_state_dict(tmp_path: Path):
    model = example_model("cnn")[0]
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    expect_error(
        "L102", "holds a Tensor, not a state dict", load_weights, model, str(tmp_path / "t.pt")
    )
    torch.save({"fc.weight": [1, 2]}, tmp_path / "l.pt")
    expect_error("L102", "not tensors: fc.weight", load_weights, model, str(tmp_path / "l.pt"))
    expect_error("L102", "no weights file", load_weights, model, str(tmp_path / "none.pt"))


# ----- calibration ---------------------------------------------------------------------------


def test_calib_from_a_pt_tensor(tmp_path: Path):
    data = torch.randn(3, 2, 4)
    torch.save(data, tmp_path / "calib.pt")
    batches = load_calib(str(tmp_path / "calib.pt"))
    assert len(batches) == 3
    assert all(torch.equal(b, data[i]) for i, b in enumerate(batches))


def test_calib_from_a_list_in_a_pt_file(tmp_path: Path):
    torch.save([torch.ones(2, 4), torch.zeros(1, 4)], tmp_path / "calib.pt")
    assert [b.shape[0] for b in load_calib(str(tmp_path / "calib.pt"))] == [2, 1]


def test_calib_from_safetensors(tmp_path: Path):
    data = torch.randn(2, 5, 4)
    save_file({"x": data}, tmp_path / "one.safetensors")
    batches = load_calib(str(tmp_path / "one.safetensors"))
    assert [b.shape for b in batches] == [(5, 4), (5, 4)]
    save_file({"x": data, "mask": torch.ones(2, 5)}, tmp_path / "two.safetensors")
    keyword = load_calib(str(tmp_path / "two.safetensors"))
    assert len(keyword) == 2 and set(keyword[0]) == {"x", "mask"}
    assert torch.equal(keyword[1]["x"], data[1])


def test_calib_from_a_callable(user_file: Path):
    batches = load_calib(f"{user_file}:batches")
    assert [b.sum().item() for b in batches] == [8.0, 0.0]


@pytest.mark.parametrize(
    "attr, fragment",
    [
        ("failing_batches", "iterating the batches of"),
        ("failing_batches", "raised RuntimeError: disk gone"),
        ("number", "returned an int, not an iterable of batches"),
        ("no_batches", "returned no batches"),
        ("broken", "raised ValueError: no weights here"),
        ("nothing_here", "has no attribute 'nothing_here'"),
    ],
)
def test_bad_calib_callables(user_file: Path, attr: str, fragment: str):
    expect_error("L103", fragment, load_calib, f"{user_file}:{attr}")


def test_bad_calib_files(tmp_path: Path):
    save_file({"x": torch.ones(2, 3), "y": torch.ones(3, 3)}, tmp_path / "d.safetensors")
    expect_error(
        "L103",
        "first dims (the batch counts) differ: x: 2, y: 3",
        load_calib,
        str(tmp_path / "d.safetensors"),
    )
    torch.save(torch.tensor(1.0), tmp_path / "s.pt")
    expect_error("L103", "0-dim tensor", load_calib, str(tmp_path / "s.pt"))
    torch.save(torch.ones(0, 3), tmp_path / "e.pt")
    expect_error("L103", "holds no batches", load_calib, str(tmp_path / "e.pt"))
    (tmp_path / "c.txt").write_text("1 2 3")
    expect_error(
        "L103", "is not a .pt, .pth or .safetensors file", load_calib, str(tmp_path / "c.txt")
    )
    expect_error("L103", "no calibration file", load_calib, str(tmp_path / "none.pt"))
    expect_error("L103", "no calibration file", load_calib, "none_at_all")
