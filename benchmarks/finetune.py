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

Experiment 2 — a classification task where pre-training pays: which of four tragedies (Hamlet,
King Lear, Othello, Romeo and Juliet) a speech comes from (its first 64 characters), speeches of
those plays split at random into train / dev / test. Genre of unseen plays (lesson 11) stays near
chance with few labels: genre is a weak, diffuse signal for a tiny model. Play identity is
carried by names, places and themes that a char LM pre-trained on the plays has seen, so
pre-training has something to transfer (the pre-training text contains these plays, without
labels: ULMFiT's setting, where the LM is fine-tuned on the task's own text). Measured: test
accuracy against the number of labels for the pre-trained backbone and for the same
architecture from scratch (3 seeds, mean ± std); every method at one label budget (equal
steps; learning rate chosen per method on the dev split, seed 0); weak supervision (labeling
functions that vote for a play when a speech names one of its characters, then one round of
self-training) against gold labels.

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
    plays: Tuple[str, ...] = ("hamlet", "king-lear", "othello", "romeo-and-juliet")
    min_chars: int = 64
    labels_per_class: Tuple[int, ...] = (4, 16, 64, 256)
    clf_steps: int = 60
    clf_batch_size: int = 16
    method_labels_per_class: int = 64
    lr_grid: Tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    seeds: Tuple[int, ...] = (0, 1, 2)
    weak_examples: int = 1024
    max_eval: Optional[int] = None     # cap the dev/test speeches (quick runs)
    quick: bool = False

    @classmethod
    def quick_config(cls):
        return cls(pretrain_steps=5, lm_steps=2, eval_batches=1, labels_per_class=(2, 4), clf_steps=2,
                   method_labels_per_class=4, lr_grid=(1e-3,), seeds=(0,), weak_examples=32, n_layer=2,
                   n_embd=16, block_size=32, min_chars=32, max_eval=48, quick=True)


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
def speeches(cfg: Config, plays) -> Tuple[List[str], np.ndarray, List[List[str]]]:
    chosen = [p for p in plays if p.slug in cfg.plays]
    chosen.sort(key=lambda p: cfg.plays.index(p.slug))
    texts, labels, names = [], [], []
    for i, p in enumerate(chosen):
        # character names (title case) for the labeling functions: the play's speakers
        speakers = sorted({s.speaker for s in p.speeches})
        words = {w.capitalize() for s in speakers for w in re.findall(r"[A-Za-z]{4,}", s)}
        names.append(sorted(words - {"First", "Second", "Third", "Lord", "Lady", "King", "Queen", "Duke", "Servant",
                                     "Messenger", "Gentleman", "Officer", "Captain", "Prince", "Ghost", "Player",
                                     "Both", "Nurse", "Clown", "Fool", "Doctor", "Page", "Watch", "Citizen",
                                     "Knight", "Herald", "Musician", "Sailor", "Senator", "Friar", "Apothecary",
                                     "Chorus", "Prologue", "Lords", "Attendant", "Attendants", "Gentlemen",
                                     "Soldier", "Soldiers", "Cornwall", "Albany", "France", "Burgundy", "Ambassador"}))
        for s in p.speeches:
            if len(s.text) >= cfg.min_chars:
                texts.append(s.text[:cfg.block_size])
                labels.append(i)
    return texts, np.asarray(labels), names


