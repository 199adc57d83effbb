"""Time one training step (forward, backward, AdamW update) of minillm's GPT against the same
model in PyTorch eager, same config, same batches, in one process, alternating.

    python benchmarks/bench_gpt.py --config cpu            # nanoGPT's CPU preset (4/4/128, block 64, batch 12)
    python benchmarks/bench_gpt.py --config gpt6 --steps 12 # 6/6/384 at block 256
    python benchmarks/bench_gpt.py --config gpu --device cuda

Prints ms/iter (median over rounds) for each, the ratio minillm/PyTorch, and peak memory, each
framework measured in a child process of its own (peak RSS on CPU, peak pool bytes on GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CONFIGS = {
    "cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12),
    "gpt6": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=12),
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64),
}


# The PyTorch twin borrows minillm's GPTConfig, so its process imports minillm, whose import tunes
# glibc's malloc (backend.keep_freed_memory_for_reuse). A PyTorch child runs with this environment
# so that it measures PyTorch with the allocator as people run it.
TORCH_CHILD_ENV = {"MINILLM_KEEP_FREED_MEMORY": "0"}


def make_batches(cfg, n, vocab=65, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, vocab, size=200_000)
    out = []
    for _ in range(n):
        ix = rng.integers(0, len(data) - cfg["block_size"] - 1, cfg["batch_size"])
        x = np.stack([data[i:i + cfg["block_size"]] for i in ix])
        y = np.stack([data[i + 1:i + 1 + cfg["block_size"]] for i in ix])
        out.append((x, y))
    return out


def minillm_model_and_optimizer(cfg, device, dropout):
    """minillm's GPT for ``cfg`` (seed 0) and AdamW as both benchmarks use it: weight decay 0.1 on
    the matrices, lr 1e-3, betas (0.9, 0.99)."""
    import minillm
    from minillm.models.gpt import GPT, GPTConfig
    minillm.manual_seed(0)
    gcfg = GPTConfig(vocab_size=65, block_size=cfg["block_size"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                     n_embd=cfg["n_embd"], dropout=dropout)
    model = GPT(gcfg).to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = minillm.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=1e-3, betas=(0.9, 0.99))
    return model, gcfg, opt


def build_minillm(cfg, device, dropout):
    import minillm
    model, gcfg, opt = minillm_model_and_optimizer(cfg, device, dropout)

    def step(x, y):
        xt, yt = minillm.tensor(x, device=device), minillm.tensor(y, device=device)
        _, loss = model(xt, yt)
        opt.zero_grad()
        loss.backward()
        minillm.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    def sync(loss):
        return loss.item()
    return model, gcfg, step, sync


def torch_model_and_optimizer(cfg, device, dropout, sdpa, minillm_model=None, gcfg=None, torch_defaults=False):
    """The PyTorch twin (``torch_gpt.TorchGPT``; with ``minillm_model``, its weights) and the same
    AdamW. ``torch_defaults=True`` leaves AdamW's ``foreach`` to PyTorch, as people run it."""
    import torch
    from torch_gpt import TorchGPT
    from minillm.models.gpt import GPTConfig
    if minillm_model is None:
        torch.manual_seed(0)
    gcfg = gcfg or GPTConfig(vocab_size=65, block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                             n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=dropout)
    model = TorchGPT(gcfg, sdpa=sdpa)
    if minillm_model is not None:
        model.load_from_minillm(minillm_model)
    model = model.to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    options = {} if torch_defaults else {"foreach": device != "cpu"}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99), **options)
    return model, opt


