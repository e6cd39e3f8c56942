"""lint --model reports an error iff apply() fails, with the same codes, all at once.

The corpus: every example under rules/, every golden .rules input under tests/data/ (each on
every bundled model), the cases of issue 14, and generated rule files. Lint reports an
engine error under the lint code whose ``CodeInfo.predicts`` names it; the comparison reads
that mapping (``LINT_CODE_OF``), so a new engine check without a lint counterpart fails here.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dsl_compress
from conftest import CustomizedModule
from dsl_compress.codes import CODES, LINT_CODE_OF
from dsl_compress.diagnostics import CompressionError, Severity
from dsl_compress.models import EXAMPLE_MODELS, example_model
from dsl_compress.tools.lint import lint

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_FOLDERS = ("compile", "compile_errors", "parse_errors")
CORPUS = sorted(ROOT.glob("rules/*.rules")) + sorted(
    path for folder in GOLDEN_FOLDERS for path in (ROOT / "tests" / "data" / folder).glob("*.rules")
)


class LlamaMlp(nn.Module):
    """A Llama-like MLP whose hidden size (688) is not a multiple of 64, and an lm_head."""

    def __init__(self) -> None:
        super().__init__()
        self.up_proj = nn.Linear(64, 688, bias=False)
        self.down_proj = nn.Linear(688, 64, bias=False)
        self.lm_head = nn.Linear(64, 96, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.down_proj(torch.relu(self.up_proj(x))))


def llama_mlp() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return LlamaMlp(), torch.randn(2, 5, 64)


def customized() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    return CustomizedModule(), (torch.randn(3, 10), torch.randn(3, 5))


def lint_codes(path: Path, model: nn.Module) -> list[str]:
    result = lint([str(path)], model)
    return sorted(d.code for d in result.diagnostics if d.severity is Severity.ERROR)


def apply_codes(path: Path, model: nn.Module, batch, allow_unmatched: bool = True) -> list[str]:
    """The codes apply() fails with, given everything a rule cannot: batches and a teacher."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dsl_compress.apply(
                dsl_compress.load(path),
                model,
                calib=[batch],
                teacher=copy.deepcopy(model),
                loss_fn=lambda m, b: m(*b).sum() if isinstance(b, tuple) else m(b).sum(),
                allow_unmatched=allow_unmatched,
            )
        except CompressionError as exc:
            return sorted(exc.codes)
    return []


def assert_agree(path: Path, model: nn.Module, batch) -> list[str]:
    """Lint's errors are apply()'s, each engine code read as the lint code that foretells it;
    and lint's W301 warnings are apply()'s E221 errors, one each, unless allow_unmatched."""
    foretold = lint_codes(path, model)
    unmatched = sum(d.code == "W301" for d in lint([str(path)], model).diagnostics)
    if unmatched and not foretold:
        assert apply_codes(path, model, batch, allow_unmatched=False) == ["E221"] * unmatched
    state = {k: v.clone() for k, v in model.state_dict().items()}
    failed = apply_codes(path, model, batch)
    as_lint = sorted(LINT_CODE_OF.get(code, code) for code in failed)
    assert foretold == as_lint, f"{path.name}: lint says {foretold}, apply fails with {failed}"
    if failed:  # a failed apply leaves the model as it was
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    return failed


@pytest.mark.parametrize("model_name", sorted(EXAMPLE_MODELS))
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_lint_foretells_apply_on_the_corpus(path: Path, model_name: str) -> None:
    assert_agree(path, *example_model(model_name))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_lint_foretells_apply_on_a_customized_module(path: Path) -> None:
    assert_agree(path, *customized())


def test_every_lint_code_foretells_a_known_engine_code_once() -> None:
    predicted = [info.predicts for info in CODES.values() if info.predicts]
    assert len(predicted) == len(set(predicted)) == len(LINT_CODE_OF)
    assert all(code in CODES and code[0] in "PQ" for code in predicted)
    assert {"P509", "P503", "P501"} <= set(LINT_CODE_OF)


