"""Issue 11's export benchmark: `apply --format compressed-tensors` (W4A16: int4 symmetric, group
128, lm_head kept) of a Llama-shaped bf16 model of a few GB, against writing the same model with
plain `save_pretrained` (its save alone, timed inside the process that built the model) and
against `apply --stream` to our own layout; each a fresh process: wall time, peak RSS, and the
peak above an import-only process. The exports' wall times include their process's start
(imports, the skeleton from config.json); the save alone does not.

The model is built from a config (seeded, nothing downloaded) and saved once with
save_pretrained, timed there: that process holds the whole model, as any save_pretrained
does. The exports read that folder.

    python bench/bench_export.py                 # about 2 GB in bf16
    python bench/bench_export.py --size 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench_checkpoint import WRAPPER, Figures, measure
from measure import print_table, write_results

MIB = 2**20
HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, VOCAB = 2048, 5632, 16, 4, 32000
RULES = """\
# W4A16: int4 symmetric weights in groups of 128 inputs; lm_head stays as it is.
quantize Linear.weight quant_dtype=int4 quant_scheme=symmetric granularity=[1, 128];
exclude lm_head;
"""

# Builds the model from its config in bf16 (seeded) and saves it; writes the save's seconds.
SAVE = """\
import json, sys, time, torch, transformers
folder, layers, timing = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
config = transformers.LlamaConfig(hidden_size={hidden}, intermediate_size={intermediate},
    num_attention_heads={heads}, num_key_value_heads={kv}, vocab_size={vocab},
    num_hidden_layers=layers, tie_word_embeddings=False, torch_dtype="bfloat16")
with torch.device("cpu"):
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
start = time.perf_counter()
model.save_pretrained(folder)
open(timing, "w").write(json.dumps(time.perf_counter() - start))
""".format(hidden=HIDDEN, intermediate=INTERMEDIATE, heads=HEADS, kv=KV_HEADS, vocab=VOCAB)


def layers_for(gigabytes: float) -> int:
    """Decoder layers for a bf16 model of about ``gigabytes`` (decimal)."""
    head_dim = HIDDEN // HEADS
    attention = 2 * HIDDEN * HIDDEN + 2 * HIDDEN * KV_HEADS * head_dim
    layer = attention + 3 * HIDDEN * INTERMEDIATE
    embeddings = 2 * VOCAB * HIDDEN
    return max(1, round((gigabytes * 1e9 / 2 - embeddings) / layer))


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.safetensors"))


def run(size: float, work: Path) -> dict:
    wrapper, report = work / "wrapper.py", work / "peaks.txt"
    wrapper.write_text(WRAPPER)
    (work / "save.py").write_text(SAVE)
    (work / "w4a16.rules").write_text(RULES)
    source, layers = work / "source", layers_for(size)
    wrapped = [sys.executable, str(wrapper), str(report)]
    timing = work / "save_seconds.json"
    save = [*wrapped, "-f", str(work / "save.py"), str(source), str(layers), str(timing)]
    saved = measure(save, report)
    if saved.error:
        raise SystemExit(f"save_pretrained failed: {saved.error}")
    save_alone = Figures(json.loads(timing.read_text()), saved.peak_mib)
    floor = measure([*wrapped, "-c", IMPORTS], report)
    model_bytes = folder_bytes(source)
    apply = [*wrapped, "-m", "dsl_compress", "apply", str(work / "w4a16.rules")]
    apply += ["--model", f"hf:{source}"]
    variants = {
        "imports only (floor)": floor,
        "save_pretrained (the save alone)": save_alone,
        "save_pretrained process (build + save)": saved,
        "apply --format compressed-tensors": measure(
            apply + ["--format", "compressed-tensors", "--out", str(work / "ct")], report
        ),
        "apply --stream (own layout)": measure(
            apply + ["--stream", "--out", str(work / "own")], report
        ),
    }
    written = folder_bytes(work / "ct") if (work / "ct").exists() else 0
    return {"layers": layers, "model_bytes": model_bytes, "ct_bytes": written, **variants}


# What an export process imports before it reads anything: its memory floor.
IMPORTS = "import torch, transformers, dsl_compress.cli.main, dsl_compress.io.ct_folder"


def rows_of(found: dict) -> list[list[str]]:
    model_mib = found["model_bytes"] / MIB
    base: Figures = found["save_pretrained (the save alone)"]
    floor: Figures = found["imports only (floor)"]
    rows = []
    for name, figures in found.items():
        if not isinstance(figures, Figures) or figures is floor:
            continue
        if figures.error:
            rows.append([name, figures.error, "", "", ""])
            continue
        above = figures.peak_mib - floor.peak_mib
        rows.append(
            [
                name,
                f"{figures.seconds:.1f} s",
                f"{figures.seconds / base.seconds:.2f}x",
                f"{figures.peak_mib:.0f} MiB",
                f"{above:.0f} MiB = {above / model_mib:.2f}x model",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=2.0, help="model size in GB (bf16)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dsl-compress-export-"))
    try:
        found = run(args.size, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    model_mib, ct_mib = found["model_bytes"] / MIB, found["ct_bytes"] / MIB
    print(
        f"Llama-shaped bf16 model: {found['layers']} layers, {model_mib:.0f} MiB; "
        f"compressed-tensors W4A16 folder: {ct_mib:.0f} MiB"
    )
    floor = found["imports only (floor)"].peak_mib
    print(f"import floor (torch, transformers, dsl_compress): {floor:.0f} MiB")
    header = ["variant", "wall", "vs the save alone", "peak RSS", "above the floor"]
    print_table(header, rows_of(found))
    figures = {
        name: vars(value) if isinstance(value, Figures) else value for name, value in found.items()
    }
    write_results("export", {"size_gb": args.size, **json.loads(json.dumps(figures))})


if __name__ == "__main__":
    main()
