"""Where a training step's time goes, minillm vs PyTorch eager (defaults, SDPA), per op category.

    python benchmarks/profile_ops.py --config cpu --steps 20

Each framework in its own process (this script re-runs itself with --child). minillm: its
``OpProfiler`` (every Function forward and backward, by class). PyTorch: ``torch.profiler``
self CPU time of every op, by name. Both: categories matmul / attention / GELU / LayerNorm /
cross-entropy / other ops, plus the optimizer phase (zero_grad, clip_grad_norm_, AdamW step,
timed with perf_counter) and "Python / framework overhead" = wall time of forward+backward under
the profiler minus the ops' time. Also the unprofiled forward+backward and optimizer times, so the
profilers' own overhead is visible. Appends a JSON line to benchmarks/results/profile_ops.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

CATS = ["matmul", "attention", "GELU", "LayerNorm", "cross-entropy", "other ops"]
MINILLM = {"MatMul": "matmul", "Linear": "matmul", "Attention": "attention", "PackedSelfAttention": "attention", "GELU": "GELU",
           "LayerNorm": "LayerNorm", "CrossEntropy": "cross-entropy", "LogSoftmax": "cross-entropy"}


def torch_cat(name):
    n = name.lower().replace("_", "")
    if "scaleddotproduct" in n or "flashattention" in n or "attention" in n:
        return "attention"
    if any(k in n for k in ("aten::mm", "addmm", "bmm", "matmul", "linear", "mmbackward")):
        return "matmul"
    if "gelu" in n:
        return "GELU"
    if "layernorm" in n:
        return "LayerNorm"
    if any(k in n for k in ("logsoftmax", "nllloss", "crossentropy")):
        return "cross-entropy"
    return "other ops"


from bench_gpt import TORCH_CHILD_ENV  # noqa: E402


def child(fw, config, steps, warmup):
    from bench_gpt import CONFIGS, make_batches
    cfg = CONFIGS[config]
    batches = make_batches(cfg, warmup + 2 * steps, seed=3)
    if fw == "minillm":
        import minillm
        from bench_gpt import minillm_model_and_optimizer
        from minillm.profiler import OpProfiler
        model, _, opt = minillm_model_and_optimizer(cfg, "cpu", 0.0)
        tensor, clip = minillm.tensor, minillm.nn.utils.clip_grad_norm_
    else:
        import torch
        from bench_gpt import torch_model_and_optimizer
        model, opt = torch_model_and_optimizer(cfg, "cpu", 0.0, sdpa=True, torch_defaults=True)
        tensor, clip = torch.from_numpy, torch.nn.utils.clip_grad_norm_

    def fwd_bwd(x, y):
        _, loss = model(tensor(x), tensor(y))
        loss.backward()
        return loss.item()

    def opt_step():
        clip(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()   # minillm sets grads to None; PyTorch's default is set_to_none=True

    def run(bs):
        fb = op = 0.0
        for x, y in bs:
            t0 = time.perf_counter()
            fwd_bwd(x, y)
            t1 = time.perf_counter()
            opt_step()
            fb += t1 - t0
            op += time.perf_counter() - t1
        return 1e3 * fb / len(bs), 1e3 * op / len(bs)

    run(batches[:warmup])
    plain_fb, plain_opt = run(batches[warmup:warmup + steps])
    prof_b = batches[warmup + steps:]
    cats = dict.fromkeys(CATS, 0.0)
    detail = {}
    if fw == "minillm":
        prof = OpProfiler("cpu")
        fb = op = 0.0
        for x, y in prof_b:
            with prof:
                t0 = time.perf_counter()
                fwd_bwd(x, y)
                t1 = time.perf_counter()
            opt_step()
            fb += t1 - t0
            op += time.perf_counter() - t1
        for name in set(prof.forward_s) | set(prof.backward_s):
            ms = 1e3 * (prof.forward_s[name] + prof.backward_s[name]) / steps
            cats[MINILLM.get(name.lstrip("_"), "other ops")] += ms
            detail[name] = ms
    else:
        from torch.profiler import profile, ProfilerActivity, record_function
        fb = op = 0.0
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for x, y in prof_b:
                t0 = time.perf_counter()
                with record_function("fwd_bwd"):
                    fwd_bwd(x, y)
                t1 = time.perf_counter()
                with record_function("optimizer"):
                    opt_step()
                fb += t1 - t0
                op += time.perf_counter() - t1
        for ev in prof.events():
            if ev.name in ("fwd_bwd", "optimizer"):
                continue
            top = ev
            while top.cpu_parent is not None:
                top = top.cpu_parent
            if top.name != "fwd_bwd":   # optimizer ops, and autograd-engine threads' ops have no parent
                if top.name == "optimizer":
                    continue
            ms = ev.self_cpu_time_total / 1e3 / steps
            cats[torch_cat(ev.name)] += ms
            detail[ev.name] = detail.get(ev.name, 0.0) + ms
    fb, op = 1e3 * fb / steps, 1e3 * op / steps
    out = {"framework": fw, "config": config, "steps": steps,
           "unprofiled_fwd_bwd_ms": plain_fb, "unprofiled_optimizer_ms": plain_opt,
           "profiled_fwd_bwd_ms": fb, "profiled_optimizer_ms": op, "categories_ms": cats,
           "python_overhead_ms": fb - sum(cats.values()),
           "top_ops_ms": dict(sorted(detail.items(), key=lambda kv: -kv[1])[:25])}
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["cpu", "gpt6"], default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", default=os.path.join(HERE, "results", "profile_ops.jsonl"))
    p.add_argument("--child", choices=["minillm", "torch"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child, a.config, a.steps, a.warmup)
    res = {}
    for fw in ("minillm", "torch"):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", fw, "--config", a.config,
               "--steps", str(a.steps), "--warmup", str(a.warmup)]
        env = {**os.environ, **(TORCH_CHILD_ENV if fw == "torch" else {})}
        res[fw] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True,
                                            env=env).stdout.strip().splitlines()[-1])
    m, t = res["minillm"], res["torch"]
    print(f"{'ms per step (' + a.config + ')':<34}{'minillm':>10}{'PyTorch':>10}")
    for c in CATS:
        print(f"{c:<34}{m['categories_ms'][c]:>10.2f}{t['categories_ms'][c]:>10.2f}")
    print(f"{'Python / framework overhead':<34}{m['python_overhead_ms']:>10.2f}{t['python_overhead_ms']:>10.2f}")
    print(f"{'optimizer (clip + AdamW + zero)':<34}{m['profiled_optimizer_ms']:>10.2f}{t['profiled_optimizer_ms']:>10.2f}")
    print(f"{'step under profiler':<34}{m['profiled_fwd_bwd_ms'] + m['profiled_optimizer_ms']:>10.2f}"
          f"{t['profiled_fwd_bwd_ms'] + t['profiled_optimizer_ms']:>10.2f}")
    print(f"{'step unprofiled (fwd+bwd / opt)':<34}{m['unprofiled_fwd_bwd_ms']:>5.1f}/{m['unprofiled_optimizer_ms']:<4.1f}"
          f"{t['unprofiled_fwd_bwd_ms']:>5.1f}/{t['unprofiled_optimizer_ms']:<4.1f}")
    for fw in res:
        print(fw, "top ops:", json.dumps({k: round(v, 2) for k, v in list(res[fw]["top_ops_ms"].items())[:12]}))
    res["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(a.json, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
