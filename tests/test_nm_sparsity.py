"""N:M semi-structured sparsity (`mask_structure`): its value, its masks (exactly N pruned in
every M consecutive elements along the last dim, the highest metric kept, in memory and
streamed alike), what it cannot be combined with, and the NNI export that refuses it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import dsl_compress as dc
from cli_runner import run
from dsl_compress.codes import CODES
from dsl_compress.diagnostics import CompressionError
from dsl_compress.engine.masks import ratio_keep, structure_keep
from dsl_compress.engine.stream import StreamRun
from dsl_compress.schema.config_list import validate_config_list
from dsl_compress.schema.mask_structure import MaskStructure, parse_mask_structure
from dsl_compress.tools.code_docs import COMMAND_EXAMPLES, explain_code
from dsl_compress.tools.explain import explain, render_explanations
from dsl_compress.tools.lint import lint

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
STRUCTURES = ["2:4", "1:4", "4:8"]

MODEL_FILE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 12), nn.Linear(12, 6))
"""


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 8)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def _mlp(dtype=torch.float32, seed=0) -> Mlp:
    torch.manual_seed(seed)
    return Mlp().to(dtype)


def _masks(compression) -> dict[str, torch.Tensor]:
    return {f"{m}.{t}": v for m, d in compression.masks().items() for t, v in d.items()}


def _kept_per_group(mask: torch.Tensor, group: int) -> torch.Tensor:
    return mask.reshape(-1, group).sum(dim=-1)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(MODEL_FILE, encoding="utf-8")
    return tmp_path


# ----- the value ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, pruned, group", [("2:4", 2, 4), ("1:4", 1, 4), ("4:8", 4, 8), (" 3 : 8 ", 3, 8)]
)
def test_a_structure_counts_the_pruned_elements_of_each_group(text, pruned, group):
    structure = parse_mask_structure(text)
    assert structure == MaskStructure(pruned, group)
    assert structure.kept == group - pruned and structure.ratio == pruned / group
    assert structure.describe().startswith(
        f"prunes {pruned} of every {group} consecutive elements along the input dimension"
    )


@pytest.mark.parametrize(
    "value, hint",
    [
        ("4:2", "0 < N < M"),
        ("0:4", "0 < N < M"),
        ("4:4", "0 < N < M"),
        ("2-4", "with a colon: '2:4'"),
        ("2:4:8", "quoted"),
        (0.5, "sparse_ratio=0.5"),
        (2, "quoted"),
        ("", "quoted"),
    ],
)
def test_a_bad_structure_is_located_in_rules_and_in_a_config_list(project, value, hint):
    spelled = json.dumps(value)
    (project / "a.rules").write_text(f"prune Linear.weight mask_structure={spelled}\n")
    [diag] = lint(["a.rules"]).diagnostics
    assert diag.code == "E203" and (diag.span.line, diag.span.column) == (1, 36)
    assert "N:M" in diag.message and hint in diag.hint
    config = [{"op_types": ["Linear"], "mask_structure": value}]
    [found] = validate_config_list(config, "prune")
    assert found.code == "C105" and found.subject == "config_list[0].mask_structure"


def test_an_unquoted_structure_is_told_to_be_quoted(project):
    (project / "a.rules").write_text("prune Linear.weight mask_structure=1:4\n")
    [diag] = lint(["a.rules"]).diagnostics
    assert diag.code == "E102" and (diag.span.line, diag.span.column) == (1, 37)
    assert diag.hint.startswith('quote it: mask_structure="1:4"')


def test_mask_structure_is_a_pruning_key_only(project):
    (project / "a.rules").write_text('quantize Linear.weight mask_structure="2:4"\n')
    [diag] = lint(["a.rules"]).diagnostics
    assert diag.code == "E202" and "mask_structure" in diag.message


