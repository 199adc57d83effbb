"""Pre-training objectives (causal LM, masked LM, span corruption), fine-tuning for genre
classification, and the pre-train → fine-tune experiment.

Three ways to learn from unlabelled text, one backbone size for each:

=========  ====================  =========================================  ==================
objective  model                 input → target                             paper
=========  ====================  =========================================  ==================
causal     GPT (decoder)         x₁..x_T → x₂..x_{T+1} (next token)         Radford et al. 2018
mlm        BERT (encoder)        15% chosen, 80/10/10 corrupted → originals  Devlin et al. 2019
span       T5 (encoder-decoder)  spans → sentinels; decoder writes spans     Raffel et al. 2020
=========  ====================  =========================================  ==================

A batch function has the signature of ``minillm.train.Objective.get_batch``:
``(data, config, rng, tokenizer) -> tuple of NumPy arrays`` (``config`` needs ``batch_size``
and ``block_size``), and a loss function ``(model, *tensors) -> scalar``. So the same functions
serve ``minillm train --objective mlm|span`` and :func:`pretrain` here.

Then :func:`finetune` puts a :class:`~minillm.models.classifier.SequenceClassifier` on a
backbone and trains it on labelled speeches (6 genres); :func:`run_experiment` does it all: one
BPE tokenizer, the three pre-trainings, and fine-tuning with 1%, 10% and 100% of the labels for
each pre-trained backbone and for a randomly initialized one (``benchmarks/pretrain_finetune.py``
runs it and writes the table).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import backend
from .objectives import IGNORE_INDEX, mask_tokens, span_corruption_batch
from .tensor import no_grad, tensor

__all__ = [
    "PAD", "MASK", "CLS", "EOS", "NUM_SENTINELS", "SPECIAL_TOKENS", "sentinel_tokens", "special_ids",
    "train_tokenizer", "causal_batch", "causal_loss", "mlm_batch", "mlm_loss", "span_batch", "span_loss",
    "make_mlm_batch", "make_span_batch", "OBJECTIVE_MODELS", "BATCHES", "LOSSES", "build_model",
    "pretrain", "encode_examples", "pad_batch", "finetune", "evaluate_classifier", "balanced_accuracy", "majority_baseline",
    "ExperimentConfig", "run_experiment", "results_markdown", "register_trainer_objectives",
]

PAD, MASK, CLS, EOS = "[PAD]", "[MASK]", "[CLS]", "[EOS]"
NUM_SENTINELS = 32


def sentinel_tokens(n: int = NUM_SENTINELS) -> List[str]:
    """T5's sentinels ``<extra_id_0>``, ``<extra_id_1>``, ..."""
    return [f"<extra_id_{i}>" for i in range(n)]


#: the special tokens every objective's tokenizer gets (so one tokenizer serves all three)
SPECIAL_TOKENS: Tuple[str, ...] = (PAD, MASK, CLS, EOS, *sentinel_tokens())


def special_ids(tokenizer) -> SimpleNamespace:
    """``pad``, ``mask``, ``cls``, ``eos`` ids, ``sentinels`` (a list) and ``all`` (every special id)."""
    try:
        ids = SimpleNamespace(pad=tokenizer.special_id(PAD), mask=tokenizer.special_id(MASK),
                              cls=tokenizer.special_id(CLS), eos=tokenizer.special_id(EOS))
    except KeyError:
        raise ValueError("this tokenizer lacks the special tokens of the masked-LM / span-corruption "
                         "objectives; train it with special_tokens=minillm.pretrain.SPECIAL_TOKENS") from None
    ids.sentinels = [tokenizer.special_id(s) for s in tokenizer.special_tokens if s.startswith("<extra_id_")]
    ids.all = sorted(tokenizer.special_to_id.values())
    return ids


def train_tokenizer(text: str, vocab_size: int = 1024):
    """A byte-level BPE tokenizer of ``vocab_size`` tokens, the special tokens included."""
    from .data import BPETokenizer
    return BPETokenizer.train(text, vocab_size, special_tokens=SPECIAL_TOKENS)