def build_torch(cfg, device, dropout, sdpa, minillm_model=None, gcfg=None, torch_defaults=False):
    import torch
    model, opt = torch_model_and_optimizer(cfg, device, dropout, sdpa, minillm_model, gcfg, torch_defaults)

    def step(x, y):
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        _, loss = model(xt, yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    def sync(loss):
        return loss.item()
    return model, step, sync


def time_steps(step, sync, batches):
    t0 = time.perf_counter()
    loss = None
    for x, y in batches:
        loss = step(x, y)
    sync(loss)
    return (time.perf_counter() - t0) * 1000 / len(batches)


def peak_rss_mib():
    """This process's peak resident memory in MiB.

    Reads VmHWM from /proc (Linux), which starts afresh at exec; ``ru_maxrss`` does not (a child
    started by a big parent inherits the parent's high-water mark), so it is only the fallback.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(framework, args):
    """Run ``steps`` training steps of one framework alone and report its peak memory (MiB)."""
    cfg = CONFIGS[args.config] | ({"batch_size": args.batch_size} if args.batch_size else {})
    batches = make_batches(cfg, args.warmup + 3)
    if framework == "minillm":
        model, _, step, sync = build_minillm(cfg, args.device, args.dropout)
    else:
        import torch
        torch.set_num_threads(args.threads or torch.get_num_threads())
        model, step, sync = build_torch(cfg, args.device, args.dropout, args.torch_sdpa)
    base = peak_rss_mib()
    gpu_peak = None
    for x, y in batches:
        sync(step(x, y))
    if args.device.startswith("cuda"):
        if framework == "minillm":
            from minillm import backend
            gpu_peak = backend._load_cupy().get_default_memory_pool().total_bytes() / 2**20
        else:
            import torch
            gpu_peak = torch.cuda.max_memory_allocated() / 2**20
    peak = peak_rss_mib()
    print(json.dumps({"peak_rss_mib": peak, "rss_after_build_mib": base, "gpu_peak_mib": gpu_peak}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round and framework")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--torch-sdpa", action="store_true", help="PyTorch uses its fused SDPA kernel")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", default=None, help="append the result as a JSON line to this file")
    p.add_argument("--memory-child", choices=["minillm", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = CONFIGS[args.config] | ({"batch_size": args.batch_size} if args.batch_size else {})
    m_model, gcfg, m_step, m_sync = build_minillm(cfg, args.device, args.dropout)
    t_model, t_step, t_sync = build_torch(cfg, args.device, args.dropout, args.torch_sdpa, m_model, gcfg)
    warm = make_batches(cfg, args.warmup, seed=1)
    time_steps(m_step, m_sync, warm)
    time_steps(t_step, t_sync, warm)
    times = {"minillm": [], "torch": []}
    for r in range(args.rounds):
        batches = make_batches(cfg, args.steps, seed=10 + r)
        # alternate which goes first, so drift in machine load hits both alike
        order = [("minillm", m_step, m_sync), ("torch", t_step, t_sync)]
        for name, step, sync in (order if r % 2 == 0 else order[::-1]):
            times[name].append(time_steps(step, sync, batches))
    ms = {k: statistics.median(v) for k, v in times.items()}
    result = {"config": args.config, **cfg, "device": args.device, "dropout": args.dropout,
              "torch_threads": torch.get_num_threads(), "torch_sdpa": args.torch_sdpa, "torch": torch.__version__,
              "minillm_ms": round(ms["minillm"], 2), "torch_ms": round(ms["torch"], 2),
              "ratio": round(ms["minillm"] / ms["torch"], 3), "rounds": {k: [round(x, 1) for x in v] for k, v in times.items()}}
    if not args.no_memory:
        for fw in ("minillm", "torch"):
            cmd = [sys.executable, __file__, "--memory-child", fw, "--config", args.config, "--device", args.device,
                   "--dropout", str(args.dropout), "--warmup", str(args.warmup)]
            cmd += ["--batch-size", str(args.batch_size)] if args.batch_size else []
            cmd += ["--torch-sdpa"] if args.torch_sdpa else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            result[f"{fw}_memory"] = json.loads(out)
    print(json.dumps(result, indent=1))
    print(f"\n{args.config} on {args.device}: minillm {ms['minillm']:.1f} ms/iter, PyTorch {ms['torch']:.1f} ms/iter, "
          f"ratio {ms['minillm'] / ms['torch']:.2f}x")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