# ----- the cases of issue 14 ----------------------------------------------------------------------

ISSUE_CASES = {
    # 1: out_channel masks keep dim 1 whole, so the reduced mask is one value: still P509.
    "align_dims": (
        "resnet",
        "prune layer2.0.conv1.weight sparse_ratio=0.5 granularity=out_channel\n"
        "align layer2.0.bn1.weight with layer2.0.conv1.weight dims=[1]\n",
        ["P509"],
    ),
    # 2: two aligns to unmasked convs: both P503, in one error.
    "two_p503": (
        "resnet",
        "align layer2.0.bn1.weight with layer2.0.conv1.weight dims=[0]\n"
        "align layer2.0.bn2.weight with layer2.0.conv2.weight dims=[0]\n",
        ["P503", "P503"],
    ),
    # 9: blocks of 64 do not divide the 688 input features of down_proj.
    "int4_blocks": (
        "llama",
        "quantize Linear.weight quant_dtype=int4 granularity=[1,64] except lm_head\n",
        ["P501"],
    ),
    # Errors of several stages and tensors at once.
    "all_at_once": (
        "resnet",
        "prune layer1.0.conv1.weight sparse_ratio=0.5 group=g\n"
        "prune layer1.0.conv2.weight sparse_ratio=0.25 group=g\n"
        "prune layer2.0.conv2.weight sparse_ratio=0.5 granularity=[5]\n"
        "align layer1.1.bn1.weight with layer1.1.conv1.weight dims=[0]\n"
        "prune layer2.0.conv1.weight sparse_ratio=0.5 granularity=out_channel\n"
        "align layer2.0.bn1.weight with layer2.0.conv1.weight dims=[1]\n"
        "quantize fc.weight quant_dtype=int8 granularity=[1,3]\n",
        ["P501", "P501", "P503", "P505", "P509"],
    ),
}


def model_named(name: str):
    return llama_mlp() if name == "llama" else example_model(name)


@pytest.mark.parametrize("case", sorted(ISSUE_CASES))
def test_issue_cases_fail_in_apply_exactly_as_lint_says(case: str, tmp_path: Path) -> None:
    model_name, text, expected = ISSUE_CASES[case]
    path = tmp_path / f"{case}.rules"
    path.write_text(text, encoding="utf-8")
    assert assert_agree(path, *model_named(model_name)) == expected


# ----- generated rule files -----------------------------------------------------------------------

CNN_TENSORS = [
    f"{m}.{t}" for m in ("conv1", "conv2", "conv3", "bn1", "bn2", "fc") for t in ("weight", "bias")
]
GRANULARITIES = ["out_channel", "in_channel", "[2]", "[1,4]", "[4,-1]", "[3]", "[1,-1,-1,-1]"]
DIMS = ["[0]", "[1]", "[-1]", "[0,1]", "[4]"]


def prune_statements():
    return st.builds(
        "prune {} sparse_ratio={}{}{}".format,
        st.sampled_from(CNN_TENSORS),
        st.sampled_from(["0.25", "0.5"]),
        st.sampled_from(["", *(f" granularity={g}" for g in GRANULARITIES)]),
        st.sampled_from(["", " group=g", " group=h"]),
    )


def align_statements():
    return st.builds(
        "align {} with {} dims={}{}".format,
        st.sampled_from(CNN_TENSORS),
        st.sampled_from(CNN_TENSORS),
        st.sampled_from(DIMS),
        st.sampled_from(["", " granularity=out_channel", " granularity=[2]"]),
    )


def quantize_statements():
    return st.builds(
        "quantize {} quant_dtype=int8{}".format,
        st.sampled_from(CNN_TENSORS),
        st.sampled_from(["", *(f" granularity={g}" for g in GRANULARITIES)]),
    )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(
        st.one_of(prune_statements(), align_statements(), quantize_statements()),
        min_size=1,
        max_size=5,
    )
)
def test_lint_foretells_apply_on_generated_rules(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.rules"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        assert_agree(path, *example_model("cnn"))