# ----- the masks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("text", STRUCTURES)
@pytest.mark.parametrize("metric", ["level", "l1", "l2"])
def test_every_group_keeps_exactly_m_minus_n_of_the_largest(dtype, text, metric):
    structure = parse_mask_structure(text)
    model = _mlp(dtype)
    rules = dc.parse(f'prune {{up,down}}.weight mask_structure="{text}" metric={metric}')
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks = _masks(dc.apply(rules, model))
    assert set(masks) == {"up.weight", "down.weight"}
    for name, mask in masks.items():
        weight = weights[name]
        assert mask.dtype == torch.bool and mask.shape == weight.shape and mask.dim() == 2
        kept = _kept_per_group(mask, structure.group)
        assert torch.equal(kept, torch.full_like(kept, structure.kept)), name
        metric_values = weight.float().abs().reshape(-1, structure.group)
        groups = mask.reshape(-1, structure.group)
        lowest_kept = metric_values.masked_fill(~groups, float("inf")).min(dim=-1).values
        highest_pruned = metric_values.masked_fill(groups, -1.0).max(dim=-1).values
        assert bool((lowest_kept >= highest_pruned).all()), name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_taylor_keeps_the_highest_scores_of_each_group(dtype):
    model = _mlp(dtype)
    batch = torch.randn(5, 16, generator=torch.Generator().manual_seed(1)).to(dtype)
    weight = model.up.weight
    (grad,) = torch.autograd.grad(model(batch).float().pow(2).sum(), [weight])
    score = ((weight.detach().float() * grad.float()) ** 2).reshape(-1, 4)
    compression = dc.apply(
        dc.parse('prune up.weight mask_structure="2:4" metric=taylor'),
        model,
        calib=[batch],
        loss_fn=lambda m, b: m(b).float().pow(2).sum(),
    )
    groups = _masks(compression)["up.weight"].reshape(-1, 4)
    assert torch.equal(groups.sum(dim=-1), torch.full((groups.shape[0],), 2))
    lowest_kept = score.masked_fill(~groups, float("inf")).min(dim=-1).values
    highest_pruned = score.masked_fill(groups, -1.0).max(dim=-1).values
    assert bool((lowest_kept >= highest_pruned).all())


def test_ties_are_broken_as_the_ratio_stage_breaks_them():
    metric = torch.tensor([[1.0, 1.0, 1.0, 1.0, 3.0, 2.0, 2.0, 0.5]])  # tied groups and cuts
    keep = structure_keep(metric, MaskStructure(2, 4))
    assert torch.equal(keep, ratio_keep(metric.reshape(2, 4), 0.5, (2, 4)).reshape(1, 8))
    assert torch.equal(keep.reshape(2, 4).sum(dim=-1), torch.tensor([2, 2]))
    assert keep[0, 4] and not keep[0, 7]  # the largest kept, the smallest pruned


