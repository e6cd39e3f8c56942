#!/usr/bin/env bash
# The CUDA checks a session runs when it is lent a GPU machine (one call, about 5 minutes):
# simulated-quantization forward ratios per dtype (issue 9's target: <= 1.3x float, fused not
# slower), the dtype matrix tests on CUDA, and CUDA tensors through the shard writer.
# Needs the lark and interegular wheels in .whl/ (see bench/README.md) and $OUT for results.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 240 python3 bench/bench_quant_dtypes.py --device cuda --threads 16 --rounds 8 \
    --models llm_mlp mlp transformer 2>&1 | tee "$OUT/quant_dtypes_cuda.txt"
cp bench/results/quant_dtypes_cuda.json "$OUT/" 2>/dev/null
timeout 150 python3 -m pytest -p no:cacheprovider -q tests/test_dtype_matrix.py \
    tests/test_shard_writer.py 2>&1 | tail -8 | tee "$OUT/tests.txt"
timeout 60 python3 - <<'PY' 2>&1 | tee "$OUT/shards_cuda.txt"
import tempfile, torch
from pathlib import Path
from safetensors.torch import load_file
from dsl_compress.io.shard_writer import write_safetensors
tensors = {
    "f32": torch.randn(64, 33, device="cuda"),
    "bf16": torch.randn(5000, 1000, device="cuda").to(torch.bfloat16),  # ~10 MB
    "big": torch.randn(5, 1 << 22, device="cuda"),  # 80 MB: several chunks
    "mask": torch.rand(300, 7, device="cuda") > 0.5,
    "strided": torch.randn(40, 60, device="cuda").t(),
}
with tempfile.TemporaryDirectory() as folder:
    files = write_safetensors(Path(folder), "m", tensors, max_shard_size=10_000)
    read = {}
    for f in files:
        if f.suffix == ".safetensors":
            read.update(load_file(str(f)))
    ok = all(torch.equal(read[k], v.cpu()) for k, v in tensors.items())
    print("cuda tensors through the shard writer:", "equal" if ok else "DIFFER", len(files), "files")
PY
