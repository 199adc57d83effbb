"""Fine-tuning a pre-trained backbone (GPT, BERT or T5's encoder) for sequence classification.

    seqs = encode_examples(texts, tokenizer, max_len=128)
    result = finetune(backbone, seqs, labels, val_seqs, val_labels, num_classes=6, pad_id=pad, steps=500)

:func:`finetune` puts a fresh :class:`~minillm.models.classifier.SequenceClassifier` head on the
backbone and trains every weight with the step every loop shares
(``minillm.training_step.TrainingStep``) on shuffled, right-padded mini-batches; then it measures
accuracy and balanced accuracy once, at the end (:func:`evaluate_classifier`).
"""
from __future__ import annotations

import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import backend
from .tensor import no_grad, tensor
from .training_step import FINETUNE_ORDER_STREAM, TrainingStep, make_optimizer

__all__ = ["encode_examples", "pad_batch", "evaluate_classifier", "balanced_accuracy", "finetune"]


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


def finetune(backbone, train_seqs, train_labels, val_seqs, val_labels, *, num_classes: int, pad_id: int,
             steps: int, batch_size: int = 32, lr: float = 5e-4, weight_decay: float = 0.01,
             warmup: Optional[int] = None, dropout: float = 0.1, pooling: str = "mean", grad_clip: float = 1.0,
             seed: int = 0, eval_batch_size: int = 64, log: Optional[Callable] = None) -> dict:
    """Fine-tune ``backbone`` with a fresh :class:`SequenceClassifier` head (all weights train) for
    ``steps`` AdamW steps (warmup then cosine decay to ``lr / 10``) on shuffled mini-batches
    (epochs without replacement) of the int64 sequences ``train_seqs`` with integer labels, then
    measure validation accuracy once, at the end (no model selection on the validation set).

    Returns ``{"accuracy", "balanced_accuracy", "train_loss" (per step), "seconds", "predictions"}``.
    """
    from .models.classifier import SequenceClassifier
    from .optim import cosine_with_warmup_lr
    backend.manual_seed(seed)
    clf = SequenceClassifier(backbone, num_classes, pooling=pooling, dropout=dropout)
    device = clf.head.weight.device
    warmup = max(1, steps // 10) if warmup is None else warmup

    def loss_fn(ids, padding_mask, labels):
        return clf(ids, padding_mask, labels)[1]

    step = TrainingStep(clf, make_optimizer(clf, lr, weight_decay), loss_fn,
                        lambda it: cosine_with_warmup_lr(it, lr, lr / 10, warmup, steps), grad_clip)
    rng = np.random.default_rng([seed, FINETUNE_ORDER_STREAM])
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
        batch = (tensor(ids, device=device), tensor(mask, device=device), tensor(labels[idx], device=device))
        losses.append(step(it, batch).loss)
        if log and (it + 1) % 50 == 0:
            log(f"  finetune step {it + 1}/{steps}: loss {np.mean(losses[-50:]):.3f}")
    result = evaluate_classifier(clf, val_seqs, val_labels, pad_id, eval_batch_size)
    result.update(train_loss=losses, seconds=time.perf_counter() - t0)
    return result
