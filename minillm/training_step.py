"""One optimization step and one loss estimate, shared by every training loop in minillm.

The trainer (``minillm/train.py``), pre-training (``minillm/pretrain.py``) and fine-tuning
(``minillm/finetune.py``) differ in where batches come from and what they log; the step itself is
the same, and lives here:

    lr = lr_schedule(iteration)            every parameter group gets it
    optimizer.zero_grad()
    for each of the K micro-batches:       K = 1 unless several are given (gradient accumulation)
        loss = loss_fn(*micro_batch) / K   forward
        loss.backward()                    the gradients add up: their mean over the micro-batches
    grad_hook(loss)                        e.g. average the gradients (and the loss) over processes
    clip the gradient norm to grad_clip
    stop if the loss or the norm is NaN or infinite (TrainingDivergedError, naming the iteration;
    the weights are untouched)
    optimizer.step()

``make_optimizer`` builds the AdamW every loop uses, with one weight-decay policy
(:func:`minillm.regularizers.param_groups`); ``estimate_loss`` is nanoGPT's: the mean loss over a
few batches in eval mode, without gradients.

Random streams: every loop draws its batches from ``numpy.random.default_rng([seed, STREAM])``,
one independent stream per purpose, so evaluating or changing one part never shifts the batches
of another. The stream ids are the named constants below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .tensor import no_grad

__all__ = ["TrainingDivergedError", "TrainingStep", "StepResult", "make_optimizer", "estimate_loss", "set_lr",
           "TRAIN_BATCH_STREAM", "EVAL_BATCH_STREAM", "VAL_EVAL_BATCH_STREAM", "FINETUNE_ORDER_STREAM"]

#: ``default_rng([seed, TRAIN_BATCH_STREAM])`` draws the training batches (trainer, pretrain)
TRAIN_BATCH_STREAM = 1
#: the evaluation batches, re-seeded at every evaluation so each one sees the same batches
#: (the trainer: its train-split estimate; ``pretrain``: its validation estimate)
EVAL_BATCH_STREAM = 2
#: the trainer's val-split evaluation batches
VAL_EVAL_BATCH_STREAM = 3
#: ``finetune``: the order in which the labelled examples are visited
FINETUNE_ORDER_STREAM = 3


class TrainingDivergedError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite.

    ``what`` ("the training loss", "the gradient norm", ...), ``value``, ``iteration`` and ``lr``
    say where; ``hint`` is appended to the message (the trainer names its last good checkpoint).
    """

    def __init__(self, what: str, value: float, iteration: int, lr: float, hint: str = ""):
        super().__init__(
            f"{what} is {value} at iteration {iteration} (lr {lr:.3g}): training diverged and was stopped. "
            f"Likely causes: the learning rate is too high (try a smaller --lr or a longer --warmup-iters, and "
            f"keep --grad-clip on), float16 overflow (train in float32), or bad data (token ids outside the "
            f"vocabulary, a corrupted corpus).{' ' + hint if hint else ''}")
        self.what, self.value, self.iteration, self.lr, self.hint = what, value, iteration, lr, hint


def set_lr(optimizer, lr: float) -> None:
    """Give every parameter group of ``optimizer`` the learning rate ``lr`` times the group's
    ``"lr_scale"`` (1 when absent; layer-wise rates, ``minillm.finetune.layerwise_param_groups``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def make_optimizer(model, lr: float, weight_decay: float, betas: Tuple[float, float] = (0.9, 0.99)):
    """AdamW over ``param_groups(model, weight_decay)``: the one weight-decay policy of minillm
    (the weight matrices are decayed; biases, normalization weights and embeddings are not; see
    :func:`minillm.regularizers.param_groups`). Every training loop builds its optimizer here."""
    from .optim import AdamW
    from .regularizers.penalties import param_groups
    return AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, weight_decay=weight_decay)


@dataclass
class StepResult:
    """What one step measured: the loss before the update, the learning rate it used and the
    gradient norm before clipping (None when clipping is off)."""
    loss: float
    lr: float
    grad_norm: Optional[float]


class TrainingStep:
    """``step(iteration, batch, *more_batches)``: one optimization step of ``model`` (see the
    module docstring).

    ``loss_fn(*batch)`` returns a scalar loss Tensor; ``lr_schedule(iteration)`` the learning
    rate; ``grad_clip`` > 0 clips the total gradient norm of ``model.parameters()`` to it.
    Given several batches (micro-batches of equal size), the step follows the mean of their
    gradients: each loss is scaled by 1/K before its backward (nanoGPT's gradient accumulation),
    and the loss it reports is the mean of the K losses.

    ``grad_hook(loss_array) -> loss_array``, when given, runs after the backward pass(es) and
    before clipping, with the (0-d) loss array; it may change the gradients in place and returns
    the loss to report — ``minillm.distributed.GradientReducer`` averages both over processes,
    so clipping and the divergence check see the global gradient and loss.
    Raises ``TrainingDivergedError`` (before touching the weights) when the loss or the gradient
    norm is not finite.
    """

    def __init__(self, model, optimizer, loss_fn: Callable, lr_schedule: Callable[[int], float],
                 grad_clip: float = 0.0, grad_hook: Optional[Callable] = None):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.lr_schedule, self.grad_clip, self.grad_hook = lr_schedule, grad_clip, grad_hook

    def __call__(self, iteration: int, batch: Sequence, *more_batches: Sequence) -> StepResult:
        from . import backend
        from .nn.utils import clip_grad_norm_
        lr = self.lr_schedule(iteration)
        set_lr(self.optimizer, lr)
        batches = (batch,) + more_batches
        self.optimizer.zero_grad()
        loss_data = None
        for micro in batches:
            loss = self.loss_fn(*micro)
            if len(batches) > 1:
                loss = loss * (1.0 / len(batches))     # the mean over micro-batches, as nanoGPT
            loss.backward()                            # .grad accumulates over the micro-batches
            loss_data = loss.data if loss_data is None else loss_data + loss.data
        if self.grad_hook is not None:
            loss_data = self.grad_hook(loss_data)
        norm = clip_grad_norm_(self.model.parameters(), self.grad_clip) if self.grad_clip > 0 else None
        # One read-back per step, after the forward and backward are queued (on a GPU, reading a
        # value waits for every kernel before it): the loss and the norm together.
        xp = backend.get_array_module(loss_data)
        values = [loss_data.reshape(()).astype(np.float64)]
        if norm is not None:
            values.append(xp.asarray(norm.data).reshape(()).astype(np.float64))
        host = backend.to_numpy(xp.stack(values))
        loss_value, norm_value = float(host[0]), (float(host[1]) if norm is not None else None)
        if not math.isfinite(loss_value):
            raise TrainingDivergedError("the training loss", loss_value, iteration, lr)
        if norm_value is not None and not math.isfinite(norm_value):
            raise TrainingDivergedError("the gradient norm", norm_value, iteration, lr)
        self.optimizer.step()
        return StepResult(loss_value, lr, norm_value)


def estimate_loss(model, loss_fn: Callable, make_batch: Callable[[], Sequence], num_batches: int) -> float:
    """The mean of ``loss_fn(*make_batch())`` over ``num_batches`` batches, with ``model`` in eval
    mode (no dropout) and no gradients; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            losses = [float(loss_fn(*make_batch()).item()) for _ in range(num_batches)]
    finally:
        model.train(was_training)
    return float(np.mean(losses))
