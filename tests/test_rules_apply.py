"""Applying .rules to small models end to end, and the NNI round trip of the compiled config_list."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import dsl_compress
from rules_texts import BN_SEED, ISSUE_REGISTER, PAGE_BN_ALIGNED_CONFIG_LIST

# The page's config_list with the ratio its first config leaves to the reader.
PAGE_WITH_RATIO = [
    {**PAGE_BN_ALIGNED_CONFIG_LIST[0], "sparse_ratio": 0.5},
    *PAGE_BN_ALIGNED_CONFIG_LIST[1:],
]
from conftest import CustomizedModule, ConvBn, assert_same_state, state_copy
from dsl_compress import Compression, CompressionWarning, Mode
from dsl_compress.models import example_model

# The statements of issue 3 (minus the include), with module names of the bundled models.
ISSUE_EXAMPLE = {
    "resnet": (
        "let ratio = 0.5\n"
        "prune Conv2d.weight sparse_ratio=ratio granularity=out_channel metric=l1\n"
        "prune layer1.*.conv*.weight sparse_ratio=0.25 group=backbone   # global group\n"
        "prune fc.weight sparse_ratio=0.8 except head.*\n"
        "align **.bn*.weight with **.conv*.weight dims=[0]\n"
        "align **.bn*.bias with **.conv*.weight dims=[0]\n"
        "quantize Linear.{weight,_input_,_output_} quant_dtype=int8 quant_scheme=symmetric\n"
        "quantize Conv2d.weight quant_dtype=int4 quant_scheme=affine granularity=out_channel\n"
        "distill layer2._output_ lambda=0.5 link=layer2 apply_method=kl\n"
        "exclude layer2.0.shortcut.**\n" + ISSUE_REGISTER
    ),
    "cnn": (
        "let ratio = 0.5\n"
        "prune Conv2d.weight sparse_ratio=ratio granularity=out_channel metric=l1\n"
        "prune {conv2,conv3}.weight sparse_ratio=0.25 group=backbone\n"
        "prune fc.weight sparse_ratio=0.8 except head.*\n"
        "align bn*.weight with conv*.weight dims=[0]\n"
        "align bn*.bias with conv*.weight dims=[0]\n"
        "quantize Linear.{weight,_input_,_output_} quant_dtype=int8 quant_scheme=symmetric\n"
        "quantize Conv2d.weight quant_dtype=int4 quant_scheme=affine granularity=out_channel\n"
        "distill fc._output_ lambda=0.5 link=fc apply_method=mse\n"
        "exclude conv1 from quantize\n" + ISSUE_REGISTER
    ),
    "transformer": (
        "let ratio = 0.5\n"
        "prune Linear.weight sparse_ratio=ratio granularity=out_channel metric=l1\n"
        "prune fc*.weight sparse_ratio=0.25 group=mlp\n"
        "quantize Linear.{weight,_input_,_output_} quant_dtype=int8 quant_scheme=symmetric\n"
        "quantize fc2.weight quant_dtype=int4 quant_scheme=affine granularity=out_channel\n"
        "distill fc2._output_ lambda=0.5 link=fc2 apply_method=mse\n"
        "exclude norm*\n" + ISSUE_REGISTER
    ),
}


class CustomNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.cm = CustomizedModule()

    def forward(self, x, y):
        return self.cm(x, y)


def apply_rules(text: str, model: nn.Module, calib=None, **kwargs) -> Compression:
    """The issue's statements are written for every bundled model: some match nothing on one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompressionWarning)
        rules = dsl_compress.parse(text, "t.rules")
        return dsl_compress.apply(rules, model, calib, allow_unmatched=True, **kwargs)


def rows(mask: torch.Tensor) -> torch.Tensor:
    """Which output channels a parameter mask keeps."""
    return mask.flatten(1).any(1) if mask.dim() > 1 else mask


