"""The benchmark's generated rules files, torch-free: a benchmark that only lints imports no torch,
so the lint processes it starts do not inherit a torch-sized resident set (ru_maxrss counts it)."""

from __future__ import annotations

import random

STAGES = ("stem", "encoder", "decoder", "head")


def rules_text(statements: int, blocks: int = 100, seed: int = 0) -> str:
    """A rules file of ``statements`` statements in the mix a real large file has.

    Types, name patterns with `*`/`**`/`{a,b}`, whole-name regexes, `in` scopes, aligns,
    quantize and distill statements, excludes, lets and comments, over module names of
    :func:`wide_model` (``stage.block<i>.{conv,bn,fc}<j>``).
    """
    rng = random.Random(seed)
    lines = ["# generated benchmark rules", "let ratio = 0.5", "let bits = int8"]
    makers = (_prune_type, _prune_pattern, _prune_regex, _prune_scoped, _align, _quantize)
    makers += (_prune_exact, _quantize_pattern, _exclude, _prune_set)
    while len(lines) - 1 < statements:
        lines.append(rng.choice(makers)(rng, blocks))
    return "\n".join(lines[: statements + 1]) + "\n"


def _block(rng: random.Random, blocks: int) -> str:
    return f"{rng.choice(STAGES)}.block{rng.randrange(blocks)}"


def _ratio(rng: random.Random) -> str:
    return rng.choice(("ratio", f"{rng.randrange(1, 19) / 20:g}"))


def _prune_type(rng, blocks) -> str:
    kind = rng.choice(("Conv2d", "Linear"))
    return f"prune {kind}.weight sparse_ratio={_ratio(rng)} granularity=out_channel metric=l1"


def _prune_pattern(rng, blocks) -> str:
    return f"prune {_block(rng, blocks)}.conv*.weight sparse_ratio={_ratio(rng)}  # one block"


def _prune_exact(rng, blocks) -> str:
    j = rng.randrange(2)
    return f"prune {_block(rng, blocks)}.conv{j}.weight sparse_ratio={_ratio(rng)} metric=l2"


def _prune_set(rng, blocks) -> str:
    stage = rng.choice(STAGES)
    return f"prune {stage}.block{rng.randrange(blocks)}.{{conv0,conv1}}.weight max_sparse_ratio=0.9"


def _prune_regex(rng, blocks) -> str:
    stage = rng.choice(STAGES)
    return (
        f'prune re"{stage}\\.block{rng.randrange(blocks)}[0-9]*\\.fc[01]".weight sparse_ratio=0.3'
    )


def _prune_scoped(rng, blocks) -> str:
    return f"prune Linear.weight in {rng.choice(STAGES)}.** sparse_ratio={_ratio(rng)} group=g{rng.randrange(4)}"


def _align(rng, blocks) -> str:
    block = _block(rng, blocks)
    return f"align {block}.bn*.weight with {block}.conv*.weight dims=[0]"


def _quantize(rng, blocks) -> str:
    if rng.random() < 0.5:
        return (
            "quantize Linear.weight quant_dtype=bits quant_scheme=symmetric granularity=out_channel"
        )
    return "quantize Linear.{_input_,_output_} quant_dtype=bits quant_scheme=affine"


def _quantize_pattern(rng, blocks) -> str:
    return f"quantize {_block(rng, blocks)}.fc*.weight quant_dtype=int4 quant_scheme=affine"


def _exclude(rng, blocks) -> str:
    return f"exclude {_block(rng, blocks)}.fc1 from {rng.choice(('prune', 'quantize'))}"
