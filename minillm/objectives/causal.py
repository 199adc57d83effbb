"""Causal language modelling (GPT; Radford et al. 2018): predict the next token.

The model reads ``x₁ .. x_T`` and at every position t predicts ``x_{t+1}``: the targets are the
inputs shifted left by one, and every position is a target. A causal attention mask keeps
position t from reading the tokens after it.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .base import Objective

__all__ = ["causal_batch", "causal_loss", "CAUSAL"]


def causal_batch(data, config, rng, tokenizer=None) -> Tuple[np.ndarray, np.ndarray]:
    """``(x, y)``, each int64 of shape ``(config.batch_size, config.block_size)``: random windows
    of the 1-D token array ``data`` (nanoGPT's ``get_batch``), ``y`` = ``x`` shifted left by one."""
    from ..data import get_batch
    return get_batch(data, config.batch_size, config.block_size, rng)


def causal_loss(model, x, y):
    """The mean next-token cross-entropy of a GPT on ``x`` (B, T) with targets ``y`` (B, T)."""
    return model(x, y)[1]


CAUSAL = Objective("causal", causal_batch, causal_loss,
                   "next-token prediction (GPT): targets are the inputs shifted by one")