def flat_masks(compression: Compression) -> dict[tuple[str, str], torch.Tensor]:
    return {(m, t): mask for m, ts in compression.masks().items() for t, mask in ts.items()}


def flat_quant(compression: Compression) -> dict[tuple[str, str], dict]:
    return {(m, t): p for m, ts in compression.quant_params().items() for t, p in ts.items()}


def assert_same_masks(ours: Compression, theirs: Compression) -> None:
    a, b = flat_masks(ours), flat_masks(theirs)
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_plain(model: nn.Module, keys: list[str]) -> None:
    """No parametrization, no hook left, and the state_dict has its original keys."""
    for name, module in model.named_modules():
        assert not parametrize.is_parametrized(module), name
        assert not module._forward_hooks and not module._forward_pre_hooks, name
    assert list(model.state_dict()) == keys


# ----- the page's BN aligned to conv -------------------------------------------------------------


@pytest.mark.parametrize(
    "bias_rule",
    [
        "align **.bn*.bias with **.bn*.weight dims=[0]",
        "align bn*.bias with conv*.weight dims=[0]",
        "prune bn*.bias",  # the bias template's own align (module_name None, target weight)
    ],
)
def test_bn_masks_follow_the_conv_channels(conv_bn, bias_rule):
    compression = apply_rules(BN_SEED + bias_rule + "\n", conv_bn)
    masks = compression.masks()
    assert sorted((m, sorted(t)) for m, t in masks.items()) == [
        ("bn1", ["bias", "weight"]),
        ("bn2", ["bias", "weight"]),
        ("conv1", ["weight"]),
        ("conv2", ["weight"]),
    ]
    for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
        channels = rows(masks[conv]["weight"])
        assert channels.float().mean().item() == 0.5
        assert masks[conv]["weight"].shape == getattr(conv_bn, conv).weight.shape
        assert torch.equal(masks[bn]["weight"], channels)
        assert torch.equal(masks[bn]["bias"], channels)


def test_bn_seed_gives_the_masks_of_the_pages_config_list(conv_bn):
    ours = flat_masks(apply_rules(BN_SEED, conv_bn))
    page = flat_masks(dsl_compress.prune(ConvBn(), PAGE_WITH_RATIO))
    # The page's configs name no targets, so NNI's shorthand also reaches every bias (its
    # template aligns it to the module's weight); the rules name .weight only. Every mask the
    # rules give is the page's.
    biases = [(m, "bias") for m in ("conv1", "conv2", "bn1", "bn2")]
    assert sorted(page) == sorted([*ours, *biases])
    for key, mask in ours.items():
        assert torch.equal(mask, page[key]), key


def test_bn_seed_masked_channels_are_zero_after_finalize(conv_bn):
    keys = list(conv_bn.state_dict())
    compression = apply_rules(BN_SEED, conv_bn)
    masks = compression.masks()
    model = compression.finalize()
    assert_plain(model, keys)
    dropped = ~masks["bn1"]["weight"]
    assert torch.all(model.bn1.weight[dropped] == 0)
    assert torch.all(model.conv1.weight[dropped] == 0)
    assert torch.all(model.bn1.weight[~dropped] != 0)


# ----- issue 3's statements on the bundled models ------------------------------------------------


def run_example(name: str):
    model, batch = example_model(name)
    teacher, _ = example_model(name, seed=1)
    keys = list(model.state_dict())
    rules = dsl_compress.parse(ISSUE_EXAMPLE[name], f"{name}.rules")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompressionWarning)
        compression = dsl_compress.apply(
            rules, model, calib=[batch], teacher=teacher, allow_unmatched=True  # see apply_rules
        )
    return model, batch, teacher, keys, compression


