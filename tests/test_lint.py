"""lint(): every diagnostic of .rules files, the model-aware checks, and the exit status."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsl_compress import CompressionError, Severity
from dsl_compress.api import run_plan
from dsl_compress.tools.lint import LintResult, lint
from dsl_compress.models import cnn, resnet, transformer
from dsl_compress.resolve.ruleset import load

RULES = Path(__file__).resolve().parent.parent / "rules"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Rules files are written here and linted by relative name, as a user runs the command."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, text: str, name: str = "t.rules") -> str:
    (folder / name).write_text(text, encoding="utf-8")
    return name


def lint_text(folder: Path, text: str, model: torch.nn.Module | None = None) -> LintResult:
    return lint([write(folder, text)], model)


def where(diag) -> tuple:
    span = diag.span
    return (span.file, span.line, span.column, span.end_line, span.end_column)


def only(result: LintResult, code: str):
    found = [d for d in result.diagnostics if d.code == code]
    assert len(found) == 1, [d.render() for d in result.diagnostics]
    return found[0]


def codes(result: LintResult) -> list[str]:
    return [d.code for d in result.diagnostics]


# ----- syntax and meaning, without a model --------------------------------------------------------


def test_syntax_error_is_a_finding_with_its_span_not_an_exception(workdir):
    result = lint_text(
        workdir, "prune conv1.weight sparse_ratio=0.5\nprune conv2.weight sparse_ratio=\n"
    )
    diag = only(result, "E103")
    assert diag.severity is Severity.ERROR
    assert where(diag) == ("t.rules", 2, 33, 2, 34)
    assert result.exit_status("error") == 1 and result.exit_status("warning") == 1
    assert result.sources["t.rules"][1] == "prune conv2.weight sparse_ratio="


def test_every_semantic_error_of_a_file_is_reported(workdir):
    text = "prune Conv2D.weight sparse_ratio=0.5\nprune Linear.weight sparse_ratio=50\n"
    result = lint_text(workdir, text)
    assert codes(result) == ["E201", "E207"]
    assert [(d.span.line, d.span.column) for d in result.diagnostics] == [(1, 7), (2, 34)]
    assert "'Conv2d'" in result.diagnostics[0].hint
    assert result.exit_status("error") == 1


def test_clean_file_exits_0(workdir):
    result = lint_text(workdir, "prune Conv2d.weight sparse_ratio=0.5 granularity=out_channel\n")
    assert result.diagnostics == ()
    assert result.files_checked == ("t.rules",)
    assert result.exit_status("error") == 0 and result.exit_status("warning") == 0


def test_info_never_fails(workdir):
    text = "prune conv1.weight sparse_ratio=0.5 metric=l2\nprune conv2.weight sparse_ratio=0.5\n"
    result = lint_text(workdir, text, cnn())
    assert codes(result) == ["W304"]
    assert result.diagnostics[0].severity is Severity.INFO
    assert result.exit_status("error") == 0 and result.exit_status("warning") == 0


def test_warnings_fail_by_default_and_pass_with_fail_on_error(workdir):
    result = lint_text(workdir, "prune conv9.weight sparse_ratio=0.5\n", cnn())
    assert only(result, "W301").severity is Severity.WARNING
    assert result.exit_status() == 1
    assert result.exit_status("warning") == 1
    assert result.exit_status("error") == 0


def test_a_conflict_alone_fails_by_default(workdir):
    text = "prune conv*.weight sparse_ratio=0.5 metric=l2\nprune conv{1,2,3}.weight sparse_ratio=0.25\n"
    result = lint_text(workdir, text, cnn())
    assert codes(result) == ["W302"]
    assert result.exit_status() == 1 and result.exit_status("error") == 0


def test_unknown_fail_on_is_x803(workdir):
    result = lint_text(workdir, "prune conv1.weight sparse_ratio=0.5\n")
    with pytest.raises(CompressionError) as info:
        result.exit_status("warn")
    assert info.value.codes == ["X803"] and "'warning'" in info.value.diagnostics[0].hint


def test_missing_path_is_e205_and_other_files_are_still_checked(workdir):
    write(workdir, "prune Conv2D.weight sparse_ratio=0.5\n", "b.rules")
    result = lint(["missing.rules", "b.rules"])
    assert codes(result) == ["E201", "E205"]  # sorted by file: b.rules before missing.rules
    missing = result.diagnostics[1]
    assert missing.span is None and missing.subject == "missing.rules"
    assert "missing.rules" in missing.message
    assert result.files_checked == ("missing.rules", "b.rules")


def test_diagnostics_are_sorted_by_file_line_column_across_files(workdir):
    write(
        workdir, "prune Conv2D.weight sparse_ratio=0.5\nprune X.weight sparse_ratio=2\n", "b.rules"
    )
    write(workdir, "prune conv1.weight sparse_ratio=\n", "a.rules")
    result = lint(["b.rules", "a.rules"])
    positions = [(d.span.file, d.span.line, d.span.column) for d in result.diagnostics]
    assert positions == sorted(positions)
    assert positions[0][0] == "a.rules"


def test_an_included_file_shared_by_two_files_reports_once_with_its_source(workdir):
    write(workdir, "prune Conv2D.weight sparse_ratio=0.5\n", "common.rules")
    write(workdir, 'include "common.rules"\n', "a.rules")
    write(workdir, 'include "common.rules"\n', "b.rules")
    result = lint(["a.rules", "b.rules"])
    diag = only(result, "E201")
    assert diag.span.file == "common.rules"
    assert result.sources["common.rules"][0].startswith("prune Conv2D")


def test_missing_include_is_e205_at_the_include(workdir):
    result = lint_text(workdir, 'include "nope.rules"\n')
    assert where(only(result, "E205")) == ("t.rules", 1, 1, 1, 21)


# ----- model-aware checks from the compiler: W301, W302, W303, R301, E209 ---------------------


def test_w301_matches_nothing_with_did_you_mean(workdir):
    text = (
        "prune layer1.0.conv1.weight sparse_ratio=0.5\n"
        "prune layr1.*.conv2.weight sparse_ratio=0.5\n"
    )
    result = lint_text(workdir, text, resnet())
    diag = only(result, "W301")
    assert where(diag) == ("t.rules", 2, 7, 2, 27)  # the selector, not the whole statement
    assert "matches no module" in diag.message and "'layer1.1.conv2'" in diag.hint


def test_w301_target_typo_and_empty_scope(workdir):
    typo = only(lint_text(workdir, "prune conv1.wieght sparse_ratio=0.5\n", cnn()), "W301")
    assert "did you mean 'weight'" in typo.hint
    text = "prune Conv2d.weight in layr1.** sparse_ratio=0.5\n"
    scope = only(lint_text(workdir, text, resnet()), "W301")
    assert "10 Conv2d module(s), none inside the `in` scope" in scope.hint


@pytest.mark.parametrize(
    "selector, modules",
    [("conv*.wieght", "the 3 module(s) 'conv*' matches"), ("Conv2d.wieght", "the 3 module(s)")],
)
def test_w301_when_the_modules_match_names_the_target_at_the_selector(workdir, selector, modules):
    text = f"prune {selector} sparse_ratio=0.5\n"
    diag = only(lint_text(workdir, text, cnn()), "W301")
    assert where(diag) == ("t.rules", 1, 7, 1, 7 + len(selector))
    assert diag.hint.startswith(f"'wieght' is not a target of {modules}")
    assert diag.hint.endswith("did you mean 'weight'?")
    assert "conv3" not in diag.hint  # the module part matched: no module names offered


def test_w301_target_far_from_any_lists_the_modules_targets(workdir):
    diag = only(lint_text(workdir, "prune conv*.kernel sparse_ratio=0.5\n", cnn()), "W301")
    assert "'kernel' is not a target of the 3 module(s) 'conv*' matches" in diag.hint
    assert "'weight'" in diag.hint and "'bias'" in diag.hint


def test_w302_equal_specificity_conflict_at_the_later_value(workdir):
    text = "prune conv*.weight sparse_ratio=0.5\nprune {conv1,conv2}.weight sparse_ratio=0.3\n"
    result = lint_text(workdir, text, cnn())
    diag = only(result, "W302")
    assert where(diag) == ("t.rules", 2, 28, 2, 44)
    assert "sparse_ratio=0.5 at t.rules:1:20" in diag.message
    assert result.exit_status("warning") == 1


def test_w303_dead_statement(workdir):
    text = "prune conv*.weight sparse_ratio=0.5\nprune conv1.weight sparse_ratio=0.3\n"
    result = lint_text(workdir, text, resnet())
    diag = only(result, "W303")
    assert where(diag) == ("t.rules", 1, 1, 1, 36)
    assert codes(result) == ["W303"]


def test_r301_unregistered_type_at_the_statement(workdir):
    result = lint_text(
        workdir, "prune fc1.weight sparse_ratio=0.5\nprune attn sparse_ratio=0.5\n", transformer()
    )
    diag = only(result, "R301")
    assert diag.severity is Severity.ERROR
    assert where(diag)[:3] == ("t.rules", 2, 1)
    assert "MultiheadAttention" in diag.message and "register prune" in diag.hint


def test_e209_missing_align_partner_with_a_model(workdir):
    text = "prune conv1.weight sparse_ratio=0.5\nalign bn1.weight with conv9.weight dims=[0]\n"
    result = lint_text(workdir, text, cnn())
    assert where(only(result, "E209"))[:3] == ("t.rules", 2, 1)


# ----- W305: ratios that round to zero blocks -----------------------------------------------------


def test_w305_ratio_rounds_to_zero_channels(workdir):
    text = (
        "prune conv2.weight sparse_ratio=0.5\n"
        "prune conv1.weight sparse_ratio=0.1 granularity=out_channel\n"
    )
    result = lint_text(workdir, text, cnn())
    diag = only(result, "W305")  # conv1 has 8 output channels: floor(8 * 0.1) = 0
    assert diag.severity is Severity.WARNING
    assert where(diag) == ("t.rules", 2, 20, 2, 36)  # the sparse_ratio setting
    assert "8 block(s)" in diag.message and "floor(8 * 0.1) = 0" in diag.message
    assert "0.125" in diag.hint
    assert result.exit_status("error") == 0 and result.exit_status("warning") == 1


def test_w305_agrees_with_the_engine(workdir):
    model = cnn()
    write(workdir, "prune conv1.weight sparse_ratio=0.1 granularity=out_channel\n")
    assert codes(lint(["t.rules"], model)) == ["W305"]
    masks = run_plan(model, load("t.rules").compile(model).plan).masks()
    assert bool(masks["conv1"]["weight"].all())  # nothing pruned, as the warning says


def test_w305_element_wise_counts_elements(workdir):
    # metric=level prunes element-wise: fc.weight has 10 * 16 = 160 elements.
    result = lint_text(workdir, "prune fc.weight sparse_ratio=0.005 metric=level\n", cnn())
    assert "160 element(s)" in only(result, "W305").message
    assert (
        lint_text(workdir, "prune fc.weight sparse_ratio=0.01 metric=level\n", cnn()).diagnostics
        == ()
    )


def test_w305_uses_the_block_grid_of_a_list_granularity(workdir):
    # [4, -1] blocks of 4 rows over whole columns: conv2 (16 out channels) has 4 blocks.
    result = lint_text(
        workdir, "prune conv2.weight sparse_ratio=0.2 granularity=[4,-1,-1,-1]\n", cnn()
    )
    assert "4 block(s)" in only(result, "W305").message
    ok = lint_text(
        workdir, "prune conv2.weight sparse_ratio=0.25 granularity=[4,-1,-1,-1]\n", cnn()
    )
    assert ok.diagnostics == ()


def test_lint_without_a_model_is_quiet_about_nni_export(workdir):
    text = "prune Conv2d.weight sparse_ratio=0.5\nexclude Conv2d in layer1.**\n"
    assert codes(lint_text(workdir, text)) == []


def test_w305_not_for_group_members_or_min_ratio_that_prunes(workdir):
    grouped = "prune Conv2d.weight sparse_ratio=0.1 group=g granularity=out_channel\n"
    assert "W305" not in codes(lint_text(workdir, grouped, cnn()))
    bounded = "prune conv1.weight sparse_ratio=0.1 min_sparse_ratio=0.25\n"
    assert "W305" not in codes(lint_text(workdir, bounded, cnn()))


def test_shipped_rules_files_lint_clean_on_their_models():
    result = lint([str(RULES / "global_backbone.rules")], resnet())
    assert result.exit_status("warning") == 0, [str(d) for d in result.diagnostics]


# ----- E213 / E214: align partners ----------------------------------------------------------------

BN_ON_WRONG_CONV = (
    "prune conv2.weight sparse_ratio=0.5 granularity=out_channel\n"
    "align bn1.weight with conv2.weight dims=[0]\n"
)


def test_e213_align_partner_with_other_sizes_on_the_aligned_dims(workdir):
    result = lint_text(workdir, BN_ON_WRONG_CONV, cnn())
    diag = only(result, "E213")  # bn1 has 8 channels, conv2 16 output channels
    assert diag.severity is Severity.ERROR
    assert where(diag) == ("t.rules", 2, 1, 2, 44)
    assert "bn1.weight (shape [8]" in diag.message and "of size [16]" in diag.message
    assert "P509" in diag.hint


def test_e213_agrees_with_the_engine(workdir):
    model = cnn()
    write(workdir, BN_ON_WRONG_CONV)
    with pytest.raises(CompressionError) as info:
        run_plan(model, load("t.rules").compile(model).plan)
    assert info.value.codes == ["P509"]


def test_e213_in_a_resnet_and_dims_out_of_range(workdir):
    text = (
        "prune layer1.0.conv1.weight sparse_ratio=0.5\n"
        "align layer2.0.bn1.weight with layer1.0.conv1.weight dims=[0]\n"
        "align layer1.0.bn1.weight with layer1.0.conv1.weight dims=[7]\n"
    )
    result = lint_text(workdir, text, resnet())
    assert codes(result) == ["E213", "E213"]
    lines = {d.span.line: d.message for d in result.diagnostics if d.code == "E213"}
    assert set(lines) == {2, 3}
    assert "of size [8]" in lines[2] and "out of range" in lines[3]


def test_matching_align_partners_are_clean():
    result = lint([str(RULES / "resnet_channels.rules")], resnet())
    assert result.diagnostics == ()


def test_e214_align_partner_without_a_mask(workdir):
    result = lint_text(workdir, "align bn1.weight with conv1.weight dims=[0]\n", cnn())
    diag = only(result, "E214")
    assert diag.severity is Severity.ERROR
    assert where(diag) == ("t.rules", 1, 1, 1, 44)
    assert "conv1.weight, which gets no mask" in diag.message and "P503" in diag.hint


def test_e214_through_the_template_align_of_a_bias(workdir):
    model = cnn()
    result = lint_text(workdir, "prune fc.bias apply_method=mul\n", model)
    diag = only(result, "E214")
    assert diag.message == (
        "fc.bias is aligned to fc.weight, which gets no mask (the Linear template's align)"
    )
    assert where(diag)[:3] == ("t.rules", 1, 1)  # the statement that matched the tensor
    with pytest.raises(CompressionError) as info:
        run_plan(model, load("t.rules").compile(model).plan)
    assert info.value.codes == ["P503"]


def test_aligned_chain_is_a_mask_source(workdir):
    text = (
        "prune conv1.weight sparse_ratio=0.5\n"
        "align bn1.weight with conv1.weight dims=[0]\n"
        "align bn1.bias with bn1.weight dims=[0]\n"
    )
    assert lint_text(workdir, text, cnn()).diagnostics == ()


def test_without_a_model_no_model_aware_checks(workdir):
    assert lint_text(workdir, BN_ON_WRONG_CONV).exit_status("warning") == 0


def test_an_include_that_fails_hides_no_other_finding(workdir):
    result = lint_text(workdir, 'include "nope.rules"\nprune Conv2D.weight sparse_rato=0.5\n')
    codes = [d.code for d in result.diagnostics]
    assert codes == ["E205", "E201", "E202"]
