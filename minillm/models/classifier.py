"""A sequence-classification head on any of the three backbones (GPT, BERT, T5's encoder).

    idx (B, T), padding_mask (B, T) ─► backbone hidden states (B, T, E)
        ─► pool: mean over the real (non-padding) positions, the first token, or the last real one
        ─► dropout ─► Linear(E, num_classes) ─► logits (B, num_classes)

This is how a pre-trained transformer is fine-tuned for a task (Radford et al. 2018 §3.2: a
linear layer on the decoder's last state; Devlin et al. 2019 §3.2: on the ``[CLS]`` state; Raffel
et al. 2020 would rather write the label as text with the decoder, which we do not do here: the
same head on every backbone makes the comparison fair).

Which hidden states:

* ``BERT`` — ``encode(idx, padding_mask)``, bidirectional;
* ``T5`` — ``encode(src, padding_mask)``, the encoder only (the decoder is kept but unused);
* ``GPT`` — ``hidden_states(idx, padding_mask)``, the states before its LM head. They are
  causal: position t has read tokens ≤ t only, so ``pooling="last"`` (the last real token, which
  has read everything) is GPT's natural choice, and ``"first"`` sees a single token.
"""
from __future__ import annotations

from .. import backend, nn
from ..nn import functional as F
from ..tensor import Tensor
from .common import INIT_STD, padding_mask_array

__all__ = ["SequenceClassifier", "backbone_hidden_states", "POOLINGS"]

POOLINGS = ("mean", "first", "last")


def backbone_hidden_states(backbone, idx, padding_mask=None):
    """Hidden states (B, T, E) of idx (B, T): a BERT's or a T5's ``encode(idx, padding_mask)``
    (T5: its encoder), a GPT's ``hidden_states(idx, padding_mask)``."""
    if hasattr(backbone, "encode"):
        return backbone.encode(idx, padding_mask)
    if hasattr(backbone, "hidden_states"):
        return backbone.hidden_states(idx, padding_mask)
    raise TypeError(f"SequenceClassifier: do not know how to get hidden states from a {type(backbone).__name__}")


class SequenceClassifier(nn.Module):
    """``SequenceClassifier(backbone, num_classes, pooling="mean", dropout=0.1)``.

    ``forward(idx, padding_mask=None, labels=None)`` -> logits (B, num_classes), or
    ``(logits, loss)`` with integer ``labels`` (B,). ``padding_mask`` (B, T) is True at padding.
    """

    def __init__(self, backbone, num_classes: int, pooling: str = "mean", dropout: float = 0.1, device=None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone = backbone
        self.pooling, self.num_classes = pooling, num_classes
        n_embd = backbone.config.n_embd
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(n_embd, num_classes, device=device if device is not None else backbone.wte.weight.device)
        nn.init.normal_(self.head.weight, 0.0, INIT_STD)
        nn.init.zeros_(self.head.bias)

    def pool(self, h, padding_mask=None):
        """(B, T, E) hidden states -> (B, E)."""
        mask = padding_mask_array(padding_mask)
        b, t, _ = h.shape
        xp = backend.get_array_module(h.data)
        if self.pooling == "first":
            return h[:, 0, :]
        if mask is None:
            return h.mean(1) if self.pooling == "mean" else h[:, t - 1, :]
        real = ~xp.asarray(mask)
        if self.pooling == "last":
            last = xp.maximum(real.sum(axis=1) - 1, 0)       # right padding: the last real token
            return h[xp.arange(b), last, :]
        w = real.astype(h.dtype) / xp.maximum(real.sum(axis=1, keepdims=True), 1).astype(h.dtype)
        return (h * Tensor(w[:, :, None])).sum(1)

    def forward(self, idx, padding_mask=None, labels=None):
        h = backbone_hidden_states(self.backbone, idx, padding_mask)
        logits = self.head(self.drop(self.pool(h, padding_mask)))
        if labels is None:
            return logits
        return logits, F.cross_entropy(logits, labels)

    def extra_repr(self):
        return f"pooling={self.pooling!r}, num_classes={self.num_classes}"