def test_issue_example_on_resnet():
    model, batch, teacher, keys, compression = run_example("resnet")
    masks, quant = compression.masks(), flat_quant(compression)
    block_convs = [f"layer{i}.{j}.conv{k}" for i in (1, 2) for j in (0, 1) for k in (1, 2)]
    assert sorted(m for m in masks if "conv" in m or m == "fc") == sorted(
        ["conv1", "fc"] + block_convs
    )
    assert "layer2.0.shortcut.0" not in masks and "layer2.0.shortcut.1" not in masks
    # global group backbone: 25% of layer1's conv channels overall; the others 50%.
    group = [rows(masks[f"layer1.{j}.conv{k}"]["weight"]) for j in (0, 1) for k in (1, 2)]
    assert torch.cat(group).float().mean().item() == 0.75
    assert rows(masks["layer2.1.conv2"]["weight"]).float().mean().item() == 0.5
    assert masks["fc"]["weight"].float().mean().item() == pytest.approx(0.2)
    for bn in ["bn1"] + [b.replace("conv", "bn") for b in block_convs]:
        channels = rows(masks[bn.replace("bn", "conv")]["weight"])
        assert torch.equal(masks[bn]["weight"], channels), bn
        assert torch.equal(masks[bn]["bias"], channels), bn
    assert {t for (m, t) in quant if m == "fc"} == {"weight", "_input_0", "_output_0"}
    assert quant[("fc", "weight")]["quant_dtype"] == "int8"
    assert quant[("conv1", "weight")]["quant_dtype"] == "int4"
    assert quant[("conv1", "weight")]["scale"].shape == (8, 1, 1, 1)
    assert ("layer2.0.shortcut.0", "weight") not in quant
    student_out, _ = model(batch), teacher(batch)
    assert torch.isfinite(student_out).all()
    assert torch.isfinite(compression.loss())
    with pytest.warns(CompressionWarning, match=r"X804.*_input_0"):  # run-time quantization
        plain = compression.finalize()
    assert_plain(plain, keys)
    assert torch.isfinite(plain(batch)).all()


def test_issue_example_on_cnn():
    model, batch, teacher, keys, compression = run_example("cnn")
    masks, quant = compression.masks(), flat_quant(compression)
    assert sorted(masks) == ["bn1", "bn2", "bn3", "conv1", "conv2", "conv3", "fc"]
    assert rows(masks["conv1"]["weight"]).float().mean().item() == 0.5
    both = torch.cat([masks[c]["weight"].flatten() for c in ("conv2", "conv3")])
    assert both.float().mean().item() == 0.75  # the global group keeps 75% of its elements
    for i in (1, 2, 3):
        assert torch.equal(masks[f"bn{i}"]["bias"], rows(masks[f"conv{i}"]["weight"]))
    assert ("conv1", "weight") not in quant  # excluded from quantize only
    assert quant[("conv2", "weight")]["quant_scheme"] == "affine"
    assert quant[("fc", "_output_0")]["quant_dtype"] == "int8"
    model(batch), teacher(batch)
    assert torch.isfinite(compression.loss())
    with pytest.warns(CompressionWarning, match=r"X804.*_input_0"):  # run-time quantization
        plain = compression.finalize()
    assert_plain(plain, keys)
    assert torch.isfinite(plain(batch)).all()


def test_issue_example_on_transformer():
    model, batch, teacher, keys, compression = run_example("transformer")
    masks, quant = compression.masks(), flat_quant(compression)
    assert sorted(masks) == ["fc1", "fc2"]  # Linear is the exact class: not attn.out_proj
    kept = torch.cat([masks[f]["weight"].flatten() for f in ("fc1", "fc2")])
    assert kept.float().mean().item() == 0.75  # one global group over fc1 and fc2 (same size)
    assert quant[("fc2", "weight")]["quant_dtype"] == "int4"
    assert quant[("fc1", "weight")]["quant_dtype"] == "int8"
    assert quant[("fc1", "_input_0")]["scale"].numel() == 1
    assert not any(m.startswith("norm") or m.startswith("attn") for m, _ in quant)
    out = model(batch)
    teacher(batch)
    assert out.shape == batch.shape and torch.isfinite(out).all()
    assert torch.isfinite(compression.loss())
    with pytest.warns(CompressionWarning, match=r"X804.*_input_0"):  # run-time quantization
        plain = compression.finalize()
    assert_plain(plain, keys)
    assert torch.isfinite(plain(batch)).all()


