"""What GPT, BERT and T5 share: GPT-2's weight initialization, the token + position embedding,
and padding masks.

* ``INIT_STD`` = 0.02: every weight matrix and embedding starts as N(0, 0.02²) (GPT-2, BERT);
  biases start at zero.
* The projections that write into a residual stream (``RESIDUAL_PROJECTIONS``: attention's
  ``out_proj`` and the MLP's ``proj``) start with std ``INIT_STD / √(number of writes)``, so the
  residual stream's variance does not grow with depth (GPT-2 paper, §2.3: 1/√N for N residual
  layers; a GPT block writes twice, attention then MLP).
"""
from __future__ import annotations

import math
from typing import Callable, Union

from .. import backend, nn

__all__ = ["INIT_STD", "RESIDUAL_PROJECTIONS", "init_gpt2_weights", "embed", "padding_mask_array"]

INIT_STD = 0.02
RESIDUAL_PROJECTIONS = ("out_proj.weight", "mlp.proj.weight")


def init_gpt2_weights(model, residual_writes: Union[int, Callable[[str], int]]) -> None:
    """GPT-2's initialization of every parameter of ``model``, in ``named_parameters`` order:
    zeros for names ending in ``bias``; N(0, INIT_STD²) for the other matrices, with the
    residual projections' std divided by √``residual_writes`` (a number, or a function of the
    parameter's name for models with several residual streams, like T5's encoder and decoder)."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif p.ndim == 2:
            std = INIT_STD
            if name.endswith(RESIDUAL_PROJECTIONS):
                writes = residual_writes(name) if callable(residual_writes) else residual_writes
                std = INIT_STD / math.sqrt(writes)
            nn.init.normal_(p, 0.0, std)


def embed(idx, wte, wpe, drop, model_name: str = "model", what: str = "sequence"):
    """The transformer's input: ``drop(wte(idx) + wpe(positions))`` for idx (B, T) int ->
    (B, T, E), positions 0..T-1. A sequence longer than the position table (block size) is an
    error naming ``model_name`` and ``what``."""
    if len(idx.shape) != 2:
        raise ValueError(f"{model_name}: token ids must be a (batch, time) array, got shape {tuple(idx.shape)}"
                         + ("; add a batch dimension (idx[None])" if len(idx.shape) == 1 else ""))
    t = idx.shape[1]
    block_size = wpe.weight.shape[0]
    if t > block_size:
        raise ValueError(f"{model_name}: {what} of length {t} is longer than block_size {block_size}")
    positions = backend.xp_of_device(wpe.weight.device).arange(t)
    return drop(wte(idx) + wpe(positions))


def padding_mask_array(mask):
    """A padding mask (B, T), True at padding, as a boolean array (from a Tensor, an array or
    None)."""
    if mask is None:
        return None
    return (mask.data if getattr(mask, "_is_tensor", False) else mask).astype(bool)