def test_the_mask_is_laid_out_as_torch_semi_structured_sparsity_takes_it():
    """Groups along the last dim of the [out, in] weight, checked on the mask itself: torch's
    conversion re-prunes a tensor that is not 2:4 without a word, so it proves nothing."""
    model = _mlp()
    mask = _masks(dc.apply(dc.parse('prune down.weight mask_structure="2:4"'), model))[
        "down.weight"
    ]
    out_features, in_features = model.down.weight.shape
    rows = mask.reshape(out_features, in_features // 4, 4)
    assert torch.equal(rows.sum(dim=-1), torch.full((out_features, in_features // 4), 2))
    # The same count along the other dim would not hold: the pattern is along the input dim.
    columns = mask.t().reshape(in_features, out_features // 4, 4).sum(dim=-1)
    assert not torch.equal(columns, torch.full_like(columns, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="semi-structured tensors need CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_torch_converts_the_masked_weight_without_changing_it(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 64)).to(dtype)
    compression = dc.apply(dc.parse('prune Linear.weight mask_structure="2:4"'), model)
    weight = compression.finalize()[0].weight.detach().cuda()
    sparse = torch.sparse.to_sparse_semi_structured(weight)
    assert torch.equal(sparse.to_dense(), weight)


def test_a_shorthand_or_type_wide_statement_reaches_the_weights_not_the_biases():
    model = _mlp()
    plan = dc.parse('prune {up,down} mask_structure="2:4"').compile(model).plan
    settings = {(e.module, e.target): e.setting for e in plan.entries}
    assert settings["up", "weight"]["mask_structure"] == "2:4"
    assert "mask_structure" not in settings["up", "bias"]
    config = [{"op_names": ["up", "down"], "mask_structure": "1:4"}]
    masks = _masks(dc.prune(_mlp(), config))
    assert set(masks) == {"up.weight", "up.bias", "down.weight", "down.bias"}
    assert torch.equal(_kept_per_group(masks["up.weight"], 4), torch.full((128,), 3))
    assert bool(masks["up.bias"].all())  # aligned to rows that all keep elements


def test_default_granularity_is_element_wise_under_a_channel_metric():
    plan = dc.parse('prune up.weight mask_structure="2:4" metric=l2').compile(_mlp()).plan
    assert plan.find("up", "weight", dc.Mode.PRUNE).setting["granularity"] is None


def test_a_sparse_ratio_of_n_over_m_may_stay():
    masks = _masks(
        dc.apply(dc.parse('prune up.weight mask_structure="1:4" sparse_ratio=0.25'), _mlp())
    )
    assert torch.equal(_kept_per_group(masks["up.weight"], 4), torch.full((128,), 3))


class _Sink:
    def __init__(self):
        self.masks = {}

    def model(self, name, tensor, codes=None):
        pass

    def mask(self, name, mask):
        self.masks[name] = mask.clone()

    def read_mask(self, name):
        return self.masks[name].clone()

    def quant(self, name, params):
        pass


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_streamed_run_makes_the_same_masks(dtype):
    rules = dc.parse('prune up.weight mask_structure="2:4"\nprune down.weight mask_structure="4:8"')
    state = {k: v.detach().clone() for k, v in _mlp(dtype).state_dict().items()}
    model = _mlp(dtype)
    in_memory = _masks(dc.apply(rules, model))
    with torch.device("meta"):
        skeleton = Mlp().to(dtype)
    sink = _Sink()
    StreamRun(skeleton, rules.compile(skeleton).plan, lambda name: state[name].clone()).run(sink)
    assert sink.masks.keys() == in_memory.keys() == {"up.weight", "down.weight"}
    for name, mask in in_memory.items():
        assert torch.equal(sink.masks[name], mask), name


# ----- what it cannot be combined with ------------------------------------------------------------

CONFLICTS = {
    "sparse_ratio": "sparse_ratio=0.3",
    "sparse_threshold": "sparse_threshold=0.1",
    "global_group_id": "group=g",
    "dependency_group_id": "dependency_group_id=1",
    "min_sparse_ratio": "min_sparse_ratio=0.1",
    "max_sparse_ratio": "max_sparse_ratio=0.9",
    "internal_metric_block": "internal_metric_block=2",
    "granularity": "granularity=out_channel",
}


@pytest.mark.parametrize("key", sorted(CONFLICTS))
def test_a_key_of_the_same_statement_it_cannot_combine_with_is_e222_there(project, key):
    setting = CONFLICTS[key]
    text = f'prune Linear.weight mask_structure="2:4" {setting}\n'
    (project / "a.rules").write_text(text)
    found = [d for d in lint(["a.rules"]).diagnostics if d.code == "E222"]
    assert len(found) == 1, found
    [diag] = found
    assert (diag.span.line, diag.span.column) == (1, text.index(setting) + 1)
    assert f"cannot be combined with {key}=" in diag.message and diag.hint


CONFIG_CONFLICTS = {
    "sparse_ratio": 0.3,
    "sparse_threshold": 0.1,
    "global_group_id": 1,
    "dependency_group_id": 1,
    "min_sparse_ratio": 0.1,
    "max_sparse_ratio": 0.9,
    "internal_metric_block": 2,
    "granularity": [1, -1],
    "align": {"module_name": None, "target_name": "bias", "dims": [0]},
}


@pytest.mark.parametrize("key", sorted(CONFIG_CONFLICTS))
def test_a_key_of_the_same_config_setting_is_c109_at_that_key(key):
    setting = {"mask_structure": "2:4", key: CONFIG_CONFLICTS[key]}
    for config in (
        {"op_types": ["Linear"], **setting},
        {"op_types": ["Linear"], "target_settings": {"weight": setting}},
    ):
        found = [d for d in validate_config_list([config], "prune") if d.code == "C109"]
        assert [d.subject.rsplit(".", 1)[-1] for d in found] == [key], found
        assert f"cannot be combined with {key}=" in found[0].message


def test_harmless_bounds_and_an_element_granularity_are_no_conflict():
    setting = {"mask_structure": "2:4", "min_sparse_ratio": 0.0, "max_sparse_ratio": 1.0}
    for granularity in (None, "default", [1, 1], [1], [[1, 1], "back", 1]):
        config = {"op_types": ["Linear"], **setting, "granularity": granularity}
        assert validate_config_list([config], "prune") == []


@pytest.mark.parametrize("key", sorted(CONFLICTS))
def test_a_key_from_another_statement_is_found_with_the_model_and_by_apply(key):
    setting = CONFLICTS[key]
    rules = dc.parse(f'prune Linear.weight {setting}\nprune up.weight mask_structure="2:4"')
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CompressionError) as info:
        dc.apply(rules, model)
    assert "P511" in info.value.codes and any(
        f"with {key}=" in d.message for d in info.value.diagnostics
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("key", ["sparse_ratio", "granularity", "global_group_id"])
def test_lint_with_a_model_locates_the_other_statement(project, key):
    setting = CONFLICTS[key]
    (project / "a.rules").write_text(
        f'prune Linear.weight {setting}\nprune 2.weight mask_structure="2:4"\n'
    )
    result = lint(["a.rules"], _model_of(project))
    [diag] = [d for d in result.diagnostics if d.code == "E222"]
    assert diag.span.line == 1 and "2.weight" in diag.message and "P511" in diag.hint


def test_an_aligned_target_cannot_take_a_structure(project):
    (project / "a.rules").write_text('prune 2.bias mask_structure="2:4"\n')
    [diag] = [d for d in lint(["a.rules"], _model_of(project)).diagnostics if d.code == "E222"]
    assert "align=" in diag.message and diag.span.line == 1


def test_an_activation_cannot_take_a_structure(project):
    (project / "a.rules").write_text('prune 2._input_ mask_structure="2:4"\n')
    codes = [d.code for d in lint(["a.rules"], _model_of(project)).diagnostics]
    assert "E218" in codes


def test_a_last_dim_that_is_not_a_multiple_of_m_names_the_tensor_and_its_shape(project, capsys):
    (project / "a.rules").write_text('prune Linear.weight mask_structure="4:8"\n')
    [diag] = lint(["a.rules"], _model_of(project)).diagnostics  # 0: [8, 16], 2: [12, 8] fit
    assert diag.code == "E222" and (diag.span.line, diag.span.column) == (1, 21)
    assert "3.weight" in diag.message and "shape [6, 12]" in diag.message
    assert "groups of 8" in diag.message and "divides 12" in diag.hint
    result = run(capsys, "apply", "a.rules", "--model", "m.py:build", "--dry-run")
    assert result.code == 2 and "a.rules:1:1: error[P511] 3.weight: shape [6, 12]" in result.err


def _model_of(project):
    namespace: dict = {}
    exec(MODEL_FILE, namespace)
    return namespace["build"]()


# ----- NNI export ---------------------------------------------------------------------------------


def test_compile_to_an_nni_config_list_names_the_statement(project, capsys):
    (project / "a.rules").write_text(
        'prune 0.weight sparse_ratio=0.5\nprune 2.weight mask_structure="2:4"\n'
    )
    for model in ([], ["--model", "m.py:build"]):
        result = run(capsys, "compile", "a.rules", *model)
        assert result.code == 2 and result.out == ""
        assert "a.rules:2:1: error[E223] mask_structure='2:4' (prunes 2 of every 4" in result.err
        assert "a.rules:1:" not in result.err
    result = run(capsys, "compile", "a.rules", "--model", "m.py:build", "--format", "plan")
    assert result.code == 0 and '"mask_structure": "2:4"' in result.out


def test_the_library_export_refuses_it_too():
    rules = dc.parse('prune up.weight mask_structure="2:4"')
    for model in (None, _mlp()):
        with pytest.raises(CompressionError) as info:
            rules.compile(model).config_list
        assert info.value.codes == ["E223"] and info.value.diagnostics[0].span.line == 1


def test_e223_is_documented_with_what_the_command_prints(project, capsys):
    example = COMMAND_EXAMPLES["E223"].splitlines()
    (project / "nm.rules").write_text(example[1] + "\n")
    result = run(capsys, *example[2].split()[2:])
    assert result.code == 2 and result.err.splitlines()[0] == example[-1]


def test_a_config_list_with_mask_structure_is_our_extension(project, capsys):
    """Accepted as input (and written by apply, so that it applies again), refused as NNI export."""
    config = [
        {
            "op_names": ["2"],
            "target_names": ["weight"],
            "target_settings": {"weight": {"mask_structure": "2:4"}},
        }
    ]
    (project / "c.json").write_text(json.dumps(config, indent=2))
    result = run(
        capsys, "apply", "c.json", "--mode", "prune", "--model", "m.py:build", "--out", "out"
    )
    assert result.code == 0, result.err
    written = json.loads((project / "out" / "config_list.json").read_text())
    assert written["prune"][0]["target_settings"]["weight"]["mask_structure"] == "2:4"
    again = run(capsys, "apply", "out/config_list.json", "--model", "m.py:build", "--out", "again")
    assert again.code == 0, again.err
    first, second = load_file("out/masks.safetensors"), load_file("again/masks.safetensors")
    assert first.keys() == second.keys() == {"2.weight"}
    assert torch.equal(first["2.weight"], second["2.weight"])
    assert torch.equal(_kept_per_group(first["2.weight"], 4), torch.full((24,), 2))
    for model in ([], ["--model", "m.py:build"]):
        exported = run(capsys, "compile", "c.json", "--mode", "prune", *model)
        assert exported.code == 2 and "c.json:" in exported.err and "error[E223]" in exported.err
        assert "target_settings.weight.mask_structure" in exported.err


# ----- explain ------------------------------------------------------------------------------------


def test_explain_says_how_many_are_pruned_in_words():
    text = render_explanations(explain(dc.parse('prune up.weight mask_structure="1:4"'), _mlp()))
    assert "meaning: prunes 1 of every 4 consecutive elements along the input dimension" in text
    assert "keeping 3" in text


@pytest.mark.parametrize("code", ["E222", "E223", "P511"])
def test_every_new_code_is_explained(code):
    text = explain_code(code)
    assert CODES[code].name in text and "mask_structure" in text and "Fix:" in text
    assert CODES["E222"].predicts == "P511"