def test_apply_then_restore_gives_the_original_weights_back():
    model, batch = example_model("resnet")
    saved = state_copy(model)
    compression = apply_rules(ISSUE_EXAMPLE["resnet"], model, [batch], teacher=model.__class__())
    assert isinstance(compression, Compression)
    compression.restore()
    assert_same_state(model, saved)


def test_transformer_mlp_hidden_units_aligned():
    model, batch = example_model("transformer")
    text = "prune fc1 sparse_ratio=0.5\nalign fc2.weight with fc1.weight dims=[0] granularity=in_channel\n"
    masks = apply_rules(text, model, [batch]).masks()
    hidden = rows(masks["fc1"]["weight"])
    assert torch.equal(masks["fc1"]["bias"], hidden)
    assert torch.equal(masks["fc2"]["weight"].any(0), hidden)
    assert hidden.float().mean().item() == 0.5


def test_registered_customized_module_end_to_end():
    model = CustomNet()
    x, y = torch.randn(3, 10), torch.randn(3, 5)
    text = (
        ISSUE_REGISTER
        + "prune CustomizedModule sparse_ratio=0.5\n"
        + "quantize CustomizedModule.{p1,p2} quant_dtype=int8\n"
    )
    compression = apply_rules(text, model, [(x, y)])
    masks = compression.masks()["cm"]
    p1_rows = rows(masks["p1"])
    assert p1_rows.float().mean().item() == 0.5
    assert rows(masks["p2"]).float().mean().item() == 0.5
    assert torch.equal(masks["_output_0"].flatten(), p1_rows)  # aligned to p1 rows
    out = model(x, y)
    assert torch.all(out[:, ~p1_rows] == 0)
    quant = compression.quant_params()["cm"]
    assert quant["p1"]["scale"].shape == (20, 1)  # granularity [1, -1]: one scale per row
    assert "CustomizedModule" not in dsl_compress.DEFAULT_REGISTRY[Mode.PRUNE]


# ----- the NNI round trip: the compiled config_list, fed to the NNI-semantics verbs --------------

PURE_PRUNE = (
    "prune Conv2d.weight sparse_ratio=0.5 metric={metric}\n"
    "prune layer1.*.conv*.weight sparse_ratio=0.25 group=backbone metric={metric}\n"
    "prune layer2.0.conv1.weight sparse_ratio=0.75 metric={metric}\n"
    "prune Linear.weight granularity=in_channel metric={metric}\n"
    "prune fc.weight sparse_ratio=0.3 metric={metric}\n"
    "align **.bn*.weight with **.conv*.weight dims=[0]\n"
    "align **.bn*.bias with **.bn*.weight dims=[0]\n"
    "exclude layer2.0.shortcut.**\n"
)


@pytest.mark.parametrize("metric", ["l1", "l2", "fpgm", "level", "random"])
def test_prune_config_list_round_trip_gives_the_same_masks(metric):
    model, batch = example_model("resnet")
    text = PURE_PRUNE.format(metric=metric)
    if metric == "level":
        text = text.replace("granularity=in_channel ", "")
    rules = dsl_compress.parse(text, "t.rules")
    compiled = rules.compile(model)
    ours = apply_rules(text, model, [batch])
    fresh, _ = example_model("resnet")
    theirs = dsl_compress.prune(fresh, compiled.config_list["prune"], metric=metric)
    assert_same_masks(ours, theirs)
    assert len(flat_masks(ours)) == 28  # 9 convs and fc (shortcut excluded), 9 BNs x 2


