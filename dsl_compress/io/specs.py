"""Specs on the command line: `package.module:callable` or `path/file.py:callable`, resolved."""

from __future__ import annotations
import contextlib
import importlib
import importlib.util
import itertools
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator
from dsl_compress.diagnostics import CompressionError, did_you_mean, error, fail

SPEC_FORMS = "write package.module:callable or path/to/file.py:callable"
_LIST_LIMIT = 5
# Files loaded as modules get unique names: two model.py files must not replace each other.
_file_modules = itertools.count()


def resolve_callable(spec: str, code: str, option: str) -> tuple[Callable, Path]:
    """The callable a spec names and the folder its imports resolve from; nothing is called."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        fail(code, f"{option} '{spec}' has no ':callable' part", subject=spec, hint=SPEC_FORMS)
    if target.endswith(".py") or "/" in target or "\\" in target:
        module, folder = _import_file(target, spec, code)
    else:
        module, folder = _import_module(target, spec, code), Path.cwd()
    fn = _attribute(module, target, attr, spec, code)
    if not callable(fn):
        fail(code, f"'{spec}' is {kind_of(fn)}, not a callable", subject=spec, hint=SPEC_FORMS)
    return fn, folder


def _import_module(name: str, spec: str, code: str) -> ModuleType:
    try:
        with _on_sys_path(Path.cwd()), user_code(code, spec, f"importing '{name}'"):
            return importlib.import_module(name)
    except CompressionError as exc:
        missing = exc.__cause__
        top = getattr(missing, "name", None) or ""
        if not isinstance(missing, ModuleNotFoundError) or not f"{name}.".startswith(f"{top}."):
            raise
    fail(
        code,
        f"no module named '{missing.name}'",
        subject=spec,
        hint=f"install it, run from the folder that holds it, or {SPEC_FORMS}",
    )
    raise AssertionError("unreachable")


def _import_file(target: str, spec: str, code: str) -> tuple[ModuleType, Path]:
    path = Path(target)
    if not path.is_file():
        fail(code, f"no file '{target}'", subject=spec, hint=SPEC_FORMS)
    # A unique name: two files called model.py must not replace each other in sys.modules.
    name = f"_dsl_compress_file_{next(_file_modules)}_" + re.sub(r"\W", "_", path.stem)
    file_spec = importlib.util.spec_from_file_location(name, path)
    if file_spec is None or file_spec.loader is None:
        fail(code, f"'{target}' cannot be imported as a Python file", subject=spec)
    module = sys.modules[name] = importlib.util.module_from_spec(file_spec)
    folder = path.resolve().parent
    try:
        with _on_sys_path(folder), user_code(code, spec, f"importing '{target}'"):
            file_spec.loader.exec_module(module)
    except CompressionError:
        del sys.modules[name]
        raise
    return module, folder


def _attribute(module: ModuleType, target: str, attr: str, spec: str, code: str) -> Any:
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
            fail(
                code,
                f"'{target}' has no attribute '{attr}'",
                subject=spec,
                hint=did_you_mean(attr, names) or f"its callables: {listing(sorted(names))}",
            )
        value = getattr(value, part)
    return value


def call_user(fn: Callable, spec: str, code: str, folder: Path) -> Any:
    with _on_sys_path(folder), user_code(code, spec, f"calling '{spec}'"):
        return fn()


@contextlib.contextmanager
def user_code(code: str, spec: str, doing: str) -> Iterator[None]:
    """Whatever user code raises (even SystemExit) becomes one diagnostic saying what and where."""
    try:
        yield
    except (CompressionError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # SystemExit and BaseException subclasses of user code too
        message = f"{doing} raised {exc_text(exc)}"
        raise CompressionError([error(code, message, subject=spec)]) from exc


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """Put ``folder`` first on sys.path while user code imports and runs, then take it off."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)


# ----- tensor files -----------------------------------------------------------------------------


def oneline(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def exc_text(exc: BaseException) -> str:
    text = oneline(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def kind_of(value: Any) -> str:
    """What ``value`` is, in words: "None", "an int", "a list"."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return f"{shown} and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else shown
