"""NNI 3.0 peer of bench_quant.py: float and PtqQuantizer-wrapped forward times of one model, one process.

Run with NNI's interpreter by ``bench/nni_venv.run_nni_job``. Arguments: model name (from
``bench/quant_models.py``), weights file (``torch.save(state_dict)``), repeats, rounds, torch
threads, calibration batch count, and a file to write the quantized output of batch 0 to.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nni  # noqa: E402
from measure import interleaved  # noqa: E402
from nni.compression.quantization import PtqQuantizer  # noqa: E402
from nni.compression.utils import TorchEvaluator  # noqa: E402
from quant_models import CONFIG_LIST, batches, build  # noqa: E402


def calibrated(model: torch.nn.Module, calib: list[torch.Tensor]) -> PtqQuantizer:
    """PTQ as NNI runs it: the evaluator's training loop feeds the batches (no optimizer step)."""

    def training_func(
        model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None
    ):
        with torch.no_grad():
            for batch in calib[: max_steps or len(calib)]:
                model(batch)

    def evaluating_func(model) -> float:
        with torch.no_grad():
            model(calib[0])
        return 0.0

    optimizer = nni.trace(torch.optim.SGD)(model.parameters(), lr=0.0)
    evaluator = TorchEvaluator(
        training_func,
        optimizer,
        lambda batch, model: model(batch).sum(),
        evaluating_func=evaluating_func,
    )
    quantizer = PtqQuantizer(model, [dict(c) for c in CONFIG_LIST], evaluator)
    quantizer.compress(len(calib), None)
    return quantizer


def main(
    name: str, weights: str, repeats: str, rounds: str, threads: str, calib: str, out: str
) -> None:
    torch.set_num_threads(int(threads))
    state = torch.load(weights, weights_only=True)
    plain, wrapped = build(name), build(name)
    plain.load_state_dict(state)
    wrapped.load_state_dict(state)
    data = batches(name, int(calib))
    calibrated(wrapped, data)
    wrapped.eval()
    x = data[0]
    with torch.no_grad():
        torch.save(wrapped(x), out)
        times = interleaved(
            {"float": lambda: plain(x), "quant": lambda: wrapped(x)}, int(repeats), int(rounds)
        )
    print(
        json.dumps(
            {
                "nni": nni.__version__,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                **times,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