def split_indices(labels, seed=0, dev=0.15, test=0.25):
    rng = np.random.default_rng(seed)
    out = {"train": [], "dev": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test, n_dev = int(len(idx) * test), int(len(idx) * dev)
        out["test"] += list(idx[:n_test])
        out["dev"] += list(idx[n_test:n_test + n_dev])
        out["train"] += list(idx[n_test + n_dev:])
    return {k: np.sort(v) for k, v in out.items()}


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
    texts, labels, names = speeches(cfg, train_plays)
    seqs = [np.asarray(tok.encode(t), dtype=np.int64) for t in texts]
    split = split_indices(labels)
    if cfg.max_eval:
        split = {k: (v if k == "train" else np.sort(np.random.default_rng(0).permutation(v)[:cfg.max_eval]))
                 for k, v in split.items()}
    pad = 0
    n_cls = len(cfg.plays)

    def run(backbone, idx, eval_idx, seed, method="full", lr=1e-3, **kw):
        return finetune(backbone, [seqs[i] for i in idx], labels[idx], [seqs[i] for i in eval_idx], labels[eval_idx],
                        num_classes=n_cls, pad_id=pad, steps=cfg.clf_steps, batch_size=cfg.clf_batch_size, lr=lr,
                        seed=seed, method=method, dropout=0.1, pooling="mean", **copy.deepcopy(kw))

    res = {"n": {k: int(len(v)) for k, v in split.items()}, "class_counts": np.bincount(labels).tolist(),
           "majority_test": float(np.mean(labels[split["test"]] == np.bincount(labels[split["train"]]).argmax())),
           "curves": {}, "methods": {}, "weak": {}}
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
    # --- weak supervision: character-name labeling functions, then self-training
    rng = np.random.default_rng(0)
    pool = np.sort(rng.permutation(split["train"])[:cfg.weak_examples])
    lfs = [lambda t, c=c, ws=tuple(ws): c if any(w in t for w in ws) else ABSTAIN for c, ws in enumerate(names)]
    votes = apply_labeling_functions([texts[i] for i in pool], lfs)
    weak = majority_vote(votes, n_cls)
    covered = weak != ABSTAIN
    res["weak"] = {"pool": int(len(pool)), "coverage": float(covered.mean()),
                   "weak_label_accuracy": float((weak[covered] == labels[pool][covered]).mean()) if covered.any() else None,
                   "rows": {}}
    for name, fn in (
            ("gold labels, every pool example", lambda s: run(copy.deepcopy(base), pool, split["test"], s)["accuracy"]),
            ("gold labels, only the examples the rules cover",
             lambda s: run(copy.deepcopy(base), pool[covered], split["test"], s)["accuracy"]),
            ("weak labels (majority vote of the rules)", lambda s: finetune(
                copy.deepcopy(base), [seqs[i] for i in pool[covered]], weak[covered], [seqs[i] for i in split["test"]],
                labels[split["test"]], num_classes=n_cls, pad_id=pad, steps=cfg.clf_steps,
                batch_size=cfg.clf_batch_size, lr=1e-3, seed=s)["accuracy"]),
            ("weak labels + 1 round of self-training (p ≥ 0.9)", lambda s: self_training(
                lambda: copy.deepcopy(base), [seqs[i] for i in pool], weak, [seqs[i] for i in split["test"]],
                labels[split["test"]], num_classes=n_cls, pad_id=pad, rounds=1, threshold=0.9, steps=cfg.clf_steps,
                batch_size=cfg.clf_batch_size, lr=1e-3, seed=s)["accuracy"])):
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
        ax.axhline(1 / len(results["config"]["plays"]), color="gray", ls=":", label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("labelled speeches per play")
        ax.set_ylabel("test accuracy")
        ax.set_title("Which play? full fine-tuning, mean ± std")
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
        L += ["## Experiment 2: which play is this speech from? (pre-trained vs from scratch)", "",
              f"Speeches (≥ {cfg['min_chars']} chars, first {cfg['block_size']} chars kept) of {', '.join(cfg['plays'])}; "
              f"split at random (per play) into train {e['n']['train']}, dev {e['n']['dev']}, test {e['n']['test']}. "
              f"Majority class on test: {e['majority_test']:.3f}; chance 0.25. Every run: {cfg['clf_steps']} AdamW steps, "
              f"batch {cfg['clf_batch_size']}, mean pooling, test accuracy once at the end; seeds {list(cfg['seeds'])} "
              "(label subset, head init, batch order). Why this task: see the module docstring of "
              "benchmarks/finetune.py (names and places tie a speech to its play, and the pre-trained LM has read them).",
              "", "### Label efficiency (full fine-tuning, test accuracy mean ± std)", "",
              "| backbone | " + " | ".join(f"{k}/play ({4 * int(k)})" for k in e["curves"]["pre-trained"]) + " |",
              "|---|" + "---|" * len(e["curves"]["pre-trained"])]
        for name, curve in e["curves"].items():
            L.append(f"| {name} | " + " | ".join(_ms(v) for v in curve.values()) + " |")
        if any("labels" in p for p in pngs):
            L += ["", f"![label efficiency]({[p for p in pngs if 'labels' in p][0]})"]
        L += ["", f"### Every method, {cfg['method_labels_per_class']} labels per play, equal steps", "",
              "| method | test accuracy | trainable params | trainable % | lr (dev) | ms/step |", "|---|---|---|---|---|---|"]
        for name, r in e["methods"].items():
            L.append(f"| {name} | {_ms(r['test'])} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f} | "
                     f"{r['lr']:g} | {r['ms_per_step']:.0f} |")
        L += ["", f"lp-ft adds {cfg['clf_steps']} head-only probe steps (lr 10×) before its {cfg['clf_steps']} "
              "steps of full fine-tuning. The learning rate of each method is the better of "
              f"{list(cfg['lr_grid'])} on the dev split (seed 0); accuracies are on the test split.", ""]
        w = e["weak"]
        L += ["### Weak supervision (no gold labels)", "",
              f"Labeling functions: one per play, voting for it when the speech contains a word of one of its "
              f"speakers' names (generic titles removed); majority vote, ties and no-vote abstain. On a pool of "
              f"{w['pool']} training speeches the rules label {100 * w['coverage']:.1f}% with "
              f"{100 * (w['weak_label_accuracy'] or 0):.1f}% accuracy.", "",
              "| training labels | test accuracy |", "|---|---|"]
        for name, accs in w["rows"].items():
            L.append(f"| {name} | {_ms(accs)} |")
        L.append("")
    L += ["## Published anchors beside ours", "",
          "| claim (paper) | published | here |", "|---|---|---|"]
    L += anchor_rows(results)
    L += ["", f"Regenerate: `python benchmarks/finetune.py`."]
    return "\n".join(L) + "\n"


def anchor_rows(results) -> List[str]:
    rows = []
    e1 = results.get("exp1")
    e2 = results.get("exp2")
    if e1:
        m = e1["methods"]
        rows.append(f"| LoRA vs full FT (Hu et al. 2021, GPT-2 M on E2E) | BLEU 70.4 with 0.35M trainable vs 68.2 full | "
                    f"ID loss {m['lora']['id']:.4f} with {m['lora']['trainable']:,} trainable vs {m['full']['id']:.4f} full |")
        rows.append(f"| Houlsby adapters (Houlsby et al. 2019, BERT-L on GLUE) | within 0.4 points of full FT with 3.6% of "
                    f"the parameters | ID loss {m['adapter']['id']:.4f} with "
                    f"{100 * m['adapter']['trainable'] / m['adapter']['total']:.1f}% vs {m['full']['id']:.4f} full |")
        rows.append(f"| LoReFT (Wu et al. 2024) | 10–50× fewer parameters than LoRA at similar accuracy | "
                    f"{m['reft']['trainable']:,} vs LoRA's {m['lora']['trainable']:,} "
                    f"({m['lora']['trainable'] / max(1, m['reft']['trainable']):.1f}×); ID loss {m['reft']['id']:.4f} vs "
                    f"{m['lora']['id']:.4f} |")
        w = e1["wise"]
        best = min(w, key=lambda r: r["ood"] + r["id"])
        rows.append(f"| WiSE-FT (Wortsman et al. 2022, CLIP) | +4 to +6 points OOD accuracy at no ID cost | "
                    f"α = {best['alpha']:.1f} (lowest ID + OOD): ID {best['id']:.4f} / OOD {best['ood']:.4f} vs "
                    f"full FT (α = 1) {w[-1]['id']:.4f} / {w[-1]['ood']:.4f} |")
        rows.append(f"| LP-FT (Kumar et al. 2022) | +10% OOD accuracy over fine-tuning | OOD loss {m['lp-ft']['ood']:.4f} "
                    f"vs {m['full']['ood']:.4f} (full FT) |")
    if e2:
        m = e2["methods"]
        rows.append(f"| LP-FT, in-distribution (Kumar et al. 2022) | ID about equal to fine-tuning | test accuracy "
                    f"{_ms(m['lp-ft']['test'])} vs {_ms(m['full']['test'])} (full) |")
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
