"""Fine-tuning methods compared on one pre-trained char GPT (issue 10).

    python benchmarks/finetune.py                 # both experiments (sized for 2 shared CPU cores)
    python benchmarks/finetune.py --exp 1         # only the LM adaptation experiment
    python benchmarks/finetune.py --quick         # a smoke run (tests)

Experiment 1 — language-model adaptation under genre shift. A char GPT is pre-trained on the
training plays of two genres (tragedies, histories) and fine-tuned on the third (comedies) with
every method of ``minillm.finetune.METHODS``. Measured: validation loss on held-out comedies
(in-distribution, ID) and on the held-out plays of the two pre-training genres
(out-of-distribution, OOD: forgetting), trainable parameters, ms/step, peak memory of a training
step (tracemalloc: the NumPy arrays allocated), checkpoint size (a full checkpoint, or the
adapter only). WiSE-FT: θ_α = (1−α)θ_pre + αθ_ft for α = 0, 0.1, ..., 1 (ID vs OOD plot).

Experiment 2 — a classification task where pre-training pays: is a 64-character window of a
comedy speech real Shakespeare, or the same kind of window with its words shuffled? (An
acceptability task, the analogue of GLUE's CoLA, where pre-training helps most.) Why this task:
the genre of unseen plays (lesson 11) stays near chance with few labels, and so did the first
choice here, which of four tragedies a speech's first 64 characters come from (0.249 ± 0.013 with
4 labels per play, 0.265 ± 0.018 with 256, chance 0.25; 3 seeds, a run we stopped): a tiny char
model pooled over 64 characters finds almost no play-specific signal. Word order, by contrast, is
exactly what a causal LM learns in pre-training. The windows come from the comedies, the genre
the backbone was *not* pre-trained on. Measured: test accuracy against the number of labels for
the pre-trained backbone and for the same architecture from scratch (3 seeds, mean ± std); every
method at one label budget (equal steps; learning rate chosen per method on the dev split, seed
0); weak supervision (labeling functions: a capitalized word in mid-line, a line starting in
lower case, and the share of adjacent word pairs ever seen in the pre-training text; then one
round of self-training) against gold labels.

Writes ``benchmarks/results/finetune.json``, ``finetune.md`` and PNGs (``--quick``: ``*_quick*``).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from minillm import backend  # noqa: E402
from minillm.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from minillm.data import CharTokenizer, get_batch, load_plays, split_plays  # noqa: E402
from minillm.finetune import (ABSTAIN, apply_labeling_functions, finetune, finetune_lm, interpolate,  # noqa: E402
                              majority_vote, self_training)
from minillm.models.gpt import GPT, GPTConfig  # noqa: E402
from minillm.peft import AdapterConfig, LoraConfig, ReftConfig  # noqa: E402
from minillm.pretrain import pretrain  # noqa: E402
from minillm.tensor import no_grad, tensor  # noqa: E402

RESULTS = Path(HERE) / "results"


@dataclass
class Config:
    source_genres: Tuple[str, ...] = ("tragedies", "histories")
    target_genre: str = "comedies"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    pretrain_steps: int = 2000
    pretrain_lr: float = 2e-3
    batch_size: int = 16
    # experiment 1
    lm_steps: int = 300
    lm_lr: Dict[str, float] = field(default_factory=lambda: {
        "full": 1e-3, "freeze": 1e-3, "linear-probe": 3e-3, "lp-ft": 1e-3, "lora": 3e-3, "adapter": 3e-3,
        "reft": 3e-3})
    eval_batches: int = 16
    # experiment 2
    min_chars: int = 64
    n_test: int = 500
    n_dev: int = 300
    labels_per_class: Tuple[int, ...] = (4, 16, 64, 256)
    clf_steps: int = 60
    clf_batch_size: int = 16
    method_labels_per_class: int = 64
    lr_grid: Tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    seeds: Tuple[int, ...] = (0, 1, 2)
    weak_examples: int = 1024
    quick: bool = False

    @classmethod
    def quick_config(cls):
        return cls(pretrain_steps=5, lm_steps=2, eval_batches=1, labels_per_class=(2, 4), clf_steps=2,
                   method_labels_per_class=4, lr_grid=(1e-3,), seeds=(0,), weak_examples=32, n_layer=2,
                   n_embd=16, block_size=32, min_chars=32, n_test=48, n_dev=32, quick=True)


# ------------------------------------------------------------------ data
def corpus(cfg: Config):
    plays = load_plays()
    train, val = split_plays(plays)
    join = lambda ps: "\n".join(p.text for p in ps)   # noqa: E731
    tok = CharTokenizer.from_text("\n".join(p.text for p in plays))
    enc = lambda text: np.asarray(tok.encode(text), dtype=np.int64)   # noqa: E731
    cap = 200_000 if cfg.quick else None
    d = {"pretrain": join([p for p in train if p.genre in cfg.source_genres]),
         "target_train": join([p for p in train if p.genre == cfg.target_genre]),
         "id_val": join([p for p in val if p.genre == cfg.target_genre]),
         "ood_val": join([p for p in val if p.genre in cfg.source_genres])}
    return tok, {k: enc(v[:cap] if cap else v) for k, v in d.items()}, train, val


def lm_loss(model, data, cfg: Config, seed: int = 1234) -> float:
    """Mean next-token loss over ``eval_batches`` fixed random windows (the same for every model)."""
    rng = np.random.default_rng(seed)
    losses = []
    model.eval()
    with no_grad():
        for _ in range(cfg.eval_batches):
            x, y = get_batch(data, 32, cfg.block_size, rng)
            losses.append(float(model(tensor(x), tensor(y))[1].item()))
    return float(np.mean(losses))


def build_gpt(cfg: Config, vocab: int, seed: int) -> GPT:
    backend.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                         n_embd=cfg.n_embd))


def pretrained_base(cfg: Config, tok, data, out_dir: Path, log) -> Tuple[GPT, dict]:
    path = out_dir / ("base_quick.npz" if cfg.quick else "base.npz")
    settings = {k: getattr(cfg, k) for k in ("source_genres", "n_layer", "n_head", "n_embd", "block_size",
                                             "pretrain_steps", "pretrain_lr", "batch_size")}
    model = build_gpt(cfg, tok.vocab_size, 0)
    if path.exists():
        ck = load_checkpoint(path)
        if json.dumps(ck.get("settings"), sort_keys=True) == json.dumps(settings, sort_keys=True):
            model.load_state_dict(ck.model_state)
            log(f"reusing the pre-trained base {path}")
            return model, ck.get("pretrain_info")
    t0 = time.perf_counter()
    res = pretrain(model, "causal", data["pretrain"], None, steps=cfg.pretrain_steps,
                   batch_size=cfg.batch_size, block_size=cfg.block_size, lr=cfg.pretrain_lr, log=log)
    info = {"seconds": time.perf_counter() - t0, "final_train_loss": float(np.mean(res["train_loss"][-20:]))}
    save_checkpoint(path, model, settings=settings, pretrain_info=info, model_config=model.config.to_dict(),
                    tokenizer=tok.to_dict())
    return model, info


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() \
        else Path(path).stat().st_size


def peak_step_memory(model_fn, data, cfg: Config) -> int:
    """Peak bytes of NumPy arrays allocated during 2 training steps (tracemalloc)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base_mem = tracemalloc.get_traced_memory()[0]
    model_fn(2)
    peak = tracemalloc.get_traced_memory()[1] - base_mem
    tracemalloc.stop()
    return int(peak)


