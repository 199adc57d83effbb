"""Model growth: does starting a large GPT from a trained small one save compute?

    python benchmarks/growth.py            # the full run (2 seeds; 15-40 min on 2 shared CPU cores)
    python benchmarks/growth.py --quick    # a smoke run (~1 min; writes *_quick.*)

Run it with one BLAS thread on a shared machine (OPENBLAS_NUM_THREADS=1 MINILLM_NUM_THREADS=1):
with other jobs on the cores, threaded kernels oversubscribe them and run ~8× slower.

A char-level GPT on tiny Shakespeare (``../shared/data/tinyshakespeare.txt`` from the repo root,
or ``--data``). For each seed:

1. a small model (2 layers × 64, 4 heads) is trained ``--small-steps`` steps;
2. the large model (4 layers × 128, 4 heads) is trained ``--large-steps`` steps in five arms:
   ``scratch`` (random init), ``net2net`` / ``stack`` / ``interleave`` (``minillm.growth.grow``
   of the small model) and ``ligo`` (``minillm.growth.LiGO`` operator trained ``--ligo-steps``
   steps, then materialized);
3. every arm uses the same schedule shape (linear warmup, then a constant rate, so that "time to
   a target loss" does not depend on where a cosine ends), the same batch size, the same
   training batches for a given seed, and the same validation batches (fixed for the whole run).

The target validation loss is the worst (highest) final validation loss of the scratch runs, so
every scratch run reaches it. For each arm and seed: training FLOPs (``flops_per_step``; LiGO's
operator steps counted with ``LiGO.flops_per_step``) and wall time to the target (linearly
interpolated between evaluations), and the saving against scratch of the same seed, without and
with the small model's own training counted. A saving is claimed only where its mean exceeds the
spread (max − min) across seeds.

Writes ``benchmarks/results/growth.json``, ``growth.md`` and ``growth.png`` (val loss vs FLOPs).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from minillm import backend  # noqa: E402
from minillm.data import CharTokenizer, encode_cached, get_batch, load_corpus  # noqa: E402
from minillm.growth import LiGO, flops_per_step, grow, train_ligo  # noqa: E402
from minillm.models.gpt import GPT, GPTConfig  # noqa: E402
from minillm.nn.utils import clip_grad_norm_  # noqa: E402
from minillm.optim import AdamW  # noqa: E402
from minillm.regularizers.penalties import param_groups  # noqa: E402
from minillm.tensor import Tensor, no_grad  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "tinyshakespeare.txt"
ARMS = ("scratch", "net2net", "stack", "interleave", "ligo")

# published figures (FLOPs or wall time saved vs training the large model from scratch)
ANCHORS = [
    ("LiGO (Wang et al., ICLR 2023)", "BERT-Small → BERT-Base", "44.7% FLOPs, ~40% wall time"),
    ("LiGO (Wang et al., ICLR 2023)", "GPT2-Medium (from GPT2-Small)", "22.5% FLOPs"),
    ("bert2BERT (Chen et al., ACL 2022)", "BERT-Base", "~45% FLOPs"),
    ("Progressive stacking (Gong et al., ICML 2019)", "BERT-Base", "~25% wall time"),
    ("G_stack (Du et al., NeurIPS 2024)", "7B LLM", "54.6% FLOPs (speed-up to the same loss)"),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny step counts, one seed")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--small", default="2,64,4", help="n_layer,n_embd,n_head of the small model")
    p.add_argument("--large", default="4,128,4", help="n_layer,n_embd,n_head of the large model")
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--small-steps", type=int, default=250)
    p.add_argument("--large-steps", type=int, default=300)
    p.add_argument("--ligo-steps", type=int, default=100)
    p.add_argument("--ligo-lr", type=float, default=1e-3)
    p.add_argument("--eval-interval", type=int, default=25)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(HERE / "results" / "growth"), help="output path without extension")
    p.add_argument("--report-only", action="store_true", help="re-render OUT.md and OUT.png from OUT.json")
    p.add_argument("--variant", nargs=2, action="append", default=[], metavar=("TITLE", "JSON"),
                   help="with --report-only: append the table of another run's results")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
        args.small_steps, args.large_steps, args.ligo_steps = 30, 40, 5
        args.warmup, args.eval_interval, args.eval_batches = 5, 10, 2
        args.out = args.out + "_quick"
    return args


def _cfg(spec, vocab, block):
    n_layer, n_embd, n_head = (int(v) for v in spec.split(","))
    return GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=0.0)


class Run:
    """Data, fixed validation batches and the training loop shared by every arm."""

    def __init__(self, args):
        self.args = args
        train_text, val_text = load_corpus(args.data)
        self.tok = CharTokenizer.from_text(train_text + val_text)
        self.train_data = encode_cached(train_text, self.tok)
        val = encode_cached(val_text, self.tok)
        rng = np.random.default_rng(12345)          # the same validation batches for every arm and seed
        self.val_batches = [tuple(Tensor(backend.to_device(a, args.device)) for a in
                                  get_batch(val, args.batch_size, args.block_size, rng))
                            for _ in range(args.eval_batches)]
        self.small_cfg = _cfg(args.small, self.tok.vocab_size, args.block_size)
        self.large_cfg = _cfg(args.large, self.tok.vocab_size, args.block_size)

    def batches(self, seed, stream):
        rng = np.random.default_rng([seed, stream])
        while True:
            yield tuple(Tensor(backend.to_device(a, self.args.device))
                        for a in get_batch(self.train_data, self.args.batch_size, self.args.block_size, rng))

    def val_loss(self, model) -> float:
        model.eval()
        with no_grad():
            losses = [float(model(x, y)[1].item()) for x, y in self.val_batches]
        model.train()
        return float(np.mean(losses))

    def lr(self, it):
        a = self.args
        return a.lr * min(1.0, (it + 1) / a.warmup)     # linear warmup, then constant

    def train(self, model, steps, seed, stream, label, log=print):
        """Train ``steps`` steps; returns the curve [(step, val loss, train seconds so far)]."""
        a = self.args
        opt = AdamW(param_groups(model, 0.1), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.1)
        batches = self.batches(seed, stream)
        curve = [(0, self.val_loss(model), 0.0)]
        seconds = 0.0
        for it in range(steps):
            for g in opt.param_groups:
                g["lr"] = self.lr(it)
            x, y = next(batches)
            t0 = time.perf_counter()
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            seconds += time.perf_counter() - t0
            if (it + 1) % a.eval_interval == 0 or it + 1 == steps:
                curve.append((it + 1, self.val_loss(model), seconds))
                if log and ((it + 1) % (4 * a.eval_interval) == 0 or it + 1 == steps):
                    log(f"  [{label}] step {it + 1}: val {curve[-1][1]:.4f} ({seconds:.0f}s)")
        return curve


def run_seed(run: Run, seed: int, log=print) -> dict:
    a = run.args
    t_seed = time.perf_counter()
    backend.manual_seed(seed)
    small = GPT(run.small_cfg)
    small.to(a.device)
    log(f"seed {seed}: small {run.small_cfg.n_layer}×{run.small_cfg.n_embd}, {a.small_steps} steps")
    small_curve = run.train(small, a.small_steps, seed, 1, "small", log)
    out = {"seed": seed, "small": {"curve": small_curve, "flops": flops_per_step(run.small_cfg, a.batch_size) * a.small_steps,
                                   "seconds": small_curve[-1][2]}, "arms": {}}
    step_flops = flops_per_step(run.large_cfg, a.batch_size)
    L = run.large_cfg
    for arm in a.arms:
        extra_flops, extra_seconds, info = 0, 0.0, {}
        backend.manual_seed(seed + 1000)
        if arm == "scratch":
            model = GPT(L)
        elif arm == "ligo":
            t0 = time.perf_counter()
            ligo = LiGO(small, L)
            losses = train_ligo(ligo, ((x, y) for x, y in run.batches(seed, 3)), a.ligo_steps, a.ligo_lr)
            model = ligo.materialize()
            extra_seconds = time.perf_counter() - t0
            extra_flops = ligo.flops_per_step(a.batch_size) * a.ligo_steps
            info = {"operator_params": sum(p.size for p in ligo.parameters()), "operator_losses": losses[::10] + losses[-1:],
                    "operator_step_flops": ligo.flops_per_step(a.batch_size)}
        else:
            model = grow(small, L.n_layer, L.n_embd, L.n_head, method=arm)
        model.to(a.device)
        log(f"  {arm}: start val {run.val_loss(model):.4f} (small's final {small_curve[-1][1]:.4f})")
        curve = run.train(model, a.large_steps, seed, 2, arm, log)
        out["arms"][arm] = {"curve": curve, "step_flops": step_flops, "extra_flops": extra_flops,
                            "extra_seconds": extra_seconds, **info}
    out["wall_seconds"] = time.perf_counter() - t_seed      # everything, evaluations included
    return out


# ================================================================ analysis
def _cross(curve, target):
    """(step, seconds) where the val loss first reaches ``target`` (linear interpolation), or None."""
    for (s0, v0, t0), (s1, v1, t1) in zip(curve, curve[1:]):
        if v0 <= target:
            return s0, t0
        if v1 <= target:
            f = (v0 - target) / (v0 - v1)
            return s0 + f * (s1 - s0), t0 + f * (t1 - t0)
    return (curve[0][0], curve[0][2]) if curve and curve[0][1] <= target else None


def analyse(results: dict) -> dict:
    seeds = results["seeds"]
    target = max(s["arms"]["scratch"]["curve"][-1][1] for s in seeds)
    table = {}
    for arm in results["arms"]:
        rows = []
        for s in seeds:
            r = s["arms"][arm]
            hit = _cross(r["curve"], target)
            base = _cross(s["arms"]["scratch"]["curve"], target)
            if hit is None or base is None:
                rows.append(None)
                continue
            uses_small = arm != "scratch"
            flops = hit[0] * r["step_flops"] + r["extra_flops"]
            secs = hit[1] + r["extra_seconds"]
            flops_all = flops + (s["small"]["flops"] if uses_small else 0)
            secs_all = secs + (s["small"]["seconds"] if uses_small else 0)
            bflops = base[0] * s["arms"]["scratch"]["step_flops"]
            bsecs = base[1]
            rows.append({"steps": hit[0], "flops": flops, "seconds": secs, "flops_all": flops_all,
                         "seconds_all": secs_all, "save_flops": 1 - flops / bflops, "save_flops_all": 1 - flops_all / bflops,
                         "save_secs": 1 - secs / bsecs, "save_secs_all": 1 - secs_all / bsecs,
                         "start_val": r["curve"][0][1], "final_val": r["curve"][-1][1]})
        table[arm] = rows
    return {"target": target, "table": table}


def _stat(rows, key, scale=1.0):
    vals = [r[key] * scale for r in rows if r is not None]
    if not vals or len(vals) < len(rows):
        return None, None
    return float(np.mean(vals)), float(max(vals) - min(vals))


def _table(results: dict, an: dict) -> list:
    cfg = results["config"]
    lines = ["| arm | val at start | large-model steps to target | GFLOPs to target (operator incl.) | saving (FLOPs) "
             "| saving (FLOPs, small's training counted) | wall s to target (small incl.) | saving (wall, small incl.) "
             "| FLOPs saving claimed? |",
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda m: f"{m[0]:.1f} ± {m[1]:.1f}"  # noqa: E731
    for arm, rows in an["table"].items():
        if any(r is None for r in rows):
            lines.append(f"| {arm} | | not reached in {cfg['large_steps']} steps (some seed) | | | | | | no |")
            continue
        st, steps, gf = _stat(rows, "start_val"), _stat(rows, "steps"), _stat(rows, "flops", 1e-9)
        sf, sfa = _stat(rows, "save_flops", 100), _stat(rows, "save_flops_all", 100)
        ws, swa = _stat(rows, "seconds_all"), _stat(rows, "save_secs_all", 100)
        if arm == "scratch":
            claimed = "—"
        elif sfa[0] > sfa[1] and sfa[0] > 0:
            claimed = "yes, both ways"
        elif sf[0] > sf[1] and sf[0] > 0:
            claimed = "only without the small model"
        else:
            claimed = "no"
        lines.append(f"| {arm} | {st[0]:.3f} | {steps[0]:.0f} ± {steps[1]:.0f} | {gf[0]:.0f} ± {gf[1]:.0f} | "
                     f"{fmt(sf)}% | {fmt(sfa)}% | {ws[0]:.0f} ± {ws[1]:.0f} | {fmt(swa)}% | {claimed} |")
    return lines


def results_markdown(results: dict, variants=()) -> str:
    """The report; ``variants``: (title, results) of extra runs whose tables are appended."""
    an = analyse(results)
    cfg = results["config"]
    s, l = results["small_config"], results["large_config"]
    lines = [
        "# Model growth on tiny Shakespeare (char GPT)",
        "",
        "`python benchmarks/growth.py` (with `OPENBLAS_NUM_THREADS=1 MINILLM_NUM_THREADS=1`). "
        f"Small {s['n_layer']} layers × {s['n_embd']} ({s['n_head']} heads) trained {cfg['small_steps']} steps, grown to "
        f"{l['n_layer']} × {l['n_embd']} ({l['n_head']} heads) and trained {cfg['large_steps']} steps; batch "
        f"{cfg['batch_size']} × {cfg['block_size']} tokens, AdamW lr {cfg['lr']} (linear warmup {cfg['warmup']} steps, "
        f"then constant, for every model), weight decay 0.1, clip 1.0; LiGO operator {cfg['ligo_steps']} steps at lr "
        f"{cfg['ligo_lr']}. Validation: the same {cfg['eval_batches']} batches for every arm, every "
        f"{cfg['eval_interval']} steps. Seeds {cfg['seeds']}; {results['machine']}, shared with other jobs; "
        f"total run {results['total_seconds'] / 60:.1f} min.",
        "",
        f"**Target val loss {an['target']:.4f}** (the highest final val loss among the scratch runs). "
        "FLOPs: training matrix products, `minillm.growth.flops_per_step` (6·N + attention per token); LiGO's "
        "operator steps counted with `LiGO.flops_per_step` in every LiGO column. Mean over seeds ± spread "
        "(max − min); a saving is *claimed* only where the mean exceeds the spread. Wall times are "
        "reported but not claimed: the 2 cores were shared with other jobs whose load changed during the run.",
        "",
    ] + _table(results, an)
    lines += ["", "Per seed (FLOPs saving without / with the small model's training):", ""]
    for arm, rows in an["table"].items():
        if arm == "scratch":
            continue
        parts = [("not reached" if r is None else f"{100 * r['save_flops']:.1f}% / {100 * r['save_flops_all']:.1f}%")
                 for r in rows]
        lines.append(f"- {arm}: " + "; ".join(f"seed {s_['seed']}: {p}" for s_, p in zip(results["seeds"], parts)))
    sm = results["seeds"][0]["small"]
    scratch_flops = np.mean([r["flops"] for r in an["table"]["scratch"] if r is not None])
    large_step = results["seeds"][0]["arms"]["scratch"]["step_flops"]
    lines += ["", "## Reading", "",
              f"- The small model's training cost {sm['flops'] / 1e9:.0f} GFLOPs, {100 * sm['flops'] / scratch_flops:.0f}% "
              f"of what scratch needs to reach the target ({sm['flops'] / large_step:.0f} large-model steps); its final "
              f"val loss {np.mean([s_['small']['curve'][-1][1] for s_ in results['seeds']]):.4f} (seed mean)."]
    if "ligo" in results["arms"]:
        lg = results["seeds"][0]["arms"]["ligo"]
        rows = an["table"]["ligo"]
        lines.append(
            f"- LiGO's operator has {lg['operator_params']:,} parameters; one operator step costs "
            f"{lg['operator_step_flops'] / 1e9:.2f} GFLOPs, {lg['operator_step_flops'] / lg['step_flops']:.2f}× a "
            f"large-model step, so its {cfg['ligo_steps']} steps cost {lg['extra_flops'] / 1e9:.0f} GFLOPs = "
            f"{lg['extra_flops'] / lg['step_flops']:.0f} large-model steps, "
            f"{100 * lg['extra_flops'] / scratch_flops:.0f}% of scratch's cost to the target."
            + ("" if any(r is None for r in rows) else
               f" Counted in large-model steps only, LiGO reaches the target in {_stat(rows, 'steps')[0]:.0f} steps "
               f"against scratch's {_stat(an['table']['scratch'], 'steps')[0]:.0f} (the fewest of all arms); the "
               f"{_stat(an['table']['scratch'], 'steps')[0] - _stat(rows, 'steps')[0]:.0f} steps it saves are paid "
               f"for by the operator's {lg['extra_flops'] / lg['step_flops']:.0f}."))
    for title, res in variants:
        van = analyse(res)
        lines += ["", f"## {title}", "",
                  f"Same settings, arms {res['arms']}, LiGO operator {res['config']['ligo_steps']} steps; target "
                  f"{van['target']:.4f} (this run's scratch); total run {res['total_seconds'] / 60:.1f} min.", ""]
        lines += _table(res, van)
    lines += ["", "## Published figures (for comparison; different scale, data and budgets)", "",
              "| method | setting | saved vs scratch |", "|---|---|---|"]
    lines += [f"| {m} | {s_} | {f} |" for m, s_, f in ANCHORS]
    lines += ["", "![val loss vs FLOPs](growth.png)", ""]
    return "\n".join(lines)


def plot(results: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    an = analyse(results)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colors = dict(zip(ARMS, ("black", "tab:blue", "tab:orange", "tab:green", "tab:red")))
    for ax, with_small in zip(axes, (False, True)):
        for arm in results["arms"]:
            for k, s in enumerate(results["seeds"]):
                r = s["arms"][arm]
                offset = r["extra_flops"] + (s["small"]["flops"] if with_small and arm != "scratch" else 0)
                x = [(offset + st * r["step_flops"]) / 1e12 for st, _, _ in r["curve"]]
                y = [v for _, v, _ in r["curve"]]
                ax.plot(x, y, color=colors[arm], alpha=0.85, lw=1.4, ls="-" if k == 0 else "--",
                        label=arm if k == 0 else None)
        ax.axhline(an["target"], color="grey", lw=0.8, ls=":", label=f"target {an['target']:.3f}")
        ax.set_xlabel("training TFLOPs" + (" (incl. the small model's)" if with_small else " (large model + LiGO operator)"))
        ax.set_title("small model's training counted" if with_small else "small model's training not counted")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation loss")
    lo = min(min(v for _, v, _ in s["arms"][a]["curve"]) for s in results["seeds"] for a in results["arms"])
    axes[0].set_ylim(lo - 0.05, lo + 1.0)
    axes[0].legend()
    fig.suptitle("Growing a char GPT: val loss vs training FLOPs (solid / dashed: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report_only:
        results = json.loads(Path(args.out).with_suffix(".json").read_text())
        variants = [(title, json.loads(Path(path).read_text())) for title, path in args.variant]
        Path(args.out).with_suffix(".md").write_text(results_markdown(results, variants))
        plot(results, Path(args.out).with_suffix(".png"))
        return 0
    if not Path(args.data).is_file():
        print(f"growth benchmark: data file {args.data} not found (pass --data)", file=sys.stderr)
        return 1
    run = Run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.json")
    done = json.loads(partial.read_text()) if partial.exists() else {}
    seeds = []
    for seed in args.seeds:
        key = str(seed)
        if key in done:
            print(f"seed {seed}: reusing {partial}")
            seeds.append(done[key])
            continue
        seeds.append(run_seed(run, seed))
        done[key] = seeds[-1]
        partial.write_text(json.dumps(done))
    results = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "seeds": seeds, "arms": list(args.arms),
               "small_config": run.small_cfg.to_dict(), "large_config": run.large_cfg.to_dict(),
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({args.device})",
               "total_seconds": sum(s["wall_seconds"] for s in seeds)}
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    md = results_markdown(results)
    out.with_suffix(".md").write_text(md)
    try:
        plot(results, out.with_suffix(".png"))
    except ImportError:
        print("matplotlib not installed: no plot")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
