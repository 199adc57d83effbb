"""Causal language modelling (GPT; Radford et al. 2018): predict the next token.

The model reads ``x₁ .. x_T`` and at every position t predicts ``x_{t+1}``: the targets are the
inputs shifted left by one, and every position is a target. A causal attention mask keeps
position t from reading the tokens after it.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .base import Objective

__all__ = ["causal_lm_batch", "causal_batch", "causal_loss", "CAUSAL"]


def causal_lm_batch(ids) -> Tuple[np.ndarray, np.ndarray]:
    """Next-token prediction on given ids: ``inputs = ids[..., :-1]``, ``targets = ids[..., 1:]``
    (the model reading ``ids[..., :t+1]`` must predict ``ids[..., t+1]``). Works on any leading
    shape; returns contiguous copies."""
    ids = np.asarray(ids)
    if ids.ndim == 0 or ids.shape[-1] < 2:
        raise ValueError(f"need at least 2 tokens along the last axis, got shape {ids.shape}")
    return np.ascontiguousarray(ids[..., :-1]), np.ascontiguousarray(ids[..., 1:])


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
