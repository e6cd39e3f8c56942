"""llm-compressor recipes converted to .rules: each tensor gets what llm-compressor and
compressed-tensors give it (checked on a tiny Llama), and every surprising or unconvertible
part of the recipe is a note with its code."""

from __future__ import annotations

import textwrap

import pytest

from convert_models import codes, linear_names, plan_of, quant, tiny_llama
from dsl_compress.diagnostics import CompressionError
from dsl_compress.tools.convert.llmcompressor import convert_llmcompressor
from dsl_compress.vocab import Mode

pytest.importorskip("transformers")
pytest.importorskip("yaml")

Q, P = Mode.QUANTIZE, Mode.PRUNE


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def convert(recipe: str, model=None):
    return convert_llmcompressor(textwrap.dedent(recipe), "recipe.yaml", None, model)


def quant_stage(body: str) -> str:
    return "quant_stage:\n  quant_modifiers:\n" + textwrap.indent(textwrap.dedent(body), "    ")


W4A16 = quant_stage("""\
    GPTQModifier:
      targets: [Linear]
      ignore: [lm_head]
      scheme: W4A16
      dampening_frac: 0.01
      actorder: static
    """)


def test_w4a16_quantizes_every_linear_but_lm_head(llama):
    conversion = convert(W4A16, llama)
    expected = {
        (name, "weight", Q): quant("int4", "symmetric", [1, 128])
        for name in linear_names(llama)
        if name != "lm_head"
    }
    assert plan_of(conversion, llama) == expected
    assert "K159" not in codes(conversion) and "K158" not in codes(conversion)


def test_gptq_is_reported_as_an_algorithm_with_its_knobs(llama):
    conversion = convert(W4A16, llama)
    gptq = [n for n in conversion.notes if n.code == "K151"]
    assert gptq and "dampening_frac=0.01" in gptq[0].message and "actorder" in gptq[0].message
    assert gptq[0].subject == "recipe.yaml:3"  # the place, printed before the message


def test_statements_carry_the_recipe_line_they_come_from(llama):
    text = convert(W4A16).rules_text()
    assert "# from recipe.yaml:6 (group_0)" in text and "except lm_head" in text


def test_w8a8_converts_weights_and_reports_dynamic_inputs(llama):
    conversion = convert(
        quant_stage("QuantizationModifier: {scheme: W8A8, ignore: [lm_head]}"), llama
    )
    plan = plan_of(conversion, llama)
    assert all(value == quant("int8", "symmetric", "out_channel") for value in plan.values())
    assert all(target == "weight" for _, target, _ in plan)
    assert len(plan) == len(linear_names(llama)) - 1
    dynamic = [n for n in conversion.notes if n.code == "K152"]
    assert dynamic and "input_activations" in dynamic[0].message and "dynamic" in dynamic[0].message


def test_asymmetric_scheme_becomes_uint_affine(llama):
    conversion = convert(
        quant_stage("QuantizationModifier: {scheme: W4A16_ASYM, ignore: [lm_head]}"), llama
    )
    assert set(map(str, plan_of(conversion, llama).values())) == {
        str(quant("uint4", "affine", [1, 128]))
    }


def test_float_formats_are_reported_not_guessed(llama):
    conversion = convert(quant_stage("QuantizationModifier: {scheme: FP8_DYNAMIC}"), llama)
    assert plan_of(conversion, llama) == {}
    assert any(n.code == "K152" and "float" in n.message for n in conversion.notes)


SPARSE_24 = """\
sparsity_stage:
  sparsity_modifiers:
    SparseGPTModifier:
      sparsity: 0.5
      mask_structure: "2:4"
      targets: [Linear]
      ignore: [{ignore}]
"""


