"""Minor page faults and system time per training step (CPU preset), minillm with glibc's malloc
as it is and with freed memory kept for reuse (``MINILLM_KEEP_FREED_MEMORY``), and PyTorch.

    python benchmarks/page_faults.py      # appends a JSON line to benchmarks/results/page_faults.jsonl

Each variant in its own process: 5 warm-up steps, then 20 steps counted with ``getrusage``.
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


def child(framework):
    from bench_gpt import CONFIGS, build_minillm, build_torch, make_batches
    cfg = CONFIGS["cpu"]
    batches = make_batches(cfg, 25, seed=10)
    if framework == "minillm":
        _, _, step, sync = build_minillm(cfg, "cpu", 0.0)
    else:
        _, step, sync = build_torch(cfg, "cpu", 0.0, sdpa=True, torch_defaults=True)
    for x, y in batches[:5]:
        sync(step(x, y))
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for x, y in batches[5:]:
        sync(step(x, y))
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    print(json.dumps({"minor_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / 20,
                      "system_ms_per_step": (r1.ru_stime - r0.ru_stime) / 20 * 1e3, "wall_ms_per_step": wall / 20 * 1e3}))


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    from bench_gpt import TORCH_CHILD_ENV
    out = {}
    for name, (framework, env) in VARIANTS.items():
        env = {**os.environ, **(TORCH_CHILD_ENV if framework == "torch" else {}), **env}
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", framework], env=env,
                             capture_output=True, text=True, check=True)
        out[name] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{name:40s} {out[name]['minor_faults_per_step']:8.0f} faults/step  "
              f"{out[name]['system_ms_per_step']:5.1f} ms system/step")
    with open(os.path.join(HERE, "results", "page_faults.jsonl"), "a") as f:
        f.write(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": "cpu",
                            "variants": out}) + "\n")


if __name__ == "__main__":
    main()
