"""The targets of issue #5 against the latest bench/results/*.json, as a markdown table."""

from __future__ import annotations

import json
from typing import Iterator

from measure import RESULTS

Row = tuple[str, str, str, str]


def main() -> None:
    results = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    print("| benchmark | target | measured | met |")
    print("| --- | --- | --- | :---: |")
    for row in _rows(results):
        print("| " + " | ".join(row) + " |")
    dates = sorted({r["machine"].get("date", "?") for r in results.values()})
    print(f"\nResults from {dates[0]} to {dates[-1]}.")


def _rows(results: dict) -> Iterator[Row]:
    yield from _prune_rows(results.get("prune"))
    yield from _quant_rows(results.get("quant"))
    resolve = results.get("resolve")
    if resolve:
        seconds = resolve["seconds"]["total"]
        yield _row(
            "resolve: 100k modules x 1k statements", "< 2 s", f"{seconds:.2f} s", seconds < 2
        )
        if resolve.get("nni_over_ours"):
            yield (
                "resolve: NNI selection + canonicalization",
                "ratio",
                f"NNI {resolve['nni']['seconds']:.0f} s = {resolve['nni_over_ours']:.0f}x ours",
                "-",
            )
    parse = results.get("parse")
    if parse:
        seconds = parse["seconds"]["lint"]
        yield _row(
            "parse + compile + lint, 10k statements", "< 1 s", f"{seconds:.2f} s", seconds < 1
        )
    apply = results.get("apply")
    if apply:
        full = apply["apply (all outputs written)"]
        base = apply["baseline: import, build, save weights"]
        measured = (
            f"{full['seconds']:.2f} s ({full['seconds'] / base['seconds']:.2f}x baseline), "
            f"peak {full['peak_rss_mib']:.0f} MiB"
        )
        yield ("apply end to end, bundled ResNet", "tracked", measured, "-")


def _prune_rows(prune: dict | None) -> Iterator[Row]:
    if not prune or "ratio_ours_floor" not in prune["rows"][0]:
        return
    floors = {"l1 out_channel": 2.0, "level element-wise": 2.0, "l1 global group": 3.0}
    for row in prune["rows"]:
        case, floor = row["case"], floors.get(row["case"])
        if floor is not None:
            ratio = row["ratio_ours_floor"]
            yield _row(f"prune {case}", f"<= {floor:g}x floor", f"{ratio:.2f}x", ratio <= floor)
        step, whole = row.get("ratio_nni_generate_ours"), row.get("ratio_nni_whole_ours")
        if step is None:
            continue
        measured = f"{whole:.1f}x NNI's whole job ({step:.1f}x its mask step alone)"
        if case == "l1 global group":
            yield (f"prune {case}", "ratio vs NNI", measured, "-")
        else:  # ours is the whole job (prune + restore): NNI's whole job is like for like
            yield _row(f"prune {case}", ">= 5x faster than NNI", measured, whole >= 5)
    for memory in prune.get("memory", []):
        yield from _memory_rows(memory)


def _memory_rows(memory: dict) -> Iterator[Row]:
    case, model = memory["case"], memory["model_mib"]
    added = memory["ours_added_mib"]
    measured = f"{added:.0f} MiB for a {model:.0f} MiB model"
    yield _row(f"peak memory, {case}", "added < half the model", measured, added < model / 2)
    if memory.get("nni_peak_mib"):
        ours, nni = memory["ours_peak_mib"], memory["nni_peak_mib"]
        measured = f"{ours:.0f} vs NNI {nni:.0f} MiB"
        yield _row(f"peak memory, {case}", "process below NNI's", measured, ours < nni)


def _quant_rows(quant: dict | None) -> Iterator[Row]:
    if not quant:
        return
    for row in quant["rows"]:
        ratio = row["ours_over_float"]
        yield _row(
            f"quantized forward, {row['model']}", "<= 1.5x float", f"{ratio:.2f}x", ratio <= 1.5
        )
        if row.get("nni_over_ours_by_float"):
            measured = (
                f"NNI {row['nni_over_float']:.2f}x float, {row['nni_over_ours_by_float']:.1f}x ours"
            )
            yield (f"quantized forward, {row['model']}", "ratio vs NNI", measured, "-")


def _row(name: str, target: str, measured: str, met: bool) -> Row:
    return (name, target, measured, "yes" if met else "**no**")


if __name__ == "__main__":
    main()