def test_sparsegpt_2_4_prunes_lm_head_despite_ignore_lm_head(llama):
    conversion = convert(SPARSE_24.format(ignore="lm_head"), llama)
    plan = plan_of(conversion, llama)
    assert set(name for name, _, _ in plan) == set(linear_names(llama))
    assert all(v["mask_structure"] == "2:4" and v["granularity"] is None for v in plan.values())
    trap = [n for n in conversion.notes if n.code == "K154"]
    assert trap and "lm_head." in trap[0].message
    assert "K154" in conversion.rules_text() and "exclude lm_head" not in conversion.rules_text()


def test_sparsegpt_lm_head_trap_is_detected_without_a_model():
    conversion = convert(SPARSE_24.format(ignore="lm_head"))
    assert "K154" in codes(conversion) and "exclude" not in conversion.rules_text()


def test_unanchored_regex_ignore_does_leave_lm_head_alone(llama):
    conversion = convert(SPARSE_24.format(ignore="'re:.*lm_head'"), llama)
    plan = plan_of(conversion, llama)
    assert ("lm_head", "weight", P) not in plan and len(plan) == len(linear_names(llama)) - 1
    assert "K154" not in codes(conversion)


def test_container_targets_prune_the_linears_inside(llama):
    recipe = SPARSE_24.replace("[Linear]", "['re:model.layers.\\d+$']").format(ignore="lm_head")
    conversion = convert(recipe, llama)
    plan = plan_of(conversion, llama)
    assert set(name for name, _, _ in plan) == {n for n in linear_names(llama) if n != "lm_head"}
    assert "K159" not in codes(conversion)


def test_unstructured_sparsity_is_element_wise(llama):
    recipe = SPARSE_24.replace('mask_structure: "2:4"', "block_size: 64").format(
        ignore="'re:.*lm_head'"
    )
    conversion = convert(recipe, llama)
    values = list(plan_of(conversion, llama).values())
    assert values and all(v["sparse_ratio"] == 0.5 and v["granularity"] is None for v in values)
    assert any(n.code == "K151" and "block_size" in n.message for n in conversion.notes)


OVERLAP = quant_stage("""\
    QuantizationModifier:
      ignore: [lm_head]
      config_groups:
        int4_q:
          targets: ['re:.*q_proj$']
          weights: {num_bits: 4, type: int, symmetric: true, strategy: channel}
        int8_proj:
          targets: ['re:.*proj$']
          weights: {num_bits: 8, type: int, symmetric: true, strategy: channel}
    """)


def test_overlapping_regex_targets_rank_alphabetically_as_compressed_tensors_does(llama):
    conversion = convert(OVERLAP, llama)
    plan = plan_of(conversion, llama)
    assert plan[("model.layers.0.self_attn.q_proj", "weight", Q)]["quant_dtype"] == "int8"
    assert all(v["quant_dtype"] == "int8" for v in plan.values())
    assert any(n.code == "K153" and "q_proj" in n.message for n in conversion.notes)
    assert "#847" in conversion.rules_text()


def test_overlap_is_flagged_without_a_model():
    assert "K153" in codes(convert(OVERLAP))


def test_flat_recipe_is_a_note_and_converts_nothing():
    conversion = convert("QuantizationModifier:\n  scheme: W4A16\n")
    assert conversion.statements == ()
    assert codes(conversion).count("K155") >= 1


def test_unknown_and_algorithm_modifiers_are_reported(llama):
    recipe = quant_stage(
        "AWQModifier: {}\nQuantModifier: {scheme: W4A16}\nQuantizationModifier: {scheme: W4A16, groupsize: 3}\n"
    )
    conversion = convert(recipe, llama)
    messages = [n.message for n in conversion.notes]
    assert any("AWQModifier not converted" in m for m in messages)
    assert any("QuantModifier" in m for m in messages if "not a modifier" in m)
    assert any("'groupsize'" in m for m in messages)


def test_bad_yaml_is_one_located_error():
    with pytest.raises(CompressionError) as failure:
        convert("quant_stage:\n  quant_modifiers: [\n")
    assert (
        failure.value.codes == ["K150"] and failure.value.diagnostics[0].span.file == "recipe.yaml"
    )


