"""Ensembles: average the predictions of several models.

K models trained from different initializations (or data orders) make partly independent
errors; averaging their predicted distributions cancels some of them (Dietterich, "Ensemble
Methods in Machine Learning", 2000; Lakshminarayanan et al., "Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles", NeurIPS 2017). For the log-loss this is
guaranteed not to hurt on average: −log is convex, so by Jensen's inequality

    NLL(mean_k p_k) = −log(mean_k p_k[y]) ≤ mean_k (−log p_k[y]) = mean member NLL

on every single example. Averaging *probabilities* ("mean_prob", the default) is the classical
ensemble; averaging *logits* ("mean_logit") is a geometric mean of the distributions
(renormalized), the same thing that dropout's weight scaling approximates at test time.

Snapshot ensembles (Huang et al., "Snapshot Ensembles: Train 1, Get M for Free", ICLR 2017)
take the members from checkpoints of a single run (ideally at the ends of the cycles of a
cyclic learning-rate schedule): ``snapshot_ensemble``.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from .. import backend, ops
from ..nn import functional as F
from ..nn.module import Module, ModuleList
from ..tensor import Tensor, no_grad

COMBINE_MODES = ("mean_prob", "mean_logit")


def _first(output):
    """A model may return (logits, loss) or similar: the first element is the prediction."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _as_args(inputs) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


@contextlib.contextmanager
def _eval_mode(models):
    """Every model in eval mode inside the block, each back to its own mode after."""
    modes = [[m.training for m in model.modules()] for model in models]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for model, flags in zip(models, modes):
            for m, flag in zip(model.modules(), flags):
                m.training = flag


def combine_outputs(logits_list, combine: str = "mean_prob") -> Tensor:
    """The ensemble prediction from the members' logits (each (..., C)):
    "mean_prob" → mean of their softmax probabilities; "mean_logit" → mean of the logits."""
    if combine not in COMBINE_MODES:
        raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
    if not logits_list:
        raise ValueError("combine_outputs: no member outputs")
    terms = [ops.softmax(z, -1) for z in logits_list] if combine == "mean_prob" else list(logits_list)
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total * (1.0 / len(terms))


class Ensemble(Module):
    """Run K models on the same inputs and average their predictions.

    ``ensemble(*inputs)`` returns, with ``combine="mean_prob"`` (default), the mean of the
    members' predicted *probabilities* (softmax over the last dim), and with
    ``combine="mean_logit"`` the mean of their *logits*. ``probs(*inputs)`` always gives the
    ensemble's probability distribution and ``log_probs`` its log (for ``F.nll_loss``).

    The members are a ``ModuleList`` (``members.0.…``), so ``state_dict``, ``to`` and
    ``parameters`` cover them all. With ``eval_mode=True`` (the default) a call runs every member
    in eval mode (dropout off) under ``no_grad`` and then restores each member's mode: an
    ensemble is for prediction. ``eval_mode=False`` runs them as they are, with gradients (e.g.
    to distill the ensemble into one model).
    """

    def __init__(self, models, combine: str = "mean_prob", eval_mode: bool = True):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("Ensemble needs at least one model")
        if combine not in COMBINE_MODES:
            raise ValueError(f"Ensemble: combine must be one of {COMBINE_MODES}, got {combine!r}")
        self.members = ModuleList(models)
        self.combine, self.eval_mode = combine, eval_mode

    def __len__(self):
        return len(self.members)

    def member_logits(self, *inputs, **kwargs) -> list:
        """Each member's output (its logits) on ``inputs``, as a list."""
        members = list(self.members)
        if not self.eval_mode:
            return [_first(m(*inputs, **kwargs)) for m in members]
        with no_grad(), _eval_mode(members):
            return [_first(m(*inputs, **kwargs)) for m in members]

    def forward(self, *inputs, **kwargs):
        return combine_outputs(self.member_logits(*inputs, **kwargs), self.combine)

    def probs(self, *inputs, **kwargs) -> Tensor:
        """The ensemble's predicted distribution (..., C)."""
        out = self(*inputs, **kwargs)
        return out if self.combine == "mean_prob" else ops.softmax(out, -1)

    def log_probs(self, *inputs, **kwargs) -> Tensor:
        """log of ``probs`` (probabilities clipped at 1e-30 first, so a 0 gives −69, not −inf)."""
        if self.combine == "mean_logit":
            return ops.log_softmax(self(*inputs, **kwargs), -1)
        return ops.log(ops.clamp(self.probs(*inputs, **kwargs), min=1e-30))

    def extra_repr(self):
        return f"members={len(self.members)}, combine={self.combine!r}"


