"""Where the linear layers' time goes inside a training step (CPU preset): ``_Linear``'s forward
and backward, re-written here with ``perf_counter`` around each piece (the products, the bias add,
the bias-gradient sum, the reshapes), over 20 steps after 5 warm-up steps.

    python benchmarks/linear_breakdown.py      # appends a JSON line to benchmarks/results/linear_breakdown.jsonl

Compare with ``benchmarks/bench_gemm.py``, which times the same products in a tight loop. The
pieces compute exactly what ``minillm.nn.functional._Linear`` computes.
"""
from __future__ import annotations

import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import minillm.nn.functional as F  # noqa: E402
from bench_gpt import CONFIGS, build_minillm, make_batches  # noqa: E402

seconds = collections.defaultdict(float)


def _timed(name, fn):
    t0 = time.perf_counter()
    out = fn()
    seconds[name] += time.perf_counter() - t0
    return out


def forward(self, x, weight, bias=None):
    x2 = _timed("forward: reshape", lambda: x.reshape(-1, x.shape[-1]))
    y = _timed("forward: product x Wᵀ", lambda: x2 @ weight.T)
    if bias is not None:
        _timed("forward: bias add", lambda: y.__iadd__(bias))
    return y.reshape(*x.shape[:-1], weight.shape[0])


def backward(self, g):
    x, weight, bias = (self.inputs + (None,))[:3]
    g2 = _timed("backward: reshape", lambda: g.reshape(-1, g.shape[-1]))
    gx = _timed("backward: product g W", lambda: (g2 @ weight).reshape(x.shape)) if self.needs_grad(0) else None
    gw = _timed("backward: product gᵀ x", lambda: g2.transpose(0, 1) @ x.reshape(-1, x.shape[-1])) \
        if self.needs_grad(1) else None
    gb = _timed("backward: bias sum", lambda: g2.sum(0)) if bias is not None and self.needs_grad(2) else None
    return gx, gw, gb


def main():
    F._Linear.forward, F._Linear.backward = forward, backward
    cfg = CONFIGS["cpu"]
    batches = make_batches(cfg, 25, seed=10)
    _, _, step, sync = build_minillm(cfg, "cpu", 0.0)
    for x, y in batches[:5]:
        sync(step(x, y))
    seconds.clear()
    t0 = time.perf_counter()
    for x, y in batches[5:]:
        sync(step(x, y))
    step_ms = (time.perf_counter() - t0) / 20 * 1e3
    per_step = {name: s / 20 * 1e3 for name, s in seconds.items()}
    print(f"step {step_ms:.1f} ms; per step:")
    for name, ms in per_step.items():
        print(f"  {name:26s} {ms:6.2f} ms")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "linear_breakdown.jsonl"), "a") as f:
        f.write(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": "cpu",
                            "step_ms": step_ms, "per_step_ms": per_step}) + "\n")


if __name__ == "__main__":
    main()