# ------------------------------------------------------------------ experiment 1
def lm_methods(cfg: Config):
    return [("full", {}), ("freeze", {"freeze_blocks": cfg.n_layer - 1}), ("linear-probe", {}),
            ("lp-ft", {"probe_steps": cfg.lm_steps // 2}),
            ("lora", {"peft_config": LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])}),
            ("adapter", {"peft_config": AdapterConfig(bottleneck=16)}),
            ("reft", {"peft_config": ReftConfig(low_rank_dimension=4, positions="all")})]


def experiment_1(cfg: Config, out_dir: Path, log) -> dict:
    tok, data, _, _ = corpus(cfg)
    base, info = pretrained_base(cfg, tok, data, out_dir, log)
    res = {"pretrain": info, "base": {"id": lm_loss(base, data["id_val"], cfg), "ood": lm_loss(base, data["ood_val"], cfg)},
           "methods": {}, "tokens": {k: int(len(v)) for k, v in data.items()}}
    log(f"base: ID {res['base']['id']:.4f} OOD {res['base']['ood']:.4f}")
    full_model = None
    for name, kw in lm_methods(cfg):
        model = copy.deepcopy(base)
        r = finetune_lm(model, data["target_train"], method=name, steps=cfg.lm_steps, batch_size=cfg.batch_size,
                        lr=cfg.lm_lr[name], seed=0, **copy.deepcopy(kw))
        trained = r["model"]
        row = {"id": lm_loss(trained, data["id_val"], cfg), "ood": lm_loss(trained, data["ood_val"], cfg),
               "trainable": r["trainable_params"], "total": r["total_params"], "ms_per_step": r["ms_per_step"],
               "lr": cfg.lm_lr[name]}
        ck = out_dir / f"exp1_{name}"
        if name in ("lora", "adapter", "reft"):
            trained.save_pretrained(ck, base_model_name_or_path="base.npz")
        else:
            ck = out_dir / f"exp1_{name}.npz"
            save_checkpoint(ck, model, model_config=model.config.to_dict())
        row["checkpoint_bytes"] = dir_size(ck)
        # peak memory of two more steps of the same method, on a fresh copy
        row["peak_bytes"] = peak_step_memory(lambda n, kw=kw, name=name: finetune_lm(
            copy.deepcopy(base), data["target_train"], method="full" if name == "lp-ft" else name, steps=n,
            batch_size=cfg.batch_size, lr=1e-4, **copy.deepcopy(kw if name != "lp-ft" else {})), data, cfg)
        res["methods"][name] = row
        log(f"{name}: ID {row['id']:.4f} OOD {row['ood']:.4f} trainable {row['trainable']} "
            f"{row['ms_per_step']:.0f} ms/step")
        if name == "full":
            full_model = model
    res["wise"] = []
    for alpha in np.round(np.arange(0, 1.01, 0.1), 2):
        m = interpolate(base, full_model, float(alpha))
        res["wise"].append({"alpha": float(alpha), "id": lm_loss(m, data["id_val"], cfg),
                            "ood": lm_loss(m, data["ood_val"], cfg)})
        log(f"WiSE-FT alpha {alpha}: ID {res['wise'][-1]['id']:.4f} OOD {res['wise'][-1]['ood']:.4f}")
    return res