def _nll_and_accuracy(probs: np.ndarray, targets: np.ndarray, ignore_index: int):
    """Mean −log p[target] and accuracy over the targets that are not ``ignore_index``."""
    c = probs.shape[-1]
    probs, targets = probs.reshape(-1, c), targets.reshape(-1)
    valid = targets != ignore_index
    probs, targets = probs[valid], targets[valid]
    if targets.size == 0:
        return math.nan, math.nan
    picked = probs[np.arange(targets.size), targets].astype(np.float64)
    nll = float(-np.log(np.maximum(picked, 1e-300)).mean())
    accuracy = float((probs.argmax(-1) == targets).mean())
    return nll, accuracy


def evaluate_members(models, inputs, targets, loss_fn=None, combine: str = "mean_prob",
                     ignore_index: int = F.IGNORE_INDEX) -> dict:
    """Each member's loss and accuracy on one batch, and the ensemble's.

    Args:
        models: the members (or an ``Ensemble``, whose members are used).
        inputs: the model input, or a tuple of inputs (``model(*inputs)``).
        targets: integer class targets matching the logits' leading shape.
        loss_fn: ``loss_fn(logits, targets) -> scalar Tensor`` for the members
            (default ``F.cross_entropy``).
        combine: how the ensemble averages ("mean_prob" or "mean_logit").
    Returns::

        {"members": [{"loss": float, "accuracy": float}, ...],     # one per model, in order
         "mean_member_loss": float, "mean_member_accuracy": float,
         "ensemble": {"loss": float, "accuracy": float}}

    The ensemble's loss is the NLL of its averaged distribution, −mean log p̄[y]; with the
    default combine and loss this is ≤ ``mean_member_loss`` (Jensen; see the module
    docstring). Everything runs in eval mode under ``no_grad``; modes are restored after.
    """
    if isinstance(models, Ensemble):
        models = list(models.members)
    models = list(models)
    if not models:
        raise ValueError("evaluate_members needs at least one model")
    if loss_fn is None:   # classes on the last axis of the logits: flatten to (N, C) and (N,)
        def loss_fn(logits, y):
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=ignore_index)
    target_tensor = targets if getattr(targets, "_is_tensor", False) else Tensor(np.asarray(targets))
    target_array = backend.to_numpy(target_tensor.data)
    args = _as_args(inputs)
    members, all_logits = [], []
    with no_grad(), _eval_mode(models):
        for model in models:
            logits = _first(model(*args))
            all_logits.append(logits)
            probs = backend.to_numpy(ops.softmax(logits, -1).data)
            _, accuracy = _nll_and_accuracy(probs, target_array, ignore_index)
            members.append({"loss": float(loss_fn(logits, target_tensor).item()), "accuracy": accuracy})
        combined = combine_outputs(all_logits, combine)
        probs = combined if combine == "mean_prob" else ops.softmax(combined, -1)
        nll, accuracy = _nll_and_accuracy(backend.to_numpy(probs.data), target_array, ignore_index)
    return {"members": members,
            "mean_member_loss": float(np.mean([m["loss"] for m in members])),
            "mean_member_accuracy": float(np.mean([m["accuracy"] for m in members])),
            "ensemble": {"loss": nll, "accuracy": accuracy}}


def snapshot_ensemble(model_factory, state_dicts, combine: str = "mean_prob", eval_mode: bool = True) -> Ensemble:
    """An ``Ensemble`` of snapshots of one training run (Huang et al., 2017).

    ``model_factory()`` builds a fresh model of the right architecture; each entry of
    ``state_dicts`` is loaded into its own copy. An entry may be a state dict (tensors or
    arrays, e.g. from ``copy_state_dict(model)`` taken during training — not ``state_dict()``
    itself, whose tensors share memory with the live model) or the path of a checkpoint
    written by ``minillm.checkpoint.save_checkpoint`` / ``minillm train``.
    """
    models = []
    for state in state_dicts:
        if not hasattr(state, "items"):
            from ..checkpoint import load_checkpoint
            state = load_checkpoint(state).model_state
        model = model_factory()
        model.load_state_dict(state)
        models.append(model)
    return Ensemble(models, combine=combine, eval_mode=eval_mode)
