"""Minor page faults and system time per training step, minillm with glibc's malloc as it is and
with freed memory kept for reuse (``MINILLM_KEEP_FREED_MEMORY``), and PyTorch.

    python benchmarks/page_faults.py                 # CPU preset
    python benchmarks/page_faults.py --config gpt6   # 6/6/384, block 256, batch 12

Appends a JSON line to benchmarks/results/page_faults.jsonl. Each variant in its own process:
a few warm-up steps, then the counted steps (20 for the CPU preset, 5 for gpt6), with ``getrusage``.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

VARIANTS = {"minillm": ("minillm", {}), "minillm, MINILLM_KEEP_FREED_MEMORY=0": ("minillm", {"MINILLM_KEEP_FREED_MEMORY": "0"}),
            "PyTorch": ("torch", {})}


STEPS = {"cpu": (5, 20), "gpt6": (2, 5)}   # (warm-up, counted) steps


def child(framework, config):
    from bench_gpt import CONFIGS, build_minillm, build_torch, make_batches
    cfg = CONFIGS[config]
    warmup, steps = STEPS[config]
    batches = make_batches(cfg, warmup + steps, seed=10)
    if framework == "minillm":
        _, _, step, sync = build_minillm(cfg, "cpu", 0.0)
    else:
        _, step, sync = build_torch(cfg, "cpu", 0.0, sdpa=True, torch_defaults=True)
    for x, y in batches[:warmup]:
        sync(step(x, y))
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for x, y in batches[warmup:]:
        sync(step(x, y))
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    print(json.dumps({"minor_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
                      "system_ms_per_step": (r1.ru_stime - r0.ru_stime) / steps * 1e3,
                      "wall_ms_per_step": wall / steps * 1e3}))


def malloc_settings():
    """The thresholds minillm sets (bytes), so that a results line says which setting it measured."""
    from minillm import backend
    return {"mmap_threshold": backend.GLIBC_MMAP_THRESHOLD_MAX,
            "trim_threshold": backend.GLIBC_TRIM_THRESHOLD}


def main():
    import argparse
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(STEPS), default="cpu")
    p.add_argument("--child", choices=["minillm", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.config)
    from bench_gpt import TORCH_CHILD_ENV
    out = {}
    for name, (framework, env) in VARIANTS.items():
        env = {**os.environ, **(TORCH_CHILD_ENV if framework == "torch" else {}), **env}
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "--config", args.config,
                              "--child", framework], env=env,
                             capture_output=True, text=True, check=True)
        out[name] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{name:40s} {out[name]['minor_faults_per_step']:8.0f} faults/step  "
              f"{out[name]['system_ms_per_step']:5.1f} ms system/step")
    with open(os.path.join(HERE, "results", "page_faults.jsonl"), "a") as f:
        f.write(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": args.config,
                            "malloc": malloc_settings(), "variants": out}) + "\n")


if __name__ == "__main__":
    main()