def test_unknown_preset_is_an_error():
    with pytest.raises(CompressionError) as failure:
        convert(quant_stage("QuantizationModifier: {scheme: W4A16_SYM}"))
    assert failure.value.codes == ["K150"]


def test_per_layer_sparsities_become_exact_names(llama):
    recipe = SPARSE_24.replace("[Linear]", "['re:model.layers.\\d+$']").replace(
        'mask_structure: "2:4"', "sparsity: [0.25, 0.75]"
    )
    recipe = recipe.replace("      sparsity: 0.5\n", "").format(ignore="lm_head")
    conversion = convert(recipe, llama)
    plan = plan_of(conversion, llama)
    assert {v["sparse_ratio"] for (name, _, _), v in plan.items() if ".layers.0." in name} == {0.25}
    assert {v["sparse_ratio"] for (name, _, _), v in plan.items() if ".layers.1." in name} == {0.75}
    assert "K158" in codes(conversion) and "K159" not in codes(conversion)
    assert "K160" in codes(convert(recipe))


def test_a_selection_the_rules_cannot_reproduce_is_an_error_note():
    torch = pytest.importorskip("torch")

    class MyLinear(torch.nn.Linear):
        pass

    # compressed-tensors' Linear target reaches the subclass (MRO); .rules types are exact
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), MyLinear(8, 8))
    conversion = convert(quant_stage("QuantizationModifier: {scheme: W8A16}"), model)
    assert "K159" in codes(conversion)


def test_converts_against_a_manifest_stand_in(llama):
    from dsl_compress.io.manifest import build_manifest
    from dsl_compress.io.manifest_read import stand_in_model

    stand_in = stand_in_model(build_manifest(llama))
    conversion = convert(W4A16, stand_in)
    assert plan_of(conversion, stand_in) == plan_of(convert(W4A16, llama), llama)
    assert "K159" not in codes(conversion)


TARGET_SETS = [
    ["Linear"],
    ["re:.*q_proj$", "re:.*proj$", "Linear"],
    ["model.layers.0.mlp.down_proj", "re:.*mlp.*", "LlamaMLP", "Linear"],
    ["re:model.layers.1", "LlamaDecoderLayer", "re:.*norm"],
]
IGNORE_SETS = [[], ["lm_head"], ["re:.*mlp"], ["re:.*self_attn.*", "Embedding"]]


@pytest.mark.parametrize("targets", TARGET_SETS)
@pytest.mark.parametrize("ignore", IGNORE_SETS)
def test_ct_match_selects_and_ranks_as_compressed_tensors_does(llama, targets, ignore):
    match = pytest.importorskip("compressed_tensors.utils.match")
    from dsl_compress.tools.convert import ct_match

    ours = {m.name: m for m in ct_match.modules_of(llama)}
    theirs = list(match.match_named_modules(llama, targets, ignore))
    assert [name for name, _ in theirs] == [
        name
        for name, info in ours.items()
        if ct_match.is_match(info, targets) and not ct_match.is_match(info, ignore)
    ]
    for name, module in llama.named_modules():
        assert ct_match.ranked_targets(ours[name], targets) == match.match_targets(
            name, module, targets
        )


def test_the_command_guesses_and_converts_each_tool(tmp_path, capsys):
    from cli_runner import run

    (tmp_path / "recipe.yaml").write_text(W4A16)
    (tmp_path / "int8.json").write_text(
        '[{"quantizer_name": "*", "enable": false},\n'
        ' {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8, "axis": 0}}]\n'
    )
    for source, words in (("recipe.yaml", "quant_dtype=int4"), ("int8.json", "quant_dtype=int8")):
        out = tmp_path / f"{source}.rules"
        result = run(capsys, "convert", tmp_path / source, "-o", out)
        assert result.code in (0, 1), result.err
        assert words in out.read_text()


