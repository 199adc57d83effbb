"""What each speed lever is worth: minillm's training step under environment switches, each variant
in its own processes, the variants alternated round by round (same method as bench_ratio.py).

    python benchmarks/bench_levers.py --config cpu --long 200 --short 50 --rounds 5

Variants (environment of the child process; everything else at its defaults):

* ``all on``: the default (compiled loops where numba is installed, freed memory kept for reuse);
* ``MINILLM_COMPILED=0``: NumPy's passes instead of the compiled loops (kernels/compiled.py);
* ``MINILLM_KEEP_FREED_MEMORY=0``: glibc's malloc left as it is (backend.keep_freed_memory_for_reuse);
* ``both off``: both of the above;
* ``MINILLM_FUSED=0``: no fused kernels at all, the plain formulas (the textbook path);
* ``MINILLM_NUM_THREADS=1``: minillm's own kernels on one thread (BLAS keeps its threads);
* ``OPENBLAS_NUM_THREADS=1``: BLAS on one thread (minillm's kernels keep theirs).

Per-iteration time = (wall time of a --long run − that of a --short run) / (long − short); the
median and the spread over rounds are printed and appended as one JSON line to ``--json``
(default benchmarks/results/bench_levers.jsonl), with the raw rounds.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_ratio import round_arguments, run_child  # noqa: E402

VARIANTS = {
    "all on": {},
    "MINILLM_COMPILED=0": {"MINILLM_COMPILED": "0"},
    "MINILLM_KEEP_FREED_MEMORY=0": {"MINILLM_KEEP_FREED_MEMORY": "0"},
    "both off": {"MINILLM_COMPILED": "0", "MINILLM_KEEP_FREED_MEMORY": "0"},
    "MINILLM_FUSED=0": {"MINILLM_FUSED": "0"},
    "MINILLM_NUM_THREADS=1": {"MINILLM_NUM_THREADS": "1"},
    "OPENBLAS_NUM_THREADS=1": {"OPENBLAS_NUM_THREADS": "1"},
}


def main():
    p = round_arguments(__doc__, "bench_levers.jsonl")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    n = args.long - args.short
    rounds = []
    for r in range(args.rounds):
        order = args.variants if r % 2 == 0 else list(reversed(args.variants))
        rec = {}
        for name in order:
            long_ = run_child("minillm", args.config, args.long, VARIANTS[name])
            short_ = run_child("minillm", args.config, args.short, VARIANTS[name])
            rec[name] = {"ms_per_iter": (long_["wall_s"] - short_["wall_s"]) * 1000 / n,
                         "vm_hwm_mib": long_["vm_hwm_mib"], "loss": long_["loss"]}
        rounds.append(rec)
        print(f"round {r}: " + ", ".join(f"{k} {v['ms_per_iter']:.1f}" for k, v in rec.items()), flush=True)
    summary = {}
    for name in args.variants:
        xs = [rec[name]["ms_per_iter"] for rec in rounds]
        summary[name] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
                         "peak_rss_mib": statistics.median(rec[name]["vm_hwm_mib"] for rec in rounds),
                         "final_loss": rounds[0][name]["loss"]}
    print(json.dumps(summary, indent=1))
    import numpy
    res = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": args.config, "long": args.long,
           "short": args.short, "numpy": numpy.__version__, "summary": summary, "rounds": rounds}
    with open(args.json, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
