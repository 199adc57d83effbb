"""Fused cross-entropy: the formula is ``F.cross_entropy`` (log-softmax, pick the target, mean);
this is the same loss on (N, C) logits in one node, whose gradient is p − q."""
from __future__ import annotations

from .. import backend
from .base import FusedFunction


class CrossEntropy(FusedFunction):
    """Per-row softmax cross-entropy of (N, C) logits and (N,) integer targets, stable.

    With label smoothing ε the target distribution is q = (1 − ε)·onehot(t) + ε/C and
    loss_i = −Σ_c q_c log p_ic. Rows whose target is ``ignore_index`` give 0. The gradient is
    (p − q)·g_i: no log or division in the backward, and no overflow since
    log p = z − max − log Σ exp(z − max).
    """

    def forward(self, logits, target, ignore_index, label_smoothing=0.0):
        xp = backend.get_array_module(logits)
        n = logits.shape[0]
        self.valid = target != ignore_index
        safe_target = xp.where(self.valid, target, 0)
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        log_total = xp.log(total[:, 0])
        loss = -(1 - label_smoothing) * (shifted[xp.arange(n), safe_target] - log_total)
        if label_smoothing:
            loss -= label_smoothing * (shifted.mean(axis=1) - log_total)
        e /= total
        self.p, self.safe_target = e, safe_target
        return xp.where(self.valid, loss, 0).astype(logits.dtype)

    def fast_backward(self, g):
        xp = backend.get_array_module(g)
        eps = self.options.get("label_smoothing", 0.0)
        n, c = self.p.shape
        grad = self.p.copy()  # the saved p stays intact for a retain_graph second backward
        if eps:
            grad -= eps / c
        grad[xp.arange(n), self.safe_target] -= 1 - eps
        grad *= xp.where(self.valid, g, 0)[:, None]
        return grad, None