# ------------------------------------------------------------------ experiment 2
def shuffle_words(text: str, rng) -> str:
    """The words (space-separated, line breaks kept inside them) of ``text`` in a random order."""
    words = text.split(" ")
    for _ in range(10):
        order = rng.permutation(len(words))
        if len(words) < 2 or (order != np.arange(len(words))).any():
            break
    return " ".join(words[i] for i in order)


def acceptability_data(cfg: Config, plays):
    """Windows (first ``block_size`` chars of comedy speeches ≥ ``min_chars``) in a fixed random
    order; odd positions get their words shuffled (label 1), even ones stay real (label 0)."""
    windows = [s.text[:cfg.block_size] for p in plays if p.genre == cfg.target_genre for s in p.speeches
               if len(s.text) >= cfg.min_chars]
    rng = np.random.default_rng(0)
    windows = [windows[i] for i in rng.permutation(len(windows))]
    texts, labels = [], []
    for i, w in enumerate(windows):
        texts.append(shuffle_words(w, rng) if i % 2 else w)
        labels.append(i % 2)
    return texts, np.asarray(labels, dtype=np.int64)


def split_indices(n, n_test, n_dev):
    idx = np.arange(n)     # the windows are already in a random order
    return {"test": idx[:n_test], "dev": idx[n_test:n_test + n_dev], "train": idx[n_test + n_dev:]}


def word_pairs(text: str) -> set:
    words = re.findall(r"[a-z']+", text.lower())
    return set(zip(words, words[1:]))


def labeling_functions(known_pairs: set):
    """Rules that vote 1 (shuffled), 0 (real) or abstain, written without looking at gold labels."""
    def capital_mid_line(t):
        # a capitalized word inside a line, not "I" and not after . ! ? : ; -> probably shuffled
        for line in t.split("\n"):
            words = line.split(" ")
            for prev, w in zip(words, words[1:]):
                if w[:1].isupper() and w not in ("I", "I'll", "I'd", "I'm", "O") and prev[-1:] not in ".!?:;":
                    return 1
        return ABSTAIN

    def lower_line_start(t):
        lines = [l for l in t.split("\n")[:-1] if l]     # the last line may be cut
        return 1 if any(l[0].islower() for l in lines) else ABSTAIN

    def seen_pairs(t):
        words = re.findall(r"[a-z']+", t.lower())
        pairs = list(zip(words, words[1:]))
        if len(pairs) < 3:
            return ABSTAIN
        share = np.mean([p in known_pairs for p in pairs])
        return 0 if share >= 0.6 else 1 if share <= 0.3 else ABSTAIN
    return [capital_mid_line, lower_line_start, seen_pairs]


def take_per_class(pool, labels, k, seed):
    """k examples of each class from ``pool`` (nested for growing k at one seed)."""
    rng = np.random.default_rng([seed, 7])
    chosen = []
    for c in np.unique(labels[pool]):
        members = pool[labels[pool] == c]
        chosen += list(members[rng.permutation(len(members))][:k])
    return np.sort(chosen)


