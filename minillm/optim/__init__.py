"""Optimizers and learning-rate schedules, named as in ``torch.optim``.

``Optimizer`` (parameter groups, state, ``state_dict``) is in ``optimizer.py``; each update rule,
with its equations and paper, is in its own file: ``sgd.py``, ``adam.py`` (Adam, AdamW),
``rmsprop.py``. Schedules are in ``lr_scheduler.py``. ``clip_grad_norm_`` lives in
``minillm.nn.utils`` and is re-exported here because it is used right before ``step()``.
"""
from ..nn.utils import clip_grad_norm_, clip_grad_value_
from . import lr_scheduler
from .adam import Adam, AdamW
from .lr_scheduler import CosineWithWarmup, LambdaLR, LRScheduler, StepLR, cosine_with_warmup_lr
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler", "LRScheduler", "LambdaLR", "StepLR",
           "CosineWithWarmup", "cosine_with_warmup_lr", "clip_grad_norm_", "clip_grad_value_"]
