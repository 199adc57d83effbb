"""Pre-training a GPT, a BERT or a T5 with its objective (causal LM, masked LM, span corruption).

    tok = minillm.objectives.train_tokenizer(text, 1024)          # one tokenizer for all three
    model = build_model("mlm", tok.vocab_size, tokenizer=tok)      # a BERT
    history = pretrain(model, "mlm", train_ids, tok, steps=1500, val_data=val_ids)

The batches, losses and models come from ``minillm.objectives`` (the same ones
``minillm train --objective causal|mlm|span`` uses), the step from
``minillm.training_step.TrainingStep`` (the trainer's). Fine-tuning a pre-trained backbone on a
labelled task is ``minillm/finetune.py``; the experiment comparing the three objectives is
``benchmarks/pretrain_finetune.py``.
"""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from .objectives import OBJECTIVES
from .tensor import tensor
from .training_step import EVAL_BATCH_STREAM, TRAIN_BATCH_STREAM, TrainingStep, estimate_loss, make_optimizer

__all__ = ["MODEL_OBJECTIVES", "build_model", "pretrain"]

#: a model kind and the objective that pre-trains it (``build_model`` accepts either name)
MODEL_OBJECTIVES = {"gpt": "causal", "bert": "mlm", "t5": "span"}


def build_model(kind: str, vocab_size: int, block_size: int = 128, n_layer: int = 2, n_head: int = 4,
                n_embd: int = 128, dropout: float = 0.0, bias: bool = True, tokenizer=None, device=None):
    """A GPT (``kind="gpt"`` or ``"causal"``), BERT (``"bert"``/``"mlm"``) or T5 (``"t5"``/``"span"``)
    of the given size: the model of that objective in ``minillm.objectives.OBJECTIVES``. With a
    ``tokenizer`` the objective configures the model from it (T5 starts decoding with ``[PAD]``)."""
    name = MODEL_OBJECTIVES.get(kind, kind)
    if name not in OBJECTIVES:
        raise ValueError(f"unknown model kind {kind!r}: use 'gpt', 'bert' or 't5' (or an objective name)")
    objective = OBJECTIVES[name]
    ConfigClass, ModelClass = objective.model_classes
    config = ConfigClass(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                         n_embd=n_embd, dropout=dropout, bias=bias)
    if tokenizer is not None and objective.configure_model is not None:
        objective.configure_model(config, tokenizer)
    return ModelClass(config, device=device)


def pretrain(model, objective: str, train_data, tokenizer, *, steps: int, batch_size: int = 16,
             block_size: Optional[int] = None, lr: float = 1e-3, min_lr: Optional[float] = None,
             warmup: Optional[int] = None, weight_decay: float = 0.1, grad_clip: float = 1.0, seed: int = 0,
             val_data=None, eval_every: Optional[int] = None, eval_batches: int = 4,
             log: Optional[Callable] = print, log_every: int = 50) -> dict:
    """Train ``model`` with ``objective`` (a key of ``OBJECTIVES``) on the 1-D token array
    ``train_data`` for ``steps`` AdamW steps: linear warmup (``warmup`` steps, default 10%) then
    cosine decay from ``lr`` to ``min_lr`` (default ``lr / 10``), gradient clipping, weight decay
    on the weight matrices only (``make_optimizer``).

    Returns ``{"objective", "steps", "train_loss" (one per step), "val": [(step, loss)],
    "seconds", "ms_per_step"}``; the validation loss (on ``val_data``, the same ``eval_batches``
    batches each time) is measured before training, every ``eval_every`` steps and at the end.
    """
    from .optim import cosine_with_warmup_lr
    log = log or (lambda *a, **k: None)
    spec = OBJECTIVES[objective]
    cfg = SimpleNamespace(batch_size=batch_size, block_size=block_size or model.config.block_size)
    warmup = max(1, steps // 10) if warmup is None else warmup
    min_lr = lr / 10 if min_lr is None else min_lr
    device = model.wte.weight.device
    rng = np.random.default_rng([seed, TRAIN_BATCH_STREAM])

    def get_batch(data, generator):
        return [tensor(a, device=device) for a in spec.get_batch(data, cfg, generator, tokenizer)]

    def loss_fn(*batch):
        return spec.loss(model, *batch)

    def evaluate():
        val_rng = np.random.default_rng([seed, EVAL_BATCH_STREAM])
        return estimate_loss(model, loss_fn, lambda: get_batch(val_data, val_rng), eval_batches)

    step = TrainingStep(model, make_optimizer(model, lr, weight_decay), loss_fn,
                        lambda it: cosine_with_warmup_lr(it, lr, min_lr, warmup, steps), grad_clip)
    history = {"objective": objective, "steps": steps, "train_loss": [], "val": []}
    if val_data is not None:
        history["val"].append((0, evaluate()))
    model.train()
    t0 = time.perf_counter()
    for it in range(steps):
        history["train_loss"].append(step(it, get_batch(train_data, rng)).loss)
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
