"""The places a transformer uses dropout, each as a small function or module.

All of them are *inverted* dropout (Srivastava et al., "Dropout: A Simple Way to Prevent Neural
Networks from Overfitting", JMLR 2014): in training, kept values are scaled by 1/(1 − p) so the
expected output equals the eval-mode output, and eval mode is the identity. What differs is
*what* gets dropped:

* **attention dropout** — elements of the attention-probability matrix softmax(qkᵀ/√d), so a
  query randomly ignores some keys (Vaswani et al., 2017, as implemented in tensor2tensor and
  every GPT/BERT since). In minillm it is fused into the attention kernel:
  ``F.scaled_dot_product_attention(..., dropout_p=p, training=...)`` and
  ``nn.MultiHeadAttention(..., dropout=p)``. ``AttentionDropout`` below is the same operation
  as a module, for code that computes the probabilities itself.
* **residual dropout** — the output of every sub-layer before it is added to the residual
  stream: x + Dropout(f(x)) (Vaswani et al., 2017, §5.4 "Residual Dropout"; GPT-2's
  ``resid_dropout``). ``ResidualDropout`` wraps any sub-layer this way.
* **embedding dropout** — whole rows of the embedding matrix, i.e. whole *words*: every
  occurrence of a dropped word in the batch becomes the zero vector, and the other rows are
  scaled by 1/(1 − p) (Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in
  Recurrent Neural Networks", NeurIPS 2016, §4; Merity, Keskar & Socher, "Regularizing and
  Optimizing LSTM Language Models", ICLR 2018, §4.3). One mask per call (per batch), over the
  vocabulary. ``embedding_dropout`` / ``EmbeddingDropout``.
* **word (token) dropout** — input *tokens* replaced by a placeholder id (UNK/MASK) with
  probability p, independently per position (Iyyer et al., 2015; Bowman et al., 2016,
  "Generating Sentences from a Continuous Space", §3.2 calls it word dropout). Unlike embedding
  dropout it acts per occurrence, not per word type, and does not rescale. ``word_dropout``.

(Plain element-wise dropout on the embeddings' sum, GPT's ``drop``, is ``nn.Dropout``.)
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..nn import functional as F
from ..nn.layers import Dropout, Embedding
from ..nn.module import Module
from ..tensor import Tensor


def _check_p(p: float, who: str) -> None:
    if not 0 <= p <= 1:
        raise ValueError(f"{who}: p must be in [0, 1], got {p}")


# ---------------------------------------------------------------- attention dropout
class AttentionDropout(Module):
    """Dropout on attention probabilities P (..., Tq, Tk): each P[i, j] is zeroed with
    probability ``p`` and the rest scaled by 1/(1 − p) — the row no longer sums to 1, but its
    expectation does. Identity in eval mode.

    This is what ``F.scaled_dot_product_attention(q, k, v, dropout_p=p)`` does inside its fused
    kernel (and ``nn.MultiHeadAttention(dropout=p)``, ``nn.TransformerBlock(dropout=p)``); use
    this module only where the probabilities are computed explicitly, e.g.::

        probs = F.softmax(q @ k.transpose(-2, -1) * scale, -1)
        out = AttentionDropout(0.1)(probs) @ v
    """

    def __init__(self, p: float = 0.1):
        super().__init__()
        _check_p(p, "AttentionDropout")
        self.p = p

    def forward(self, probs):
        return F.dropout(probs, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


# ---------------------------------------------------------------- residual dropout
class ResidualDropout(Module):
    """x + Dropout(f(x)): dropout on a sub-layer's output before the residual add
    (Vaswani et al., 2017, §5.4). ``forward(x, *args, **kwargs)`` passes the extra arguments
    on to ``sublayer``. The residual path itself is never dropped."""

    def __init__(self, sublayer: Module, p: float = 0.1):
        super().__init__()
        _check_p(p, "ResidualDropout")
        self.sublayer = sublayer
        self.dropout = Dropout(p)

    @property
    def p(self) -> float:
        return self.dropout.p

    def forward(self, x, *args, **kwargs):
        return x + self.dropout(self.sublayer(x, *args, **kwargs))


# ---------------------------------------------------------------- embedding dropout
def embedding_row_mask(num_embeddings: int, p: float, dtype=np.float32, device="cpu"):
    """A (num_embeddings, 1) array: 0 for dropped rows (probability ``p``), 1/(1 − p) for kept
    ones, from the device's seeded generator (``minillm.manual_seed``). p = 1 drops every row."""
    _check_p(p, "embedding_row_mask")
    if p == 1:
        with backend.device_context(device):
            return backend.xp_of_device(device).zeros((num_embeddings, 1), dtype=dtype)
    return F.dropout_mask((num_embeddings, 1), p, dtype, device)