def test_prune_round_trip_with_a_registered_template():
    text = (
        ISSUE_REGISTER + "prune CustomizedModule sparse_ratio=0.5\nprune cm.p2 sparse_ratio=0.2\n"
    )
    x, y = torch.randn(3, 10), torch.randn(3, 5)
    compiled = dsl_compress.parse(text, "t.rules").compile(CustomNet())
    ours = apply_rules(text, CustomNet(), [(x, y)])
    theirs = dsl_compress.prune(
        CustomNet(), compiled.config_list["prune"], calib=[(x, y)], registry=compiled.registries
    )
    assert_same_masks(ours, theirs)
    assert rows(flat_masks(ours)[("cm", "p2")]).float().mean().item() == pytest.approx(0.8)


PURE_QUANTIZE = (
    "quantize Linear.{weight,_input_,_output_} quant_dtype=int8 quant_scheme=symmetric\n"
    "quantize Conv2d.weight quant_dtype=int4 quant_scheme=affine granularity=out_channel\n"
    "quantize **.conv1.weight quant_dtype=int6\n"
    "quantize ReLU quant_dtype=uint8 quant_scheme=affine\n"
    "quantize fc1.weight granularity=out_channel\n"
)


@pytest.mark.parametrize("name", ["resnet", "cnn", "transformer"])
def test_quantize_config_list_round_trip_gives_the_same_scales(name):
    model, batch = example_model(name)
    rules = dsl_compress.parse(PURE_QUANTIZE, "t.rules")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompressionWarning)
        compiled = rules.compile(model)
    ours = flat_quant(apply_rules(PURE_QUANTIZE, model, [batch]))
    fresh, _ = example_model(name)
    theirs = flat_quant(
        dsl_compress.quantize(fresh, compiled.config_list["quantize"], calib=[batch])
    )
    assert sorted(ours) == sorted(theirs) and ours
    for key, params in ours.items():
        for field in ("scale", "zero_point"):
            assert torch.equal(params[field], theirs[key][field]), (key, field)
        assert params["quant_dtype"] == theirs[key]["quant_dtype"], key


def test_quantize_round_trip_keys_per_model():
    model, batch = example_model("transformer")
    ours = flat_quant(apply_rules(PURE_QUANTIZE, model, [batch]))
    assert ours[("fc1", "weight")]["scale"].shape == (64, 1)  # out_channel from line 5
    assert ours[("fc1", "weight")]["quant_dtype"] == "int8"
    assert ours[("act", "_input_0")]["quant_dtype"] == "uint8"


# ----- statements that match nothing ---------------------------------------------------------------

UNMATCHED = (
    "prune conv*.wieght sparse_ratio=0.5\n"
    "prune conv1.weight sparse_ratio=0.5\n"
    "quantize fc.weight quant_dtype=int8 except fc9\n"
)


@pytest.mark.parametrize("compiled_first", [False, True])
def test_apply_raises_e221_for_every_unmatched_selector_and_leaves_the_model(compiled_first):
    model, _ = example_model("cnn")
    saved = state_copy(model)
    rules = dsl_compress.parse(UNMATCHED, "u.rules")
    source = rules.compile(model).plan if compiled_first else rules
    with pytest.raises(dsl_compress.CompressionError) as caught:
        dsl_compress.apply(source, model)
    found = caught.value.diagnostics
    assert [(d.code, d.span.line, d.span.column) for d in found] == [
        ("E221", 1, 7),
        ("E221", 3, 44),
    ]
    assert "'wieght' is not a target" in found[0].hint and "allow_unmatched=True" in found[0].hint
    assert_same_state(model, saved)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def test_allow_unmatched_applies_the_rest_and_warns_w301():
    model, _ = example_model("cnn")
    rules = dsl_compress.parse(UNMATCHED, "u.rules")
    with pytest.warns(CompressionWarning, match=r"W301") as caught:
        compression = dsl_compress.apply(rules, model, allow_unmatched=True)
    assert sum("W301" in str(w.message) for w in caught) == 2
    assert set(compression.masks()) == {"conv1"}
    assert set(compression.quant_params()) == {"fc"}
