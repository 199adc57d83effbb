"""Learning-rate schedules, as ``torch.optim.lr_scheduler``.

A scheduler owns an optimizer and sets ``group["lr"]`` of every parameter group. Each group's
schedule scales that group's base learning rate, which is stored as ``group["initial_lr"]``
the first time a scheduler sees the optimizer (as PyTorch does), so groups with different
learning rates keep their ratio. Building a scheduler applies the lr of step 0; call
``scheduler.step()`` after each ``optimizer.step()``::

    scheduler = CosineWithWarmup(optimizer, warmup_iters=2000, lr_decay_iters=600000, min_lr=6e-5)
    for it in range(max_iters):
        ...; optimizer.step(); scheduler.step()
"""
from __future__ import annotations

import math


class LRScheduler:
    """Base class: subclasses implement ``get_lr()``, the lr of every group at step
    ``self.last_epoch`` (0 for the first optimizer step), from ``self.base_lrs``.

    ``last_epoch=-1`` starts a new schedule (recording ``initial_lr``); another value resumes
    one, and then every group must already have an ``initial_lr``.
    """

    def __init__(self, optimizer, last_epoch: int = -1):
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                               f"a scheduler at last_epoch={last_epoch}")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self.step()

    def get_lr(self) -> list:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one step and set every group's lr."""
        self.last_epoch += 1
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list:
        """The lrs the last ``step()`` set (one per group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Plain data (numbers and lists) for a checkpoint: everything but the optimizer and
        functions (a ``LambdaLR``'s lambdas are code; rebuild the scheduler with them)."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in self.__dict__.items()
                if k not in ("optimizer", "lr_lambdas") and not callable(v)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in ("optimizer", "lr_lambdas")})

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self._last_lr})"


class LambdaLR(LRScheduler):
    """lr = base_lr · lr_lambda(step); ``lr_lambda`` is one function or a list, one per group."""

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        groups = optimizer.param_groups
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(groups):
                raise ValueError(f"expected {len(groups)} lr_lambdas, one per parameter group, got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(groups)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        return [base_lr * lmbda(self.last_epoch) for lmbda, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class StepLR(LRScheduler):
    """lr = base_lr · gamma^⌊step / step_size⌋: decay by ``gamma`` every ``step_size`` steps."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if step_size <= 0:
            raise ValueError(f"step_size must be a positive integer, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


def cosine_with_warmup_lr(it: int, max_lr: float, min_lr: float, warmup_iters: int, lr_decay_iters: int) -> float:
    """nanoGPT's ``get_lr``: the lr at iteration ``it`` (0-based).

    1. linear warmup for ``warmup_iters`` steps: ``max_lr·(it + 1)/(warmup_iters + 1)``;
    2. cosine decay (Loshchilov & Hutter, "SGDR", ICLR 2017) from ``max_lr`` at
       ``it = warmup_iters`` to ``min_lr`` at ``it = lr_decay_iters``;
    3. ``min_lr`` after that.
    """
    if it < warmup_iters:
        return max_lr * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters or lr_decay_iters == warmup_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)  # 0 .. 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))                # 1 .. 0
    return min_lr + coeff * (max_lr - min_lr)


class CosineWithWarmup(LRScheduler):
    """nanoGPT's schedule (``cosine_with_warmup_lr``) with each group's base lr as ``max_lr``.

    ``min_lr`` is the floor in absolute terms, one number for every group (nanoGPT uses one lr
    for all groups) or a list, one per group.
    """

    def __init__(self, optimizer, warmup_iters: int, lr_decay_iters: int, min_lr, last_epoch: int = -1):
        if warmup_iters < 0 or lr_decay_iters < warmup_iters:
            raise ValueError(f"need 0 <= warmup_iters <= lr_decay_iters, got warmup_iters={warmup_iters}, "
                             f"lr_decay_iters={lr_decay_iters}")
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"expected {n} min_lr values, one per parameter group, got {len(min_lr)}")
            self.min_lrs = [float(m) for m in min_lr]
        else:
            self.min_lrs = [float(min_lr)] * n
        self.warmup_iters, self.lr_decay_iters = int(warmup_iters), int(lr_decay_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        return [cosine_with_warmup_lr(self.last_epoch, base_lr, min_lr, self.warmup_iters, self.lr_decay_iters)
                for base_lr, min_lr in zip(self.base_lrs, self.min_lrs)]