# ================================================================ objectives: batches and losses
def _windows(data, config, rng):
    """``batch_size`` random windows of ``block_size`` tokens (int64)."""
    from .data import get_batch
    x, _ = get_batch(data, config.batch_size, config.block_size, rng)
    return x


def causal_batch(data, config, rng, tokenizer=None):
    """Next-token prediction (GPT): ``(x, y)``, y = x shifted left by one."""
    from .data import get_batch
    return get_batch(data, config.batch_size, config.block_size, rng)


def causal_loss(model, x, y):
    return model(x, y)[1]


def make_mlm_batch(ids, tokenizer, rng, mlm_probability: float = 0.15):
    """BERT's masked LM on a (B, T) array of token ids: ``(inputs, labels)`` from
    :func:`~minillm.objectives.mask_tokens` (15% chosen; 80% ``[MASK]``, 10% random, 10% kept;
    labels -100 except at the chosen positions). Special tokens are never chosen."""
    sp = special_ids(tokenizer)
    return mask_tokens(ids, vocab_size=tokenizer.vocab_size, mask_id=sp.mask, special_ids=sp.all,
                       pad_id=sp.pad, mlm_probability=mlm_probability, rng=rng)


def mlm_batch(data, config, rng, tokenizer):
    """Masked LM batch of ``batch_size`` random ``block_size``-token windows: ``(inputs, labels)``."""
    return make_mlm_batch(_windows(data, config, rng), tokenizer, rng,
                          getattr(config, "mlm_probability", 0.15))


def mlm_loss(model, inputs, labels):
    """Cross-entropy at the chosen positions only (the others are -100)."""
    return model.mlm_loss(inputs, labels)


def make_span_batch(ids, tokenizer, rng, noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                    lengths=None):
    """T5's span corruption of each row of ``ids`` (B, T), or of a list of 1-D sequences.

    Returns ``(src, src_padding_mask, tgt_in, tgt_targets)``: the corrupted inputs ending in
    ``[EOS]`` and right-padded with ``[PAD]`` (the mask is True at padding); the decoder inputs
    (``[PAD]`` as the start token, as T5, then the targets shifted right); the targets
    (sentinel, span, sentinel, span, ..., ``[EOS]``) with -100 at padding.
    """
    sp = special_ids(tokenizer)
    src, tgt, src_len, tgt_len = span_corruption_batch(
        ids, pad_id=sp.pad, lengths=lengths, noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length, sentinel_ids=sp.sentinels, rng=rng, eos_id=sp.eos)
    src_padding_mask = np.arange(src.shape[1])[None, :] >= src_len[:, None]
    tgt_real = np.arange(tgt.shape[1])[None, :] < tgt_len[:, None]
    tgt_in = np.concatenate([np.full((tgt.shape[0], 1), sp.pad, dtype=np.int64), tgt[:, :-1]], axis=1)
    tgt_targets = np.where(tgt_real, tgt, IGNORE_INDEX).astype(np.int64)
    return src, src_padding_mask, tgt_in, tgt_targets


def span_batch(data, config, rng, tokenizer):
    """Span-corruption batch of ``batch_size`` random windows of ``block_size - 1`` tokens (the
    encoder input, with its sentinels and ``[EOS]``, then fits in ``block_size``)."""
    cfg = SimpleNamespace(batch_size=config.batch_size, block_size=config.block_size - 1)
    return make_span_batch(_windows(data, cfg, rng), tokenizer, rng,
                           getattr(config, "noise_density", 0.15), getattr(config, "mean_noise_span_length", 3.0))


def span_loss(model, src, src_padding_mask, tgt_in, tgt_targets):
    return model(src, tgt_in, src_padding_mask, tgt_targets)[1]


