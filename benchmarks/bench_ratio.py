"""minillm vs PyTorch eager *as people run it*: each framework in its own process, alternated.

    python benchmarks/bench_ratio.py --config cpu  --long 200 --short 50 --rounds 5
    python benchmarks/bench_ratio.py --config gpt6 --long 40  --short 10 --rounds 5

PyTorch runs at its defaults: ``F.scaled_dot_product_attention`` (benchmarks/torch_gpt.py with
sdpa=True), its default intra-op threads, float32, ``torch.optim.AdamW`` with its default
implementation choice (no ``foreach`` argument). minillm runs its default path (kernels as
configured by default). PyTorch's process runs with ``bench_gpt.TORCH_CHILD_ENV`` (glibc's malloc
left as it is: its model borrows minillm's config class, and importing minillm would tune it). Both:
same model shape, same batches, AdamW (wd 0.1 on matrices),
gradient clipping at 1.0, dropout 0.

Per-iteration time of one framework in one round = (wall time of a process running ``--long``
steps − wall time of a process running ``--short`` steps) / (long − short): start-up, imports,
model build and the first steps cancel. Rounds alternate which framework goes first. Reports the
median and the spread (min–max) over rounds of each framework and of the ratio of the per-round
times, each process's peak resident memory (VmHWM), and appends everything (machine, versions,
thread settings, BLAS kernel from threadpoolctl, OPENBLAS_* variables, raw rounds) as one JSON line
to ``--json`` (default benchmarks/results/bench_ratio.jsonl). The environment is taken as the user
has it; nothing here sets or unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE / *_NUM_THREADS.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

ENV_KEYS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "MINILLM_FUSED", "MINILLM_NUM_THREADS", "MINILLM_COMPILED", "MINILLM_KEEP_FREED_MEMORY")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return None


def vm_hwm_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def child(args):
    from bench_gpt import CONFIGS, make_batches, build_minillm
    cfg = CONFIGS[args.config]
    batches = make_batches(cfg, args.iters, seed=10)
    info = {}
    if args.child == "minillm":
        _, _, step, sync = build_minillm(cfg, "cpu", 0.0)
    else:
        import torch
        from bench_gpt import build_torch
        _, step, sync = build_torch(cfg, "cpu", 0.0, sdpa=True, torch_defaults=True)
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
        info["torch_mkl"] = torch.backends.mkl.is_available()
        info["torch_parallel_info"] = torch.__config__.parallel_info()
    t0 = time.perf_counter()
    loss = None
    for x, y in batches:
        loss = step(x, y)
    last = sync(loss)
    loop_s = time.perf_counter() - t0
    backend = sys.modules.get("minillm.backend")
    info["malloc_tuned"] = bool(backend and backend._malloc_tuned)   # False in the PyTorch child
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: d.get(k) for k in ("internal_api", "num_threads", "version",
                                                      "architecture", "filepath")} for d in threadpool_info()]
    except ImportError:
        pass
    print(json.dumps({"loop_s": loop_s, "vm_hwm_mib": vm_hwm_mib(), "loss": float(last), **info}))


def run_child(fw, config, iters, env=None):
    """Run ``iters`` steps of ``fw`` in a process of its own (extra environment ``env``); its
    wall time and what the child reported."""
    from bench_gpt import TORCH_CHILD_ENV
    env = {**os.environ, **(TORCH_CHILD_ENV if fw == "torch" else {}), **(env or {})}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", fw, "--config", config, "--iters", str(iters)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
    wall = time.perf_counter() - t0
    return {"wall_s": wall, **json.loads(out)}


def round_arguments(doc, results_file):
    """The options every alternated-rounds benchmark takes: config, long and short step counts,
    rounds, and the JSON-lines file its results are appended to."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["cpu", "gpt6"], default="cpu")
    p.add_argument("--long", type=int, default=200)
    p.add_argument("--short", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", default=os.path.join(HERE, "results", results_file))
    return p


def main():
    p = round_arguments(__doc__, "bench_ratio.jsonl")
    p.add_argument("--note", default="")
    p.add_argument("--child", choices=["minillm", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--iters", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    import numpy, torch
    from bench_gpt import CONFIGS
    n = args.long - args.short
    rounds = []
    for r in range(args.rounds):
        order = ["minillm", "torch"] if r % 2 == 0 else ["torch", "minillm"]
        rec = {"order": order}
        for fw in order:
            long_, short_ = run_child(fw, args.config, args.long), run_child(fw, args.config, args.short)
            rec[fw] = {"ms_per_iter": (long_["wall_s"] - short_["wall_s"]) * 1000 / n,
                       "loop_ms_per_iter": (long_["loop_s"] - short_["loop_s"]) * 1000 / n,
                       "long": long_, "short": short_}
        rec["ratio"] = rec["minillm"]["ms_per_iter"] / rec["torch"]["ms_per_iter"]
        rounds.append(rec)
        print(f"round {r}: minillm {rec['minillm']['ms_per_iter']:.1f} ms/iter, "
              f"torch {rec['torch']['ms_per_iter']:.1f} ms/iter, ratio {rec['ratio']:.3f}", flush=True)

    def summ(xs):
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
    res = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": args.config,
           **CONFIGS[args.config], "dropout": 0.0, "long": args.long, "short": args.short,
           "rounds_n": args.rounds, "note": args.note,
           "machine": {"node": platform.node(), "processor": platform.processor() or platform.machine(),
                       "cpu_count": os.cpu_count(), "cpu_model": _cpu_model(), "platform": platform.platform()},
           "versions": {"python": platform.python_version(), "numpy": numpy.__version__, "torch": torch.__version__},
           "env": {k: os.environ.get(k) for k in ENV_KEYS},
           "torch_defaults": {"sdpa": True, "threads": rounds[0]["torch"]["long"].get("torch_threads"),
                              "interop_threads": rounds[0]["torch"]["long"].get("torch_interop_threads"),
                              "mkl": rounds[0]["torch"]["long"].get("torch_mkl"),
                              "parallel_info": rounds[0]["torch"]["long"].get("torch_parallel_info"),
                              "adamw": "torch.optim.AdamW defaults (no foreach arg)", "dtype": "float32"},
           "threadpools": {fw: rounds[0][fw]["long"].get("threadpools") for fw in ("minillm", "torch")},
           "minillm_ms": summ([r["minillm"]["ms_per_iter"] for r in rounds]),
           "torch_ms": summ([r["torch"]["ms_per_iter"] for r in rounds]),
           "ratio": summ([r["ratio"] for r in rounds]),
           "ratio_of_medians": statistics.median(r["minillm"]["ms_per_iter"] for r in rounds)
           / statistics.median(r["torch"]["ms_per_iter"] for r in rounds),
           "peak_rss_mib": {fw: summ([r[fw]["long"]["vm_hwm_mib"] for r in rounds]) for fw in ("minillm", "torch")},
           "rounds": rounds}
    s = {k: res[k] for k in ("config", "minillm_ms", "torch_ms", "ratio", "ratio_of_medians", "peak_rss_mib", "env",
                             "threadpools")}
    print(json.dumps(s, indent=1))
    with open(args.json, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