def embedding_dropout(weight, idx, p: float = 0.1, training: bool = True, mask=None):
    """Look up ``idx`` in ``weight`` (V, C) with whole rows (words) of the table dropped.

    One Bernoulli(1 − p) draw per row of the table, i.e. per word type: a dropped word is the
    zero vector at every position of this batch, a kept one is its row × 1/(1 − p), so the
    expected embedding is unchanged. Gal & Ghahramani 2016; Merity et al. 2018 (AWD-LSTM, §4.3).

    Equivalent to ``F.embedding(idx, weight * mask)`` with ``mask`` the (V, 1) row mask, but
    computed as ``weight[idx] * mask[idx]``, which costs O(B·T·C) instead of O(V·C). The gradient
    reaches only the kept rows (scaled by 1/(1 − p)).

    Args:
        weight: the (V, C) embedding matrix (a Parameter).
        idx: integer Tensor or array of any shape.
        p: probability of dropping a word. ``training=False`` (or p = 0): a plain lookup.
        mask: optional precomputed (V, 1) or (V,) mask (to share one mask between calls, or in
            tests); by default a new one is drawn with ``embedding_row_mask``.
    Returns a Tensor of shape idx.shape + (C,).
    """
    _check_p(p, "embedding_dropout")
    out = F.embedding(idx, weight)
    if not training or (p == 0 and mask is None):
        return out
    if mask is None:
        mask = embedding_row_mask(weight.shape[0], p, weight.dtype, weight.device)
    mask = mask.data if getattr(mask, "_is_tensor", False) else mask
    mask = mask.reshape(-1)
    if mask.shape[0] != weight.shape[0]:
        raise ValueError(f"embedding_dropout: mask has {mask.shape[0]} rows, the embedding {weight.shape[0]}")
    index = idx.data if getattr(idx, "_is_tensor", False) else idx
    return out * Tensor(mask[index][..., None].astype(weight.dtype, copy=False))


class EmbeddingDropout(Module):
    """Wrap an ``nn.Embedding`` so that, in training, whole words are dropped
    (``embedding_dropout``). The wrapped embedding still owns the weight (so weight tying,
    ``decay_parameters`` and ``state_dict`` see ``<name>.embedding.weight``)."""

    def __init__(self, embedding: Embedding, p: float = 0.1):
        super().__init__()
        _check_p(p, "EmbeddingDropout")
        self.embedding, self.p = embedding, p

    @property
    def weight(self):
        return self.embedding.weight

    def forward(self, idx):
        return embedding_dropout(self.embedding.weight, idx, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


# ---------------------------------------------------------------- word dropout
def word_dropout(idx, p: float, replacement: int, training: bool = True, protect=None):
    """Replace each token id of ``idx`` by ``replacement`` (an UNK or MASK id) with probability
    ``p``, independently per position (word dropout; Bowman et al., 2016). Not differentiable
    (it acts on integer inputs) and not rescaled.

    Args:
        idx: integer Tensor or array (any shape).
        protect: optional boolean array/Tensor (same shape) or iterable of token ids that are
            never replaced (padding, BOS/EOS).
    Returns a new integer Tensor (``idx`` itself is not modified); ``idx`` unchanged when
    ``training`` is False or p = 0.
    """
    _check_p(p, "word_dropout")
    array = idx.data if getattr(idx, "_is_tensor", False) else idx
    if array.dtype.kind not in "iu":
        raise TypeError(f"word_dropout: token ids must be integers, got dtype {array.dtype}")
    if not training or p == 0:
        return idx if getattr(idx, "_is_tensor", False) else Tensor(array)
    device = backend.device_of(array)
    xp = backend.get_array_module(array)
    with backend.device_context(device):
        drop = backend.generator(device).random(array.shape, dtype=np.float32) < p
        if protect is not None:
            protect = protect.data if getattr(protect, "_is_tensor", False) else protect
            if hasattr(protect, "dtype") and protect.dtype == np.bool_:
                drop &= ~protect
            else:
                drop &= ~xp.isin(array, xp.asarray(list(protect), dtype=array.dtype))
        return Tensor(xp.where(drop, array.dtype.type(replacement), array))