#: which model each objective trains, and its batch and loss functions
OBJECTIVE_MODELS = {"causal": "gpt", "mlm": "bert", "span": "t5"}
BATCHES: Dict[str, Callable] = {"causal": causal_batch, "mlm": mlm_batch, "span": span_batch}
LOSSES: Dict[str, Callable] = {"causal": causal_loss, "mlm": mlm_loss, "span": span_loss}
DESCRIPTIONS = {
    "mlm": "masked language modelling (BERT): predict the 15% chosen tokens (80% [MASK], 10% random, 10% kept)",
    "span": "span corruption (T5): the decoder writes the spans that sentinels replaced in the encoder input",
}


def build_model(kind: str, vocab_size: int, block_size: int = 128, n_layer: int = 2, n_head: int = 4,
                n_embd: int = 128, dropout: float = 0.0, bias: bool = True, tokenizer=None, device=None):
    """A GPT (``kind="gpt"`` or ``"causal"``), BERT (``"bert"``/``"mlm"``) or T5 (``"t5"``/``"span"``)
    of the given size. For T5 the decoder starts with the tokenizer's ``[PAD]`` id."""
    from .models.bert import BERT, BERTConfig
    from .models.gpt import GPT, GPTConfig
    from .models.t5 import T5, T5Config
    kind = OBJECTIVE_MODELS.get(kind, kind)
    common = dict(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                  dropout=dropout, bias=bias)
    if kind == "gpt":
        return GPT(GPTConfig(**common), device=device)
    if kind == "bert":
        return BERT(BERTConfig(**common), device=device)
    if kind == "t5":
        start = special_ids(tokenizer).pad if tokenizer is not None else 0
        return T5(T5Config(**common, decoder_start_id=start), device=device)
    raise ValueError(f"unknown model kind {kind!r}: use 'gpt', 'bert' or 't5' (or an objective name)")


