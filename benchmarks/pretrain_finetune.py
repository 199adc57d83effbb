"""Pre-train → fine-tune: does pre-training help genre classification with few labels?

    python benchmarks/pretrain_finetune.py            # the full run (~28 min on 2 CPU cores)
    python benchmarks/pretrain_finetune.py --quick    # a tiny smoke run (~1-2 min)
    python benchmarks/pretrain_finetune.py --device cuda

1. One byte-level BPE tokenizer (1024 tokens with [PAD], [MASK], [CLS], [EOS] and T5's sentinels)
   is trained on the training plays of the Shakespeare corpus.
2. Three backbones of the same size (2 layers, 128 dims, 4 heads, block 128) are pre-trained on
   that text, one per objective: causal LM (GPT), masked LM (BERT), span corruption (T5).
   Checkpoints: ``out/pretrain_finetune/{causal,mlm,span}.npz`` (reused by the next run if the
   settings match).
3. Each backbone, and a randomly initialized BERT-style encoder, gets a classification head (mean
   pooling over the real tokens) and is fine-tuned on speeches (≥ 200 characters) labelled with
   their play's genre (6 genres; plays split into train/val, so validation plays are unseen),
   with 1%, 10% and 100% of the training labels (nested stratified subsets) and the same number
   of steps for every backbone; validation accuracy is measured once at the end, mean of 2 seeds.

Writes ``benchmarks/results/pretrain_finetune.json`` and ``.md`` (``--quick``: ``*_quick.*``).

The experiment itself (``ExperimentConfig``, ``run_experiment``, ``results_markdown``) is defined
here, on top of the library's ``minillm.pretrain.pretrain`` and ``minillm.finetune.finetune``;
lesson 11 imports it from this file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from minillm import backend  # noqa: E402
from minillm.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from minillm.data import GENRES, Tokenizer, encode_cached, load_corpus, load_speeches, subsample  # noqa: E402
from minillm.finetune import encode_examples, finetune  # noqa: E402
from minillm.objectives import special_ids, train_tokenizer  # noqa: E402
from minillm.pretrain import build_model, pretrain  # noqa: E402

__all__ = ["ExperimentConfig", "run_experiment", "results_markdown", "majority_baseline", "main"]

def majority_baseline(train_labels, val_labels) -> float:
    """Validation accuracy of always predicting the most frequent training label."""
    counts = np.bincount(np.asarray(train_labels))
    return float((np.asarray(val_labels) == counts.argmax()).mean())


@dataclass
class ExperimentConfig:
    """Pre-train each objective with the same backbone size, then fine-tune on genre
    classification with a fraction of the labels. The defaults are the full run of
    ``benchmarks/pretrain_finetune.py`` (about 28 minutes on 2 CPU cores)."""
    # tokenizer and backbone (one size for every objective)
    vocab_size: int = 1024
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    # pre-training
    objectives: Tuple[str, ...] = ("causal", "mlm", "span")
    pretrain_steps: int = 1500
    pretrain_batch_size: int = 16
    pretrain_lr: float = 1e-3
    max_corpus_chars: Optional[int] = None    # cap the pre-training text (quick runs)
    # fine-tuning
    fractions: Tuple[float, ...] = (0.01, 0.1, 1.0)
    finetune_steps: Tuple[int, ...] = (40, 150, 500)   # one per fraction, the same for every backbone
    finetune_batch_size: int = 16
    finetune_lr: float = 1e-3
    finetune_dropout: float = 0.1
    pooling: str = "mean"
    scratch: str = "bert"                     # the backbone trained from scratch (a random init)
    seeds: Tuple[int, ...] = (0, 1)
    min_chars: int = 200
    max_val_examples: Optional[int] = None    # cap the validation speeches (quick runs)
    seed: int = 1337
    device: str = "cpu"                       # "cuda" runs on a GPU (CuPy)
    out_dir: str = "out/pretrain_finetune"    # tokenizer and pre-trained checkpoints
    reuse_checkpoints: bool = True            # load a pre-trained backbone saved with the same settings

    def to_dict(self):
        return asdict(self)

    def backbone_key(self) -> dict:
        """The settings a saved pre-trained backbone must match to be reused."""
        keys = ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "pretrain_steps", "pretrain_batch_size",
                "pretrain_lr", "max_corpus_chars", "seed")
        return {k: getattr(self, k) for k in keys}


def _load_or_train_tokenizer(cfg: ExperimentConfig, text: str, log):
    path = Path(cfg.out_dir) / f"tokenizer-bpe{cfg.vocab_size}-{len(text)}.json"
    if cfg.reuse_checkpoints and path.exists():
        return Tokenizer.load(path)
    t0 = time.perf_counter()
    tok = train_tokenizer(text, cfg.vocab_size)
    log(f"trained a BPE tokenizer of {tok.vocab_size} tokens on {len(text):,} characters "
        f"in {time.perf_counter() - t0:.1f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return tok


def run_experiment(cfg: ExperimentConfig, log: Optional[Callable] = print, tokenizer=None) -> dict:
    """Pre-train every objective of ``cfg`` on the Shakespeare corpus, then fine-tune each backbone
    (and one from scratch) on genre classification for every label fraction and seed.

    Returns a dict with the config, the pre-training histories, ``rows`` (one per backbone:
    accuracy per fraction, mean and per seed), the majority-class baselines and timings.
    ``tokenizer``: use this one (it needs :data:`SPECIAL_TOKENS`) instead of training or loading one.
    """
    log = log or (lambda *a, **k: None)
    t_start = time.perf_counter()
    out = Path(cfg.out_dir)
    train_text, val_text = load_corpus()
    if cfg.max_corpus_chars:
        train_text, val_text = train_text[:cfg.max_corpus_chars], val_text[:max(cfg.max_corpus_chars // 8, 10_000)]
    tok = tokenizer if tokenizer is not None else _load_or_train_tokenizer(cfg, train_text, log)
    sp = special_ids(tok)
    train_data, val_data = encode_cached(train_text, tok), encode_cached(val_text, tok)
    log(f"corpus: {len(train_data):,} train / {len(val_data):,} val tokens")

    size = dict(vocab_size=tok.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                n_embd=cfg.n_embd)
    histories, states = {}, {}
    for obj in cfg.objectives:
        path = out / f"{obj}.npz"
        if cfg.reuse_checkpoints and path.exists():
            ck = load_checkpoint(path)
            if ck.get("experiment") == cfg.backbone_key() and ck.get("tokenizer") == tok.to_dict():
                states[obj] = ck.model_state
                histories[obj] = ck.get("history")
                log(f"[{obj}] reusing the pre-trained backbone {path}")
                continue
        backend.manual_seed(cfg.seed)
        model = build_model(obj, tokenizer=tok, **size).to(cfg.device)   # drawn on the CPU, then moved
        log(f"[{obj}] pre-training a {type(model).__name__} ({model.num_parameters() / 1e6:.2f}M parameters) "
            f"for {cfg.pretrain_steps} steps")
        hist = pretrain(model, obj, train_data, tok, steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch_size,
                        lr=cfg.pretrain_lr, seed=cfg.seed, val_data=val_data, eval_every=max(cfg.pretrain_steps // 4, 1),
                        log=log, log_every=max(cfg.pretrain_steps // 4, 1))
        histories[obj] = hist
        states[obj] = {k: backend.to_numpy(v.data) for k, v in model.state_dict().items()}
        save_checkpoint(path, model, experiment=cfg.backbone_key(), history=hist, model_config=model.config.to_dict(),
                        tokenizer=tok.to_dict(), objective=obj)

    # ---- labelled data
    train_ex = load_speeches(min_chars=cfg.min_chars, split="train")
    val_ex = load_speeches(min_chars=cfg.min_chars, split="val")
    if cfg.max_val_examples and len(val_ex) > cfg.max_val_examples:
        val_ex = subsample(val_ex, cfg.max_val_examples / len(val_ex), seed=0)
    val_seqs = encode_examples([e.text for e in val_ex], tok, cfg.block_size)
    val_labels = [e.label for e in val_ex]
    log(f"genre classification: {len(train_ex)} train / {len(val_ex)} val speeches, {len(GENRES)} genres")

    def make_backbone(obj):
        kind = cfg.scratch if obj == "scratch" else obj
        backend.manual_seed(cfg.seed + 7)
        model = build_model(kind, tokenizer=tok, **size)
        if obj != "scratch":
            model.load_state_dict(states[obj])
        return model.to(cfg.device)

    backbones = ["scratch", *cfg.objectives]
    rows = {b: {"accuracy": {}, "per_seed": {}, "balanced_accuracy": {}, "per_seed_balanced": {}, "seconds": 0.0}
            for b in backbones}
    baselines, n_labels = {}, {}
    for frac, steps in zip(cfg.fractions, cfg.finetune_steps):
        for b in backbones:
            accs, bals = [], []
            for seed in cfg.seeds:
                sub = subsample(train_ex, frac, seed=seed)
                seqs = encode_examples([e.text for e in sub], tok, cfg.block_size)
                labels = [e.label for e in sub]
                n_labels[str(frac)] = len(sub)
                if b == backbones[0]:
                    baselines.setdefault(str(frac), []).append(majority_baseline(labels, val_labels))
                res = finetune(make_backbone(b), seqs, labels, val_seqs, val_labels, num_classes=len(GENRES),
                               pad_id=sp.pad, steps=steps, batch_size=cfg.finetune_batch_size, lr=cfg.finetune_lr,
                               dropout=cfg.finetune_dropout, pooling=cfg.pooling, seed=seed)
                accs.append(res["accuracy"])
                bals.append(res["balanced_accuracy"])
                rows[b]["seconds"] += res["seconds"]
                log(f"[finetune] {b:>7} | {frac:>5.0%} labels ({len(sub)}) | seed {seed} | {steps} steps | "
                    f"val acc {res['accuracy']:.3f}, balanced {res['balanced_accuracy']:.3f} | {res['seconds']:.0f} s")
            rows[b]["accuracy"][str(frac)] = float(np.mean(accs))
            rows[b]["per_seed"][str(frac)] = accs
            rows[b]["balanced_accuracy"][str(frac)] = float(np.mean(bals))
            rows[b]["per_seed_balanced"][str(frac)] = bals
    return {
        "config": cfg.to_dict(),
        "tokenizer_vocab_size": tok.vocab_size,
        "n_train_labels": n_labels,
        "n_val": len(val_ex),
        "majority_baseline": {k: float(np.mean(v)) for k, v in baselines.items()},
        "val_majority_share": float(np.bincount(val_labels).max() / len(val_labels)),
        "val_class_counts": np.bincount(val_labels, minlength=len(GENRES)).tolist(),
        "pretraining": {k: {"final_train_loss": float(np.mean(h["train_loss"][-20:])) if h else None,
                            "val": h["val"] if h else None, "ms_per_step": h.get("ms_per_step") if h else None}
                        for k, h in histories.items()},
        "histories": histories,
        "rows": rows,
        "seconds": time.perf_counter() - t_start,
    }


ROW_NAMES = {"scratch": "from scratch (random init)", "causal": "causal LM (GPT)", "mlm": "masked LM (BERT)",
             "span": "span corruption (T5 encoder)"}


def results_markdown(results: dict, metric: str = "accuracy") -> str:
    """The results as a markdown table of ``metric`` (``"accuracy"`` or ``"balanced_accuracy"``)
    on the validation speeches, mean over seeds (± their standard deviation)."""
    if metric not in ("accuracy", "balanced_accuracy"):
        raise ValueError(f"metric must be 'accuracy' or 'balanced_accuracy', got {metric!r}")
    per_seed = "per_seed" if metric == "accuracy" else "per_seed_balanced"
    cfg = results["config"]
    fracs = [str(f) for f in cfg["fractions"]]
    n = results["n_train_labels"]
    head = "| backbone | " + " | ".join(f"{float(f):.0%} labels ({n.get(f, '?')})" for f in fracs) + " |"
    lines = [head, "|" + "---|" * (len(fracs) + 1)]
    scratch_name = ROW_NAMES["scratch"].replace("random init", f"random init, {cfg['scratch'].upper()} backbone")
    for b, row in results["rows"].items():
        name = scratch_name if b == "scratch" else ROW_NAMES.get(b, b)
        cells = []
        for f in fracs:
            acc = row[metric].get(f)
            seeds = row[per_seed].get(f, [])
            spread = f" ± {np.std(seeds):.3f}" if len(seeds) > 1 else ""
            cells.append("—" if acc is None else f"{acc:.3f}{spread}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if metric == "accuracy":
        base = [results["majority_baseline"].get(f, float("nan")) for f in fracs]
    else:                                        # a constant prediction gets one class in C right
        base = [1.0 / np.count_nonzero(results["val_class_counts"])] * len(fracs)
    lines.append("| majority class of the training labels | " + " | ".join(f"{v:.3f}" for v in base) + " |")
    return "\n".join(lines)


QUICK = dict(vocab_size=512, n_layer=1, n_head=2, n_embd=64, block_size=64, pretrain_steps=20, pretrain_batch_size=8,
             max_corpus_chars=200_000, finetune_steps=(5, 10, 15), seeds=(0,), max_val_examples=150,
             out_dir="out/pretrain_finetune_quick")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings, to check that everything runs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pretrain-steps", type=int)
    ap.add_argument("--finetune-steps", type=int, nargs=3, metavar=("N1", "N10", "N100"))
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--no-reuse", action="store_true", help="pre-train again even if checkpoints exist")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--out-dir", help="where the tokenizer and pre-trained checkpoints go "
                                      "(default out/pretrain_finetune)")
    args = ap.parse_args(argv)

    settings = dict(QUICK) if args.quick else {}
    settings["device"] = args.device
    if args.pretrain_steps is not None:
        settings["pretrain_steps"] = args.pretrain_steps
    if args.finetune_steps:
        settings["finetune_steps"] = tuple(args.finetune_steps)
    if args.seeds:
        settings["seeds"] = tuple(args.seeds)
    if args.out_dir:
        settings["out_dir"] = args.out_dir
    if args.no_reuse:
        settings["reuse_checkpoints"] = False
    cfg = ExperimentConfig(**settings)
    print(f"config: {json.dumps(cfg.to_dict())}", flush=True)

    t0 = time.perf_counter()
    results = run_experiment(cfg, log=lambda msg: print(msg, flush=True))
    results["wall_seconds"] = time.perf_counter() - t0
    results["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count(), "device": cfg.device}
    table = results_markdown(results)
    balanced = results_markdown(results, "balanced_accuracy")

    os.makedirs(args.results_dir, exist_ok=True)
    stem = os.path.join(args.results_dir, "pretrain_finetune" + ("_quick" if args.quick else ""))
    slim = {k: v for k, v in results.items() if k != "histories"}
    slim["pretraining_curves"] = {k: {"train_loss": h["train_loss"], "val": h["val"]}
                                  for k, h in results["histories"].items() if h}
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(slim, f, indent=1)
    pt = results["pretraining"]
    c = cfg
    lines = [
        "# Pre-train → fine-tune: genre classification of Shakespeare speeches",
        "",
        f"Validation accuracy (mean of {len(c.seeds)} seed(s){', ± std' if len(c.seeds) > 1 else ''}) on "
        f"{results['n_val']} speeches from held-out plays, 6 genres; fine-tuned with the given share of the "
        f"{results['n_train_labels'].get('1.0', '?')} training speeches.",
        "",
        table,
        "",
        f"The largest genre makes up {results['val_majority_share']:.3f} of the validation speeches "
        f"(per genre {dict(zip(GENRES, results['val_class_counts']))}); the training speeches are "
        "unbalanced the other way (a third are histories), so accuracy rewards guessing the training "
        "majority. **Balanced accuracy** (the mean over the 6 genres of the share of that genre's "
        "speeches classified right; chance = 1/6 whatever the class balance):",
        "",
        balanced,
        "",
        "## Setup",
        "",
        f"- Tokenizer: byte-level BPE, {results['tokenizer_vocab_size']} tokens (special tokens included), "
        "trained on the training plays.",
        f"- Backbone (every objective): {c.n_layer} layers, {c.n_embd} dims, {c.n_head} heads, block {c.block_size}.",
        f"- Pre-training: {c.pretrain_steps} AdamW steps of {c.pretrain_batch_size} × {c.block_size} tokens, "
        f"peak lr {c.pretrain_lr}, warmup 10%, cosine decay.",
    ]
    for obj, p in pt.items():
        val = p["val"][-1][1] if p.get("val") else float("nan")
        ms = p.get("ms_per_step")
        lines.append(f"  - {obj}: final val loss {val:.3f} (from {p['val'][0][1]:.3f} at step 0)"
                     + (f", {ms:.0f} ms/step" if ms else " (reused checkpoint)"))
    lines += [
        f"- Fine-tuning: all weights + a linear head on mean-pooled states (dropout {c.finetune_dropout}), "
        f"batch {c.finetune_batch_size}, peak lr {c.finetune_lr}, steps "
        + ", ".join(f"{s} for {f:.0%}" for f, s in zip(c.fractions, c.finetune_steps))
        + " (the same for every backbone); speeches truncated to the block size; accuracy measured once, "
          "after the last step.",
        f"- Seeds {list(c.seeds)} (label subset, head init, batch order). Wall time {results['wall_seconds'] / 60:.1f} min "
        f"on {results['machine']['cpus']} CPU core(s) ({cfg.device}).",
        "",
        "Regenerate: `python benchmarks/pretrain_finetune.py" + (" --quick" if args.quick else "") + "`.",
    ]
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
