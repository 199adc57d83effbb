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
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from minillm.data import GENRES  # noqa: E402
from minillm.pretrain import ExperimentConfig, results_markdown, run_experiment  # noqa: E402

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
