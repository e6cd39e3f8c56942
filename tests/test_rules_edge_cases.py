"""Edge cases of the .rules compiler found in review: each asserts the behaviour we chose."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dsl_compress
from conftest import CustomizedModule, TwoLinear
from dsl_compress import CompressionError
from dsl_compress.models import example_model


def compile_text(text: str, model=None, path: str = "t.rules"):
    return dsl_compress.parse(text, path).compile(model)


def codes_of(text: str, model=None) -> list[tuple[str, int]]:
    with pytest.raises(CompressionError) as info:
        compile_text(text, model)
    return [(d.code, d.span.line if d.span else 0) for d in info.value.diagnostics]


def test_group_reaches_template_targets():
    plan = compile_text("prune Linear sparse_ratio=0.5 group=g1", TwoLinear()).plan
    weights = [e for e in plan.entries if e.target == "weight"]
    assert [e.setting["global_group_id"] for e in weights] == ["g1", "g1"]


def test_ratio_and_threshold_are_one_choice_the_more_specific_wins():
    text = "prune Linear.weight sparse_ratio=0.5\nprune fc1.weight sparse_threshold=0.1\n"
    compiled = compile_text(text, TwoLinear())
    fc1 = compiled.plan.find("fc1", "weight", dsl_compress.Mode.PRUNE)
    assert fc1.setting["sparse_threshold"] == 0.1 and fc1.setting["sparse_ratio"] is None
    assert "sparse_ratio" not in fc1.key_origins
    fresh = TwoLinear()
    dsl_compress.prune(fresh, compiled.config_list["prune"])  # a valid NNI config_list


def test_patterns_skip_modules_without_the_target():
    model, _ = example_model("resnet")
    plan = compile_text("prune **.weight sparse_ratio=0.3", model).plan
    names = {e.module for e in plan.entries}
    assert "" not in names and "layer1" not in names and "layer1.0" not in names
    assert {"conv1", "layer1.0.conv1", "layer1.0.bn1", "fc"} <= names


def test_a_pattern_whose_modules_lack_the_target_is_w301():
    model, _ = example_model("resnet")
    compiled = compile_text("prune layer1.*.bias sparse_ratio=0.5", model)
    [warning] = compiled.warnings
    assert warning.code == "W301" and "none of them has bias" in warning.message


@pytest.mark.parametrize("dims", ["0", "[0.5]", '"0"'])
def test_dims_must_be_a_list_of_ints(dims):
    assert codes_of(f"align bn1.weight with conv1.weight dims={dims}") == [("E203", 1)]


def test_except_is_checked_like_exclude():
    assert codes_of("prune Linear.weight sparse_ratio=0.5 except fc1.weight") == [("E210", 1)]
    assert codes_of("prune Linear.weight sparse_ratio=0.5 except Linnear") == [("E201", 1)]
    compiled = compile_text("prune Linear.weight sparse_ratio=0.5 except fc3", TwoLinear())
    [warning] = compiled.warnings
    assert warning.code == "W301" and "except" in warning.message and warning.span.column == 45


def test_registering_a_type_twice_is_e212():
    text = "register prune M { p1 }\nregister prune M { p2 }\n"
    assert codes_of(text) == [("E212", 2)]


def test_a_file_included_by_two_routes_is_read_once(tmp_path):
    (tmp_path / "base.rules").write_text("let r = 0.5\n")
    (tmp_path / "a.rules").write_text('include "base.rules"\n')
    (tmp_path / "b.rules").write_text('include "base.rules"\n')
    main = tmp_path / "main.rules"
    main.write_text('include "a.rules"\ninclude "b.rules"\nprune fc1.weight sparse_ratio=r\n')
    ruleset = dsl_compress.load(main)
    assert len(ruleset.statements) == 2
    assert ruleset.compile(TwoLinear()).plan.entries[0].setting["sparse_ratio"] == 0.5


def test_including_a_folder_or_undecodable_file_is_a_diagnostic(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "latin.rules").write_bytes(b"prune fc1.weight sparse_ratio=0.5 # caf\xe9\n")
    main = tmp_path / "main.rules"
    main.write_text('include "sub"\n')
    with pytest.raises(CompressionError) as info:
        dsl_compress.load(main)
    assert info.value.codes == ["E205"] and "is a folder" in str(info.value)
    with pytest.raises(CompressionError) as info:
        dsl_compress.load(tmp_path / "latin.rules")
    assert info.value.codes == ["E102"] and "not UTF-8" in str(info.value)


def test_a_bom_is_allowed(tmp_path):
    path = tmp_path / "bom.rules"
    path.write_bytes("\ufeffprune fc1.weight sparse_ratio=0.5\n".encode())
    assert len(dsl_compress.load(path).statements) == 1


def test_crlf_files_report_only_the_real_error_and_keep_continuations():
    text = "prune a.weight sparse_ratio=0.5\r\nprune b.weight sparse_ratio=\r\n"
    text += "prune c.weight \\\r\n  sparse_ratio=0.5\r\n"
    with pytest.raises(CompressionError) as info:
        dsl_compress.parse(text, "crlf.rules")
    assert [(d.code, d.span.line) for d in info.value.diagnostics] == [("E103", 2)]


def test_engine_errors_of_apply_point_at_the_rules():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    text = "prune 1.weight sparse_ratio=0.2 group=g\nprune 0.weight sparse_ratio=0.5 group=g\n"
    with pytest.raises(CompressionError) as info:
        dsl_compress.apply(dsl_compress.parse(text, "groups.rules"), model)
    [diag] = info.value.diagnostics
    assert diag.code == "P505" and diag.span.file == "groups.rules" and diag.span.line in (1, 2)
    assert type(model[0]) is nn.Linear


def test_distilling_a_parameter_is_an_error_at_the_statement():
    assert codes_of("distill fc1.weight", TwoLinear()) == [("R302", 1)]


def test_several_metrics_are_noted_for_nni_export():
    text = "prune fc1.weight sparse_ratio=0.5 metric=l2\nprune fc2.weight sparse_ratio=0.5\n"
    compiled = compile_text(text, TwoLinear())
    [note] = [d for d in compiled.diagnostics if d.code == "W304"]
    assert "several metrics (l1, l2)" in note.message


def test_errors_render_with_their_source_line(tmp_path):
    path = tmp_path / "bad.rules"
    path.write_text("prune Conv2D.weight sparse_ratio=0.5\n")
    with pytest.raises(CompressionError) as info:
        dsl_compress.load(path).compile()
    text = str(info.value)
    assert "1 | prune Conv2D.weight sparse_ratio=0.5" in text and "^^^^^^" in text


def test_any_parameter_of_a_module_can_be_the_target():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cm = CustomizedModule()

    text = "register prune CustomizedModule { p1 granularity=[1, -1] }\n"
    text += "prune cm.p2 sparse_ratio=0.5 granularity=[1, -1]\n"
    model = Net()
    compiled = compile_text(text, model)
    assert [(e.module, e.target) for e in compiled.plan.entries] == [("cm", "p2")]
    mask = dsl_compress.apply(dsl_compress.parse(text), model).masks()["cm"]["p2"]
    assert mask.all(1).sum().item() == 10 and torch.equal(mask.all(1), mask.any(1))


def test_lets_are_defined_before_use_and_do_not_shadow_words():
    assert codes_of("let b = c\nlet c = 0.5\n") == [("E204", 1)]
    assert codes_of("let none = 0.5\n") == [("E211", 1)]
    plan = compile_text("let a = 0.5\nlet b = a\nprune fc1.weight sparse_ratio=b", TwoLinear()).plan
    assert plan.entries[0].setting["sparse_ratio"] == 0.5
