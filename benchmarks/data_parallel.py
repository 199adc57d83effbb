"""Data-parallel training: measured step time and all-reduce share on this machine, and the ring
all-reduce cost model for larger machines (issue 14).

    python benchmarks/data_parallel.py                 # measure 1 and 2 processes, then the model
    python benchmarks/data_parallel.py --model-only    # the cost-model table alone
    mpirun -n 2 python benchmarks/data_parallel.py --measure OUT.json   # one measurement (internal)

Measured (``--measure``): the CPU preset GPT (4 layers, 4 heads, 128 wide, block 64, global batch
12) trained by ``Trainer``'s own step (``TrainingStep`` with the bucketed ``GradientReducer``);
after ``--warmup`` steps, ``--steps`` steps are timed on every rank: the step time (rank 0's
mean; the slowest rank's too), the time inside the all-reduce collectives, and a bare
``Allreduce`` of the gradient's bytes (and of 8 bytes, the latency) repeated 50 times.

Model (``cost_model``): the ring all-reduce of ``S`` bytes over ``N`` ranks sends ``N−1`` chunks of
``S/N`` bytes in a reduce-scatter and ``N−1`` more in an all-gather, so with link bandwidth ``B``
(bytes/s per direction) and per-message latency ``α``

    T_ring(N, S) = 2(N−1)/N · S / B + 2(N−1) · α

(Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC
69(2), 2009; Thakur, Rabenseifner & Gropp, "Optimization of collective communication operations
in MPICH", IJHPCA 19(1), 2005; NCCL's nccl-tests ``doc/PERFORMANCE.md``: bus bandwidth = algorithm
bandwidth × 2(n−1)/n for all-reduce). The step time is ``T_compute + T_ring`` when the all-reduce
follows the backward pass (minillm's ``GradientReducer``) and ``max(T_compute, T_ring)`` at best
when buckets are reduced while the backward pass runs (PyTorch DDP's overlap); the scaling
efficiency (weak scaling: a fixed per-GPU batch) is ``T_compute / T_step``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

# ---------------------------------------------------------------- the cost model's assumptions
#: links: (name, bandwidth per direction in bytes/s, per-step latency α in s)
LINKS = [
    ("NVLink 4 (H100 SXM), 450 GB/s", 450e9, 3e-6),
    ("400 Gb/s network (NDR InfiniBand)", 400e9 / 8, 10e-6),
    ("100 Gb/s network (EDR / 100 GbE)", 100e9 / 8, 10e-6),
]
GPUS = [8, 64, 512]
H100_BF16_DENSE = 989e12     # FLOP/s, H100 SXM dense BF16 (NVIDIA datasheet)
MFU = 0.40                   # model FLOPs utilization assumed for the 100M GPT


def ring_allreduce_seconds(n: int, nbytes: float, bandwidth: float, latency: float) -> float:
    """T_ring(N, S) = 2(N−1)/N · S/B + 2(N−1)·α (seconds); 0 for one rank."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def gpu_preset_params() -> int:
    """Parameters of the GPU preset GPT (6 layers, 6 heads, 384 wide, block 256, the 65-character
    vocabulary of tiny Shakespeare)."""
    from minillm.models.gpt import GPT, GPTConfig
    return GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0)).num_parameters()


def cost_model() -> dict:
    """The table rows: for each model, link and GPU count, the predicted all-reduce time, step
    time (no overlap and full overlap) and scaling efficiency."""
    p_small = gpu_preset_params()
    tokens_100m = 8 * 1024        # per GPU per step: 8 sequences of 1024 tokens
    models = [
        {"name": f"GPU preset GPT ({p_small / 1e6:.1f}M params), batch 64 × 256 per GPU",
         "params": p_small, "compute_s": 0.1037,
         "compute_source": "measured: minillm on one H100, 103.7 ms/iter (BENCHMARKS.md, GPU section)"},
        {"name": "100M-param GPT, 8 × 1024 tokens per GPU", "params": 100e6,
         "compute_s": 6 * 100e6 * tokens_100m / (H100_BF16_DENSE * MFU),
         "compute_source": f"estimated: 6·P·tokens = {6 * 100e6 * tokens_100m:.2e} FLOP at {MFU:.0%} of "
                           f"{H100_BF16_DENSE / 1e12:.0f} TFLOP/s (H100 BF16 dense)"},
    ]
    rows = []
    for m in models:
        nbytes = 4 * m["params"]     # float32 gradients
        for link, bw, lat in LINKS:
            for n in GPUS:
                t_ar = ring_allreduce_seconds(n, nbytes, bw, lat)
                t_seq, t_ovl = m["compute_s"] + t_ar, max(m["compute_s"], t_ar)
                rows.append({"model": m["name"], "params": m["params"], "grad_bytes": nbytes, "link": link,
                             "bandwidth_Bps": bw, "latency_s": lat, "gpus": n, "compute_ms": 1e3 * m["compute_s"],
                             "allreduce_ms": 1e3 * t_ar, "step_ms_no_overlap": 1e3 * t_seq,
                             "efficiency_no_overlap": m["compute_s"] / t_seq, "step_ms_overlap": 1e3 * t_ovl,
                             "efficiency_overlap": m["compute_s"] / t_ovl, "compute_source": m["compute_source"]})
    return {"formula": "T_ring(N,S) = 2(N-1)/N * S/B + 2(N-1)*alpha", "rows": rows}