def clf_methods(cfg: Config):
    qv, qkvo = ["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "out_proj"]
    return [("full", "full", {}), ("linear-probe", "linear-probe", {}),
            ("lp-ft", "lp-ft", {"probe_steps": cfg.clf_steps}),
            (f"freeze {cfg.n_layer - 1} of {cfg.n_layer} blocks", "freeze", {"freeze_blocks": cfg.n_layer - 1}),
            ("LoRA r=4 q,v", "lora", {"peft_config": LoraConfig(r=4, lora_alpha=8, target_modules=qv)}),
            ("LoRA r=8 q,v", "lora", {"peft_config": LoraConfig(r=8, lora_alpha=16, target_modules=qv)}),
            ("LoRA r=4 q,k,v,o", "lora", {"peft_config": LoraConfig(r=4, lora_alpha=8, target_modules=qkvo)}),
            ("LoRA r=8 q,k,v,o", "lora", {"peft_config": LoraConfig(r=8, lora_alpha=16, target_modules=qkvo)}),
            ("Houlsby adapter m=16", "adapter", {"peft_config": AdapterConfig(bottleneck=16)}),
            ("LoReFT r=4 (f4+l4, every block)", "reft", {"peft_config": ReftConfig(low_rank_dimension=4,
                                                                                    positions="f4+l4")})]


def experiment_2(cfg: Config, out_dir: Path, log) -> dict:
    tok, data, train_plays, _ = corpus(cfg)
    base, _ = pretrained_base(cfg, tok, data, out_dir, log)
    texts, labels = acceptability_data(cfg, train_plays)
    seqs = [np.asarray(tok.encode(t), dtype=np.int64) for t in texts]
    split = split_indices(len(seqs), cfg.n_test, cfg.n_dev)
    pad = 0
    n_cls = 2

    def run(backbone, idx, eval_idx, seed, method="full", lr=1e-3, lab=None, **kw):
        lab = labels[idx] if lab is None else lab
        return finetune(backbone, [seqs[i] for i in idx], lab, [seqs[i] for i in eval_idx], labels[eval_idx],
                        num_classes=n_cls, pad_id=pad, steps=cfg.clf_steps, batch_size=cfg.clf_batch_size, lr=lr,
                        seed=seed, method=method, dropout=0.1, pooling="mean", **copy.deepcopy(kw))

    res = {"n": {k: int(len(v)) for k, v in split.items()}, "class_counts": np.bincount(labels).tolist(),
           "majority_test": float(np.mean(labels[split["test"]] == np.bincount(labels[split["train"]]).argmax())),
           "examples": {"real": texts[0], "shuffled": texts[1]}, "curves": {}, "methods": {}, "weak": {}}
    # --- label efficiency: pre-trained vs scratch, full fine-tuning
    for name, make in (("pre-trained", lambda s: copy.deepcopy(base)),
                       ("scratch", lambda s: build_gpt(cfg, tok.vocab_size, 100 + s))):
        res["curves"][name] = {}
        for k in cfg.labels_per_class:
            accs = []
            for seed in cfg.seeds:
                idx = take_per_class(split["train"], labels, k, seed)
                accs.append(run(make(seed), idx, split["test"], seed)["accuracy"])
            res["curves"][name][k] = accs
            log(f"curve {name} {k}/class: {np.mean(accs):.3f} ± {np.std(accs):.3f}")
    # --- every method at one budget; lr from the dev split (seed 0)
    k = cfg.method_labels_per_class
    for label, method, kw in clf_methods(cfg):
        dev = {}
        for lr in cfg.lr_grid:
            idx = take_per_class(split["train"], labels, k, 0)
            dev[lr] = run(copy.deepcopy(base), idx, split["dev"], 0, method, lr, **kw)["accuracy"]
        best = max(dev, key=dev.get)
        accs, ms, trainable = [], [], None
        for seed in cfg.seeds:
            idx = take_per_class(split["train"], labels, k, seed)
            r = run(copy.deepcopy(base), idx, split["test"], seed, method, best, **kw)
            accs.append(r["accuracy"])
            ms.append(r["ms_per_step"])
            trainable = (r["trainable_params"], r["total_params"])
        res["methods"][label] = {"method": method, "dev": {str(a): b for a, b in dev.items()}, "lr": best,
                                 "test": accs, "ms_per_step": float(np.mean(ms)), "trainable": trainable[0],
                                 "total": trainable[1]}
        log(f"method {label}: {np.mean(accs):.3f} ± {np.std(accs):.3f} (lr {best})")
    # --- weak supervision: rules instead of gold labels, then self-training
    pool = split["train"][:cfg.weak_examples]
    known = word_pairs(tok.decode(data["pretrain"].tolist()))
    lfs = labeling_functions(known)
    votes = apply_labeling_functions([texts[i] for i in pool], lfs)
    weak = majority_vote(votes, n_cls)
    covered = weak != ABSTAIN
    gold = labels[pool]
    res["weak"] = {"pool": int(len(pool)), "coverage": float(covered.mean()),
                   "weak_label_accuracy": float((weak[covered] == gold[covered]).mean()) if covered.any() else None,
                   "per_lf": [{"name": lf.__name__, "coverage": float((votes[:, j] != ABSTAIN).mean()),
                               "accuracy": float((votes[votes[:, j] != ABSTAIN, j] == gold[votes[:, j] != ABSTAIN]).mean())
                               if (votes[:, j] != ABSTAIN).any() else None} for j, lf in enumerate(lfs)],
                   "rows": {}}
    test_seqs, test_labels = [seqs[i] for i in split["test"]], labels[split["test"]]
    rows = {
        "gold labels, every pool example": lambda s: run(copy.deepcopy(base), pool, split["test"], s)["accuracy"],
        "gold labels, only the examples the rules label": lambda s: run(copy.deepcopy(base), pool[covered],
                                                                        split["test"], s)["accuracy"],
        "weak labels (majority vote of the rules)": lambda s: run(copy.deepcopy(base), pool[covered], split["test"], s,
                                                                  lab=weak[covered])["accuracy"],
        "weak labels + 1 round of self-training (p ≥ 0.9)": lambda s: self_training(
            lambda: copy.deepcopy(base), [seqs[i] for i in pool], weak, test_seqs, test_labels, num_classes=n_cls,
            pad_id=pad, rounds=1, threshold=0.9, steps=cfg.clf_steps, batch_size=cfg.clf_batch_size, lr=1e-3,
            seed=s)["accuracy"]}
    for name, fn in rows.items():
        res["weak"]["rows"][name] = [fn(s) for s in cfg.seeds]
        log(f"weak: {name}: {np.mean(res['weak']['rows'][name]):.3f}")
    return res


# ------------------------------------------------------------------ report
def _ms(x):
    return f"{np.mean(x):.3f} ± {np.std(x):.3f}"


def plots(results: dict, suffix: str) -> List[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    if "exp1" in results:
        w = results["exp1"]["wise"]
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot([r["id"] for r in w], [r["ood"] for r in w], "o-", label="WiSE-FT α = 0 … 1")
        for r in w:
            if r["alpha"] in (0.0, 0.5, 1.0):
                ax.annotate(f"α={r['alpha']:g}", (r["id"], r["ood"]), textcoords="offset points", xytext=(4, 4))
        for name, row in results["exp1"]["methods"].items():
            ax.plot(row["id"], row["ood"], "x")
            ax.annotate(name, (row["id"], row["ood"]), fontsize=7, textcoords="offset points", xytext=(3, -8))
        ax.set_xlabel("ID val loss (held-out comedies)")
        ax.set_ylabel("OOD val loss (held-out tragedies + histories)")
        ax.set_title("LM adaptation: ID vs OOD loss")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = RESULTS / f"finetune_wise{suffix}.png"
        fig.savefig(path, dpi=110)
        written.append(path.name)
    if "exp2" in results:
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, curve in results["exp2"]["curves"].items():
            ks = sorted(curve, key=int)
            ax.errorbar([int(k) for k in ks], [np.mean(curve[k]) for k in ks], yerr=[np.std(curve[k]) for k in ks],
                        marker="o", capsize=3, label=name)
        ax.axhline(0.5, color="gray", ls=":", label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("labels per class (real / shuffled)")
        ax.set_ylabel("test accuracy")
        ax.set_title("Real or word-shuffled? full FT, mean ± std")
        ax.legend()
        fig.tight_layout()
        path = RESULTS / f"finetune_labels{suffix}.png"
        fig.savefig(path, dpi=110)
        written.append(path.name)
    return written


def markdown(results: dict, pngs: List[str]) -> str:
    cfg = results["config"]
    L = ["# Fine-tuning methods on one pre-trained char GPT", "",
         f"Backbone: char GPT, {cfg['n_layer']} layers, {cfg['n_embd']} dims, {cfg['n_head']} heads, block "
         f"{cfg['block_size']}; pre-trained {cfg['pretrain_steps']} AdamW steps (batch {cfg['batch_size']}, "
         f"lr {cfg['pretrain_lr']}) on the training plays of {' + '.join(cfg['source_genres'])}. "
         f"Run: {results['machine']}, {results['minutes']:.1f} min wall time "
         f"{'(quick mode: a smoke test, not results)' if cfg['quick'] else ''}.", ""]
    if "exp1" in results:
        e = results["exp1"]
        L += ["## Experiment 1: LM adaptation under genre shift", "",
              f"Fine-tune on the training comedies ({e['tokens']['target_train']:,} chars) for {cfg['lm_steps']} steps "
              f"(batch {cfg['batch_size']} × {cfg['block_size']}). ID: held-out comedy "
              f"({e['tokens']['id_val']:,} chars); OOD: held-out {' + '.join(cfg['source_genres'])} "
              f"({e['tokens']['ood_val']:,} chars). Loss: mean over {cfg['eval_batches']} fixed batches of 32 windows.", "",
              "| method | ID val loss | OOD val loss | trainable params | trainable % | lr | ms/step | peak step memory | checkpoint |",
              "|---|---|---|---|---|---|---|---|---|",
              f"| pre-trained base (no fine-tuning) | {e['base']['id']:.4f} | {e['base']['ood']:.4f} | 0 | 0 | — | — | — | — |"]
        for name, r in e["methods"].items():
            L.append(f"| {name} | {r['id']:.4f} | {r['ood']:.4f} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f} "
                     f"| {r['lr']:g} | {r['ms_per_step']:.0f} | {r['peak_bytes'] / 2**20:.1f} MiB | "
                     f"{r['checkpoint_bytes'] / 1024:.1f} KiB |")
        L += ["", "Methods: full = every weight; freeze = embeddings (tied with the output layer) and the lowest "
              f"{cfg['n_layer'] - 1} block(s) fixed; linear-probe = the final LayerNorm and the tied output embedding "
              "only; lp-ft = that probe for half the steps, then every weight for the full step count; lora = r 8, "
              "α 16 on the q and v slices of each fused attention projection; adapter = Houlsby, bottleneck 16, "
              "layer norms trained; reft = LoReFT rank 4 on every block's output at every position. "
              "Peak memory: NumPy arrays allocated during two training steps (tracemalloc). Checkpoint: the full "
              "model's .npz, or for the PEFT methods the adapter directory (adapter_config.json + adapter_model.npz).",
              "", "### WiSE-FT: θ_α = (1−α)·θ_pre-trained + α·θ_full-FT", "",
              "| α | " + " | ".join(f"{r['alpha']:.1f}" for r in e["wise"]) + " |",
              "|---|" + "---|" * len(e["wise"]),
              "| ID loss | " + " | ".join(f"{r['id']:.4f}" for r in e["wise"]) + " |",
              "| OOD loss | " + " | ".join(f"{r['ood']:.4f}" for r in e["wise"]) + " |", ""]
        if any("wise" in p for p in pngs):
            L += [f"![WiSE-FT]({[p for p in pngs if 'wise' in p][0]})", ""]
    if "exp2" in results:
        e = results["exp2"]
        L += ["## Experiment 2: real or word-shuffled? (pre-trained vs from scratch)", "",
              f"Windows of the first {cfg['block_size']} characters of comedy speeches (≥ {cfg['min_chars']} chars; "
              f"the backbone was pre-trained on {' + '.join(cfg['source_genres'])}, not on comedies); every second "
              f"window has its words shuffled (label 1), the others are real (label 0). E.g. real "
              f"{e['examples']['real']!r}, shuffled {e['examples']['shuffled']!r}. Split: train pool "
              f"{e['n']['train']}, dev {e['n']['dev']}, test {e['n']['test']}; majority class on test "
              f"{e['majority_test']:.3f}, chance 0.5. Every run: {cfg['clf_steps']} AdamW steps, batch "
              f"{cfg['clf_batch_size']}, mean pooling, test accuracy once at the end; seeds {list(cfg['seeds'])} "
              "(label subset, head init, batch order). Why this task (and not genre or play identification, "
              "which stayed at chance): see the module docstring of benchmarks/finetune.py.",
              "", "### Label efficiency (full fine-tuning, test accuracy mean ± std)", "",
              "| backbone | " + " | ".join(f"{k}/class ({2 * int(k)} labels)" for k in e["curves"]["pre-trained"]) + " |",
              "|---|" + "---|" * len(e["curves"]["pre-trained"])]
        for name, curve in e["curves"].items():
            L.append(f"| {name} | " + " | ".join(_ms(v) for v in curve.values()) + " |")
        if any("labels" in p for p in pngs):
            L += ["", f"![label efficiency]({[p for p in pngs if 'labels' in p][0]})"]
        L += ["", f"### Every method, {cfg['method_labels_per_class']} labels per class, equal steps", "",
              "| method | test accuracy | trainable params | trainable % | lr (dev) | ms/step |", "|---|---|---|---|---|---|"]
        for name, r in e["methods"].items():
            L.append(f"| {name} | {_ms(r['test'])} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f} | "
                     f"{r['lr']:g} | {r['ms_per_step']:.0f} |")
        L += ["", f"lp-ft adds {cfg['clf_steps']} head-only probe steps (lr 10×) before its {cfg['clf_steps']} "
              "steps of full fine-tuning. The learning rate of each method is the better of "
              f"{list(cfg['lr_grid'])} on the dev split (seed 0); accuracies are on the test split.", ""]
        w = e["weak"]
        L += ["### Weak supervision (no gold labels)", "",
              "Labeling functions (no gold labels): " + "; ".join(
                  f"`{r['name']}` labels {100 * r['coverage']:.0f}% of the pool"
                  + (f" at {100 * r['accuracy']:.0f}% accuracy" if r["accuracy"] is not None else "")
                  for r in w["per_lf"]) + f". Majority vote (ties and no vote abstain) on a pool of {w['pool']} "
              f"training windows: {100 * w['coverage']:.1f}% labelled, {100 * (w['weak_label_accuracy'] or 0):.1f}% "
              "of them correctly. Self-training: fine-tune on the weak labels, relabel every pool window the model "
              "is ≥ 90% sure of, fine-tune a fresh copy of the backbone on that.", "",
              "| training labels | test accuracy |", "|---|---|"]
        for name, accs in w["rows"].items():
            L.append(f"| {name} | {_ms(accs)} |")
        L.append("")
    L += observations(results)
    L += ["## Published anchors beside ours", "",
          "| claim (paper) | published | here | reproduced? |", "|---|---|---|---|"]
    L += anchor_rows(results)
    L += ["", f"Regenerate: `python benchmarks/finetune.py`."]
    return "\n".join(L) + "\n"


def observations(results) -> List[str]:
    """What the numbers show, written from the numbers (so the text cannot go stale)."""
    L = ["## What the runs show", ""]
    e1, e2 = results.get("exp1"), results.get("exp2")
    if e1:
        b, m, w = e1["base"], e1["methods"], e1["wise"]
        f = m["full"]
        L.append(f"- **Forgetting.** Full fine-tuning moved the ID loss by {f['id'] - b['id']:+.4f} and the OOD loss by "
                 f"{f['ood'] - b['ood']:+.4f} (nats per character). Methods whose OOD loss stayed within 0.005 of the "
                 "pre-trained model's: " + (", ".join(k for k, r in m.items() if r["ood"] <= b["ood"] + 0.005) or "none")
                 + ".")
        best = min(w, key=lambda r: r["id"] + r["ood"])
        both = [r["alpha"] for r in w if r["id"] <= f["id"] and r["ood"] <= f["ood"] and r["alpha"] < 1]
        L.append(f"- **WiSE-FT.** The lowest ID + OOD loss is at α = {best['alpha']:.1f} (ID {best['id']:.4f}, OOD "
                 f"{best['ood']:.4f}; full FT {f['id']:.4f} / {f['ood']:.4f}; pre-trained {b['id']:.4f} / {b['ood']:.4f}). "
                 + (f"Every α in {both} is at least as good as full fine-tuning on *both* ID and OOD: the weight "
                    "average costs nothing and repairs most of the forgetting." if both else
                    "No α < 1 beats full fine-tuning on both losses at once."))
        lora, full_ms = m["lora"], f["ms_per_step"]
        L.append(f"- **PEFT.** LoRA trains {lora['trainable']:,} weights ({100 * lora['trainable'] / lora['total']:.1f}%) "
                 f"and reaches ID {lora['id']:.4f} against full FT's {f['id']:.4f}; adapters {m['adapter']['id']:.4f}; "
                 f"LoReFT {m['reft']['id']:.4f} with {m['reft']['trainable']:,}. Their checkpoints are "
                 f"{lora['checkpoint_bytes'] / 1024:.0f}, {m['adapter']['checkpoint_bytes'] / 1024:.0f} and "
                 f"{m['reft']['checkpoint_bytes'] / 1024:.0f} KiB against {f['checkpoint_bytes'] / 1024:.0f} KiB. "
                 f"Per step: full {full_ms:.0f} ms, freeze {m['freeze']['ms_per_step']:.0f}, LoRA "
                 f"{lora['ms_per_step']:.0f}, adapter {m['adapter']['ms_per_step']:.0f}, LoReFT "
                 f"{m['reft']['ms_per_step']:.0f}. A frozen weight saves its gradient and its AdamW update, not the "
                 "backward through the activations above the lowest adapted layer; `freeze` also stops the backward "
                 "at its lowest trainable block"
                 + (", and unmerged LoRA's extra matrix products made it slower than full fine-tuning here"
                    if lora["ms_per_step"] > full_ms else "") + ". "
                 "The ms/step and peak-memory columns were measured on 2 cores shared with other jobs: "
                 "read them as rough.")
        L.append(f"- **Linear probe / LP-FT.** The LM's \"head\" is tied to the input embedding, so a probe's gradient "
                 "still flows through the whole network (its memory equals full fine-tuning's). LP-FT's OOD loss "
                 f"{m['lp-ft']['ood']:.4f} against full FT's {f['ood']:.4f}: "
                 + ("lower" if m["lp-ft"]["ood"] < f["ood"] else "not lower") + " — Kumar et al.'s argument is about a "
                 "randomly initialized *new* head, which a language model adapted to more text of the same "
                 "vocabulary does not have.")
    if e2:
        c = e2["curves"]
        gaps = []
        for k in c["pre-trained"]:
            pre, scr = np.array(c["pre-trained"][k]), np.array(c["scratch"][k])
            sd = max(pre.std(), scr.std())
            gaps.append(f"{k}/class {pre.mean() - scr.mean():+.3f}" + (" (> 2 std)" if pre.mean() - scr.mean() > 2 * sd
                                                                     else ""))
        L.append("- **Does pre-training pay?** Test accuracy of the pre-trained backbone minus the one from scratch: "
                 + "; ".join(gaps) + ".")
        ms = e2["methods"]
        ranked = sorted(ms.items(), key=lambda kv: -np.mean(kv[1]["test"]))
        L.append(f"- **Methods at {results['config']['method_labels_per_class']} labels per class.** Best: "
                 + ", ".join(f"{k} {np.mean(v['test']):.3f}" for k, v in ranked[:3]) + "; worst: "
                 + ", ".join(f"{k} {np.mean(v['test']):.3f}" for k, v in ranked[-2:]) + ".")
        wk = e2["weak"]["rows"]
        names = list(wk)
        L.append(f"- **Weak supervision.** Rules alone: {np.mean(wk[names[2]]):.3f}; with self-training "
                 f"{np.mean(wk[names[3]]):.3f}; gold labels on the same windows {np.mean(wk[names[1]]):.3f}, on the "
                 f"whole pool {np.mean(wk[names[0]]):.3f}.")
    L.append("")
    return L


def anchor_rows(results) -> List[str]:
    """One row per published claim: the paper's figure, ours, and whether ours shows the same thing."""
    rows = []
    e1 = results.get("exp1")
    e2 = results.get("exp2")
    yes_no = lambda ok, yes, no: yes if ok else no   # noqa: E731
    if e1:
        m = e1["methods"]
        lo, fu, ad, re_ = m["lora"], m["full"], m["adapter"], m["reft"]
        rows.append(f"| LoRA vs full FT (Hu et al. 2021, GPT-2 M on E2E) | BLEU 70.4 with 0.35M trainable vs 68.2 full | "
                    f"ID loss {lo['id']:.4f} with {lo['trainable']:,} trainable vs {fu['id']:.4f} full | "
                    + yes_no(lo["id"] <= fu["id"], "yes: LoRA at least as good",
                             f"no: LoRA trails full FT by {lo['id'] - fu['id']:.4f} nats; it keeps OOD closer to the base "
                             f"({lo['ood']:.4f} vs {fu['ood']:.4f})") + " |")
        rows.append(f"| Houlsby adapters (Houlsby et al. 2019, BERT-L on GLUE) | within 0.4 points of full FT with 3.6% of "
                    f"the parameters | ID loss {ad['id']:.4f} with {100 * ad['trainable'] / ad['total']:.1f}% vs "
                    f"{fu['id']:.4f} full | partly: {ad['id'] - fu['id']:.4f} nats behind with "
                    f"{100 * ad['trainable'] / ad['total']:.1f}% of the weights (a 64-wide model needs a larger share) |")
        ratio = lo["trainable"] / max(1, re_["trainable"])
        rows.append(f"| LoReFT (Wu et al. 2024) | 10–50× fewer parameters than LoRA at similar accuracy | "
                    f"{re_['trainable']:,} vs LoRA's {lo['trainable']:,} ({ratio:.1f}×); ID loss {re_['id']:.4f} vs "
                    f"{lo['id']:.4f} | " + yes_no(ratio >= 10 and re_["id"] <= lo["id"] + 0.005, "yes",
                                               f"no: {ratio:.0f}× fewer (r 4 against LoRA's r 8 on a narrow model), "
                                               f"and {re_['id'] - lo['id']:.4f} nats worse") + " |")
        w = e1["wise"]
        best = min(w, key=lambda r: r["ood"] + r["id"])
        rows.append(f"| WiSE-FT (Wortsman et al. 2022, CLIP) | +4 to +6 points OOD accuracy at no ID cost | "
                    f"α = {best['alpha']:.1f} (lowest ID + OOD): ID {best['id']:.4f} / OOD {best['ood']:.4f} vs "
                    f"full FT (α = 1) {w[-1]['id']:.4f} / {w[-1]['ood']:.4f} | "
                    + yes_no(best["ood"] < w[-1]["ood"] and best["id"] <= w[-1]["id"] + 0.002,
                             f"yes, in kind: OOD {w[-1]['ood'] - best['ood']:.4f} nats better at no ID cost",
                             "no") + " |")
        rows.append(f"| LP-FT (Kumar et al. 2022) | +10% OOD accuracy over fine-tuning | OOD loss {m['lp-ft']['ood']:.4f} "
                    f"vs {fu['ood']:.4f} (full FT) | "
                    + yes_no(m["lp-ft"]["ood"] < fu["ood"], "yes, in kind",
                             "no: an LM has no new random head to distort with (see above)") + " |")
    if e2:
        m = e2["methods"]
        best_lora = max((k for k in m if k.startswith("LoRA")), key=lambda k: np.mean(m[k]["test"]))
        lgap = np.mean(m[best_lora]["test"]) - np.mean(m["full"]["test"])
        rows.append(f"| LoRA vs full FT, classification (Hu et al. 2021: on par or better on GLUE) | on par | "
                    f"{best_lora}: {_ms(m[best_lora]['test'])} with {m[best_lora]['trainable']:,} trainable vs "
                    f"{_ms(m['full']['test'])} full | " + yes_no(lgap >= -0.01, f"yes ({lgap:+.3f})", f"no ({lgap:+.3f})")
                    + " |")
        gap = np.mean(m["lp-ft"]["test"]) - np.mean(m["full"]["test"])
        rows.append(f"| LP-FT, in-distribution (Kumar et al. 2022) | ID about equal to fine-tuning | test accuracy "
                    f"{_ms(m['lp-ft']['test'])} vs {_ms(m['full']['test'])} (full) | "
                    + yes_no(abs(gap) <= 0.02, f"yes ({gap:+.3f})", f"no ({gap:+.3f})") + " |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--exp", choices=["1", "2", "both"], default="both")
    parser.add_argument("--out-dir", default="out/finetune")
    parser.add_argument("--results-dir", default=None, help="where the report goes (default: benchmarks/results)")
    parser.add_argument("--results", default=None, help="merge into this JSON (default: benchmarks/results/finetune.json)")
    parser.add_argument("--merge", nargs="*", default=None,
                        help="run nothing: merge these JSON files (experiments run in separate processes) into the "
                             "results and rewrite the report")
    args = parser.parse_args(argv)
    global RESULTS
    if args.results_dir:
        RESULTS = Path(args.results_dir)
    cfg = Config.quick_config() if args.quick else Config()
    suffix = "_quick" if args.quick else ""
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    json_path = Path(args.results) if args.results else RESULTS / f"finetune{suffix}.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    log = lambda *a: print(*a, flush=True)   # noqa: E731
    if args.merge is not None:
        for extra in args.merge:
            other = json.loads(Path(extra).read_text())
            results.update({k: v for k, v in other.items() if k.startswith("exp")})
            results.setdefault("runs", {}).update(other.get("runs", {}))
        results["minutes"] = sum(results["runs"].values())
        json_path.write_text(json.dumps(results, indent=1, default=float))
        pngs = plots(results, suffix)
        (RESULTS / f"finetune{suffix}.md").write_text(markdown(results, pngs))
        return 0
    t0 = time.perf_counter()
    if args.exp in ("1", "both"):
        results["exp1"] = experiment_1(cfg, out_dir, log)
    if args.exp in ("2", "both"):
        results["exp2"] = experiment_2(cfg, out_dir, log)
    results["config"] = asdict(cfg)
    minutes = (time.perf_counter() - t0) / 60
    results.setdefault("runs", {})[args.exp] = minutes
    results["minutes"] = sum(results["runs"].values())
    results["machine"] = f"{os.cpu_count()} CPU core(s), {platform.machine()}, shared with other jobs"
    json_path.write_text(json.dumps(results, indent=1, default=float))
    pngs = plots(results, suffix)
    (RESULTS / f"finetune{suffix}.md").write_text(markdown(results, pngs))
    log(f"wrote {RESULTS / f'finetune{suffix}.md'} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