def _adamw(model, lr, weight_decay):
    """AdamW with weight decay on the matrices only (not on biases, LayerNorm or the MLM bias)."""
    from .optim import AdamW
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return AdamW([{"params": decay, "weight_decay": weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))


# ================================================================ pre-training loop
def pretrain(model, objective: str, train_data, tokenizer, *, steps: int, batch_size: int = 16,
             block_size: Optional[int] = None, lr: float = 1e-3, min_lr: Optional[float] = None,
             warmup: Optional[int] = None, weight_decay: float = 0.1, grad_clip: float = 1.0, seed: int = 0,
             val_data=None, eval_every: Optional[int] = None, eval_batches: int = 4,
             log: Optional[Callable] = print, log_every: int = 50) -> dict:
    """Train ``model`` with ``objective`` for ``steps`` AdamW steps (warmup then cosine decay).

    Returns ``{"objective", "steps", "train_loss" (one per step), "val": [(step, loss)],
    "seconds", "ms_per_step"}``; the validation loss (on ``val_data``, the same ``eval_batches``
    batches each time) is measured every ``eval_every`` steps and at the end.
    """
    from .optim import clip_grad_norm_, cosine_with_warmup_lr
    log = log or (lambda *a, **k: None)
    get_batch, loss_fn = BATCHES[objective], LOSSES[objective]
    cfg = SimpleNamespace(batch_size=batch_size, block_size=block_size or model.config.block_size)
    warmup = max(1, steps // 10) if warmup is None else warmup
    min_lr = lr / 10 if min_lr is None else min_lr
    opt = _adamw(model, lr, weight_decay)
    rng = np.random.default_rng([seed, 1])
    device = model.wte.weight.device
    history = {"objective": objective, "steps": steps, "train_loss": [], "val": []}

    def evaluate():
        erng = np.random.default_rng([seed, 2])
        model.eval()
        with no_grad():
            losses = [float(loss_fn(model, *(tensor(a, device=device) for a in get_batch(val_data, cfg, erng,
                                                                                         tokenizer))).item())
                      for _ in range(eval_batches)]
        model.train()
        return float(np.mean(losses))

    if val_data is not None:
        history["val"].append((0, evaluate()))
    model.train()
    t0 = time.perf_counter()
    for it in range(steps):
        lr_now = cosine_with_warmup_lr(it, lr, min_lr, warmup, steps)
        for g in opt.param_groups:
            g["lr"] = lr_now
        batch = [tensor(a, device=device) for a in get_batch(train_data, cfg, rng, tokenizer)]
        loss = loss_fn(model, *batch)
        opt.zero_grad()
        loss.backward()
        if grad_clip:
            clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        value = float(loss.item())
        if not math.isfinite(value):
            raise FloatingPointError(f"pretrain({objective}): loss {value} at step {it}")
        history["train_loss"].append(value)
        done = it + 1
        if val_data is not None and eval_every and done % eval_every == 0 and done < steps:
            history["val"].append((done, evaluate()))
        if log_every and (done % log_every == 0 or done == steps):
            recent = np.mean(history["train_loss"][-log_every:])
            log(f"[{objective}] step {done}/{steps}: loss {recent:.3f}, "
                f"{1e3 * (time.perf_counter() - t0) / done:.0f} ms/step")
    history["seconds"] = time.perf_counter() - t0
    history["ms_per_step"] = 1e3 * history["seconds"] / max(steps, 1)
    if val_data is not None:
        history["val"].append((steps, evaluate()))
    return history


# ================================================================ fine-tuning for classification
def encode_examples(texts: Sequence[str], tokenizer, max_len: int, cls_id: Optional[int] = None) -> List[np.ndarray]:
    """Each text as an int64 array of at most ``max_len`` tokens (truncated at the end), with
    ``cls_id`` first when given."""
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        if cls_id is not None:
            ids = [cls_id] + ids
        out.append(np.asarray(ids[:max_len], dtype=np.int64))
    return out


def pad_batch(seqs: Sequence[np.ndarray], pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest: ``(ids (B, T), padding_mask (B, T), True at padding)``."""
    lengths = np.array([len(s) for s in seqs])
    ids = np.full((len(seqs), int(lengths.max())), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    return ids, np.arange(ids.shape[1])[None, :] >= lengths[:, None]


def evaluate_classifier(clf, seqs, labels, pad_id: int, batch_size: int = 64) -> dict:
    """Accuracy, balanced accuracy (the mean over classes of the share of that class predicted
    right, so 1/C for a constant prediction however unbalanced the labels) and predictions of
    ``clf`` (eval mode, no grad); sequences are batched by length so little padding is computed."""
    device = clf.head.weight.device
    order = np.argsort([len(s) for s in seqs], kind="stable")
    preds = np.empty(len(seqs), dtype=np.int64)
    was_training = clf.training
    clf.eval()
    with no_grad():
        for i in range(0, len(order), batch_size):
            chunk = order[i:i + batch_size]
            ids, mask = pad_batch([seqs[j] for j in chunk], pad_id)
            logits = clf(tensor(ids, device=device), tensor(mask, device=device))
            preds[chunk] = backend.to_numpy(logits.data).argmax(-1)
    clf.train(was_training)
    labels = np.asarray(labels)
    return {"accuracy": float((preds == labels).mean()), "balanced_accuracy": balanced_accuracy(preds, labels),
            "predictions": preds}


def balanced_accuracy(predictions, labels) -> float:
    """Mean over the classes present in ``labels`` of the recall (correct / members)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float(np.mean([(predictions[labels == c] == c).mean() for c in np.unique(labels)]))


def majority_baseline(train_labels, val_labels) -> float:
    """Validation accuracy of always predicting the most frequent training label."""
    counts = np.bincount(np.asarray(train_labels))
    return float((np.asarray(val_labels) == counts.argmax()).mean())


def finetune(backbone, train_seqs, train_labels, val_seqs, val_labels, *, num_classes: int, pad_id: int,
             steps: int, batch_size: int = 32, lr: float = 5e-4, weight_decay: float = 0.01,
             warmup: Optional[int] = None, dropout: float = 0.1, pooling: str = "mean", grad_clip: float = 1.0,
             seed: int = 0, eval_batch_size: int = 64, log: Optional[Callable] = None) -> dict:
    """Fine-tune ``backbone`` with a fresh :class:`SequenceClassifier` head (all weights train) for
    ``steps`` AdamW steps on shuffled mini-batches (epochs without replacement), then measure
    validation accuracy once, at the end (no model selection on the validation set).

    Returns ``{"accuracy", "balanced_accuracy", "train_loss" (per step), "seconds", "predictions"}``.
    """
    from .models.classifier import SequenceClassifier
    from .optim import clip_grad_norm_, cosine_with_warmup_lr
    backend.manual_seed(seed)
    clf = SequenceClassifier(backbone, num_classes, pooling=pooling, dropout=dropout)
    device = clf.head.weight.device
    opt = _adamw(clf, lr, weight_decay)
    warmup = max(1, steps // 10) if warmup is None else warmup
    rng = np.random.default_rng([seed, 3])
    labels = np.asarray(train_labels, dtype=np.int64)
    n = len(train_seqs)
    bs = min(batch_size, n)
    order, pos = rng.permutation(n), 0
    losses = []
    t0 = time.perf_counter()
    clf.train()
    for it in range(steps):
        if pos + bs > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + bs]
        pos += bs
        ids, mask = pad_batch([train_seqs[i] for i in idx], pad_id)
        for g in opt.param_groups:
            g["lr"] = cosine_with_warmup_lr(it, lr, lr / 10, warmup, steps)
        _, loss = clf(tensor(ids, device=device), tensor(mask, device=device), tensor(labels[idx], device=device))
        opt.zero_grad()
        loss.backward()
        if grad_clip:
            clip_grad_norm_(clf.parameters(), grad_clip)
        opt.step()
        losses.append(float(loss.item()))
        if log and (it + 1) % 50 == 0:
            log(f"  finetune step {it + 1}/{steps}: loss {np.mean(losses[-50:]):.3f}")
    result = evaluate_classifier(clf, val_seqs, val_labels, pad_id, eval_batch_size)
    result.update(train_loss=losses, seconds=time.perf_counter() - t0)
    return result


# ================================================================ the experiment
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
    from .data import Tokenizer
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
    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import GENRES, encode_cached, load_corpus, load_speeches, subsample
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


# ================================================================ `minillm train --objective mlm|span`
def _configure_t5(model_config, tokenizer):
    """T5 starts decoding with [PAD] (as the span batches do)."""
    if hasattr(model_config, "decoder_start_id"):
        model_config.decoder_start_id = special_ids(tokenizer).pad


def register_trainer_objectives() -> None:
    """Register ``"mlm"`` (a BERT) and ``"span"`` (a T5) with ``minillm.train``'s objectives.

    Besides ``get_batch`` and ``loss``, each carries what the trainer must do differently from
    the causal LM: the tokenizer's ``special_tokens``, the ``model_classes`` (config class,
    model class) to build, ``configure_model`` (called on the model config before building),
    and ``generates_text=False`` (no sample at the end of the run).
    """
    from dataclasses import dataclass as _dataclass
    from .models.bert import BERT, BERTConfig
    from .models.t5 import T5, T5Config
    from .train import OBJECTIVES, Objective, register_objective

    @_dataclass(frozen=True)
    class PretrainingObjective(Objective):
        special_tokens: Tuple[str, ...] = SPECIAL_TOKENS
        model_classes: tuple = ()
        configure_model: Optional[Callable] = None
        generates_text: bool = False

    if "mlm" not in OBJECTIVES:
        register_objective(PretrainingObjective("mlm", mlm_batch, mlm_loss, DESCRIPTIONS["mlm"],
                                                model_classes=(BERTConfig, BERT)))
    if "span" not in OBJECTIVES:
        register_objective(PretrainingObjective("span", span_batch, span_loss, DESCRIPTIONS["span"],
                                                model_classes=(T5Config, T5), configure_model=_configure_t5))