def model_markdown(model: dict) -> str:
    lines = ["| model | link | GPUs | all-reduce ms | step ms (after backward) | efficiency | step ms (overlapped) "
             "| efficiency |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in model["rows"]:
        lines.append(f"| {r['model']} | {r['link']} | {r['gpus']} | {r['allreduce_ms']:.2f} | "
                     f"{r['step_ms_no_overlap']:.1f} | {r['efficiency_no_overlap']:.0%} | {r['step_ms_overlap']:.1f} | "
                     f"{r['efficiency_overlap']:.0%} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the measurement (one world)
def measure(out_path: str, steps: int, warmup: int) -> None:
    from minillm import distributed
    from minillm.train import Trainer
    from minillm.train_config import TrainConfig
    if True:   # the out-dir is part of the settings every rank must share; nothing is written there
        tmp = Path(tempfile.gettempdir()) / "minillm-data-parallel-bench"
        cfg = TrainConfig(out_dir=str(tmp / "run"), sample_tokens=0, progress=False, overwrite=True)  # cpu preset
        trainer = Trainer(cfg, log=None)
        group = trainer.dist
        times, comm = [], []
        for it in range(warmup + steps):
            before = trainer.grad_reducer.seconds if trainer.grad_reducer else 0.0
            distributed.barrier(group) if group.world_size > 1 else None
            t0 = time.perf_counter()
            trainer.train_step(it, *trainer.get_micro_batches())
            dt = time.perf_counter() - t0
            if it >= warmup:
                times.append(dt)
                comm.append((trainer.grad_reducer.seconds if trainer.grad_reducer else 0.0) - before)
        n_params = trainer.model.num_parameters()
        # a bare all-reduce of the gradient's bytes, and of 8 bytes (the latency)
        bare = {}
        for label, size in (("grad", n_params), ("8 bytes", 2)):
            buf = np.ones(size, dtype=np.float32)
            reps = []
            for _ in range(50):
                distributed.barrier(group) if group.world_size > 1 else None
                t0 = time.perf_counter()
                group.all_reduce_(buf)
                reps.append(time.perf_counter() - t0)
            bare[label] = float(np.median(reps[5:]))
        per_rank = group.all_gather_object({"step_ms": 1e3 * float(np.mean(times)),
                                            "allreduce_ms": 1e3 * float(np.mean(comm))})
    if group.rank == 0:
        result = {"world_size": group.world_size, "backend": group.name, "params": n_params,
                  "grad_bytes": 4 * n_params, "global_batch": cfg.batch_size, "steps": steps,
                  "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                  "step_ms": per_rank[0]["step_ms"], "allreduce_ms": per_rank[0]["allreduce_ms"],
                  "allreduce_share": per_rank[0]["allreduce_ms"] / per_rank[0]["step_ms"],
                  "slowest_rank_step_ms": max(r["step_ms"] for r in per_rank),
                  "bare_allreduce_grad_ms": 1e3 * bare["grad"], "bare_allreduce_8B_us": 1e6 * bare["8 bytes"],
                  "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
        Path(out_path).write_text(json.dumps(result, indent=2))


def _spawn(n: int, threads: str, steps: int, warmup: int) -> dict:
    from minillm.distributed import mpirun_command
    out = Path(tempfile.mkdtemp()) / "m.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", str(out), "--steps", str(steps),
           "--warmup", str(warmup)]
    if n > 1:
        argv, env = mpirun_command(n)
        cmd = argv + cmd
    else:
        env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    else:
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.pop(k, None)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--measure", metavar="OUT_JSON", help="measure in this world and write OUT_JSON (rank 0)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--model-only", action="store_true")
    ap.add_argument("--results-dir", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.measure:
        measure(args.measure, args.steps, args.warmup)
        return 0
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    measured = []
    if not args.model_only:
        for n, threads in ((1, ""), (1, "1"), (2, "1")):
            measured.append(_spawn(n, threads, args.steps, args.warmup))
            print(json.dumps(measured[-1]))
    model = cost_model()
    (results / "data_parallel.json").write_text(json.dumps({"measured": measured, "model": model}, indent=2))
    md = ["## measured (this machine)", "", "| processes | BLAS threads each | step ms (rank 0) | slowest rank ms | "
          "all-reduce ms/step | share | bare all-reduce of the gradient, ms | 8-byte all-reduce, µs | load avg |",
          "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for m in measured:
        md.append(f"| {m['world_size']} | {m['omp_num_threads'] or 'default'} | {m['step_ms']:.1f} | "
                  f"{m['slowest_rank_step_ms']:.1f} | {m['allreduce_ms']:.2f} | {m['allreduce_share']:.1%} | "
                  f"{m['bare_allreduce_grad_ms']:.2f} | {m['bare_allreduce_8B_us']:.1f} | "
                  f"{', '.join(f'{x:.1f}' for x in m['load_average'])} |")
    md += ["", "## ring all-reduce model", "", model["formula"], "", model_markdown(model), ""]
    (results / "data_parallel.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