OVERLAPPING_ROLES = quant_stage("""\
    QuantizationModifier:
      ignore: [lm_head]
      config_groups:
        group_0: {targets: [Linear], weights: {num_bits: 8, type: int, symmetric: true, strategy: channel},
                  input_activations: {num_bits: 8, type: int, symmetric: true, strategy: tensor}}
        group_1: {targets: ["re:.*down_proj"], weights: {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 128}}
""")


def test_a_module_takes_the_whole_scheme_of_the_target_that_wins_it(llama):
    """down_proj gets group_1's scheme, which quantizes no input: group_0's input statement
    keeps off it, with or without the model (compressed-tensors replaces whole schemes)."""
    for model in (None, llama):
        conversion = convert(OVERLAPPING_ROLES, model)
        assert "K159" not in codes(conversion) and "K158" not in codes(conversion)
    found = plan_of(convert(OVERLAPPING_ROLES), llama)
    down = [k for k in found if k[0].endswith("down_proj")]
    assert down and all(target == "weight" for _, target, _ in down)
    assert any(k[0].endswith("up_proj") and k[1] == "_input_" for k in found)


def test_a_modifiers_ignore_keeps_to_its_own_statements(llama):
    text = (
        "quant_stage:  {quant_modifiers:  {QuantizationModifier: "
        "{targets: [Linear], scheme: W4A16, ignore: [lm_head]}}}\n"
        "second_stage: {second_modifiers: {QuantizationModifier: "
        "{targets: [lm_head], scheme: W8A16}}}\n"
    )
    conversion = convert(text, llama)
    assert "K159" not in codes(conversion)
    assert plan_of(conversion, llama)[("lm_head", "weight", Mode.QUANTIZE)]["quant_dtype"] == "int8"


def test_an_ignore_leaves_a_layer_alone_only_under_every_name_it_is_pruned_by(llama):
    """re:model.layers reaches q_proj as a layer of its block and as its own container (named
    'q_proj.'): the exact ignore misses the second name, so llm-compressor still prunes it."""
    recipe = (
        "sparsity_stage: {sparsity_modifiers: {SparseGPTModifier: {sparsity: 0.5, "
        'targets: ["re:model.layers"], ignore: ["model.layers.0.self_attn.q_proj"]}}}\n'
    )
    conversion = convert(recipe, llama)
    assert "K154" in codes(conversion) and "K159" not in codes(conversion)
    found = plan_of(conversion, llama)
    assert ("model.layers.0.self_attn.q_proj", "weight", Mode.PRUNE) in found


def test_a_sparsity_list_of_another_length_than_the_layers_is_refused_at_it(llama):
    recipe = (
        "sparsity_stage: {sparsity_modifiers: {SparseGPTModifier: {sparsity: [0.3], "
        'targets: ["re:model.layers.\\\\d+$"]}}}\n'
    )
    with pytest.raises(CompressionError) as caught:
        convert(recipe, llama)
    (found,) = caught.value.diagnostics
    assert found.code == "K150" and found.subject == "recipe.yaml:1"
    assert "1 value(s) for 2 target layer(s)" in found.message


def test_each_config_group_is_placed_at_its_own_line():
    text = convert(OVERLAPPING_ROLES).rules_text()
    assert "# from recipe.yaml:6 (group_0)" in text and "# from recipe.yaml:8 (group_1)" in text


def test_a_later_modifier_replaces_the_whole_scheme_an_earlier_set(llama):
    """compressed-tensors replaces a module's scheme: down_proj ends W4A16, as every Linear."""
    recipe = (
        'first_stage: {first_modifiers: {QuantizationModifier: {targets: ["re:.*down_proj"], '
        "scheme: W8A16}}}\n"
        "second_stage: {second_modifiers: {QuantizationModifier: {targets: [Linear], "
        "scheme: W4A16}}}\n"
    )
    for model in (None, llama):
        conversion = convert(recipe, model)
        assert "K158" not in codes(conversion) and "K159" not in codes(conversion)
        found = plan_of(conversion, llama)
        down = found[("model.layers.0.mlp.down_proj", "weight", Mode.QUANTIZE)]
        assert down["quant_dtype"] == "int4"
