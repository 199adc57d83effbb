"""The matrix products of one CPU-preset training step, NumPy (its OpenBLAS) against PyTorch (its
MKL), each framework in its own process, so that the products' share of the gap is measured apart
from everything minillm adds around them.

    python benchmarks/bench_gemm.py                  # both frameworks, default threads, 3 rounds
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_gemm.py   # one thread each

The shapes are the linear layers of the CPU preset (batch 12 × block 64 = 768 rows, 128 dims):
forward x Wᵀ of the q/k/v, output, MLP-in, MLP-out and LM-head layers, and the backward's weight and
input gradients of the widest ones. Prints µs per product and the total of one pass over the
shapes, per round; appends a JSON line to benchmarks/results/bench_gemm.jsonl.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = [((768, 128), (128, 384)), ((768, 128), (128, 128)), ((768, 128), (128, 512)), ((768, 512), (512, 128)),
          ((768, 128), (128, 65)), ((384, 768), (768, 128)), ((512, 768), (768, 128)), ((768, 384), (384, 128))]


def child(framework: str) -> None:
    import numpy as np
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal(a).astype(np.float32), rng.standard_normal(b).astype(np.float32)) for a, b in SHAPES]
    if framework == "torch":
        import torch
        pairs = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in pairs]
        product = torch.mm
    else:
        import minillm  # noqa: F401  (its allocator setting, as in a training step)
        product = np.matmul
    per_shape = []
    for a, b in pairs:
        for _ in range(20):
            product(a, b)
        n = 300
        t0 = time.perf_counter()
        for _ in range(n):
            product(a, b)
        per_shape.append((time.perf_counter() - t0) / n * 1e6)
    print(json.dumps({"us_per_shape": per_shape, "total_ms": sum(per_shape) / 1000}))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    rounds = []
    for r in range(3):
        order = ["numpy", "torch"] if r % 2 == 0 else ["torch", "numpy"]
        rec = {}
        for fw in order:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", fw], capture_output=True,
                                 text=True, check=True).stdout
            rec[fw] = json.loads(out.strip().splitlines()[-1])
        rounds.append(rec)
        print(f"round {r}: numpy {rec['numpy']['total_ms']:.2f} ms, torch {rec['torch']['total_ms']:.2f} ms", flush=True)
    summary = {fw: statistics.median(rec[fw]["total_ms"] for rec in rounds) for fw in ("numpy", "torch")}
    env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    print(json.dumps({"median_total_ms": summary, "env": env}))
    with open(os.path.join(HERE, "results", "bench_gemm.jsonl"), "a") as f:
        f.write(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "shapes": SHAPES,
                            "env": env, "median_total_ms": summary, "rounds": rounds}) + "\n")


if __name__ == "__main__":
    main()
