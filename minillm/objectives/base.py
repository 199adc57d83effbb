"""What every pre-training objective is: an ``Objective`` record, and the registry of them.

An objective says where batches come from, what the loss is and which model it trains.
``minillm train --objective NAME`` and :func:`minillm.pretrain.pretrain` both look it up in
``OBJECTIVES``; ``register_objective`` adds one without touching either loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

__all__ = ["Objective", "OBJECTIVES", "register_objective", "as_generator"]


def _gpt_classes() -> Tuple[type, type]:
    """``(GPTConfig, GPT)``, the default ``model_classes``."""
    from ..models.gpt import GPT, GPTConfig
    return GPTConfig, GPT


@dataclass(frozen=True)
class Objective:
    """A pre-training objective.

    * ``get_batch(data, config, rng, tokenizer)`` -> a tuple of NumPy arrays drawn from the 1-D
      token array ``data`` with the ``numpy.random.Generator`` ``rng`` (``config`` needs
      ``batch_size`` and ``block_size``);
    * ``loss(model, *tensors)`` -> a scalar Tensor, the batch moved to the device as tensors;
    * ``model_classes``: ``(config class, model class)`` of the model it trains (a GPT unless
      said otherwise); ``configure_model(model_config, tokenizer)``, when given, is called on a
      new model's config before the model is built (T5 takes its decoder start id from it);
    * ``special_tokens``: the tokens the tokenizer must have (``[MASK]``, sentinels...);
    * ``generates_text``: whether the trained model can write text left to right (the trainer
      then writes a sample at the end).
    """
    name: str
    get_batch: Callable
    loss: Callable
    description: str = ""
    model_classes: Tuple[type, type] = field(default_factory=_gpt_classes)
    configure_model: Optional[Callable] = None
    special_tokens: Tuple[str, ...] = ()
    generates_text: bool = True


#: name -> Objective; ``minillm/objectives/__init__.py`` registers causal, mlm and span
OBJECTIVES: Dict[str, Objective] = {}


def register_objective(objective: Objective) -> Objective:
    """Make ``objective`` available as ``TrainConfig(objective=name)`` / ``--objective name``."""
    OBJECTIVES[objective.name] = objective
    return objective


def as_generator(rng) -> np.random.Generator:
    """``rng`` if it is a ``numpy.random.Generator``, a new one seeded with it otherwise; None is
    an error (the batches must be reproducible)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise TypeError("pass rng=np.random.default_rng(seed) (results must be reproducible)")
    return np.random.default_rng(rng)
