"""A GPT language model in one file (after Karpathy's nanoGPT, itself after GPT-2).

    idx (B, T) ─► token embedding + position embedding ─► dropout
               ─► n_layer × pre-LN TransformerBlock (causal self-attention, GELU MLP)
               ─► final LayerNorm ─► linear head tied to the token embedding ─► logits (B, T, V)

References: Radford et al. 2019 (GPT-2: pre-LN, weight tying, scaled residual init);
Vaswani et al. 2017 (attention); Press & Wolf 2017 (tying the input and output embeddings).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .. import backend, nn
from ..nn import functional as F
from ..tensor import Tensor, no_grad


@dataclass
class GPTConfig:
    """Plain data: everything needed to rebuild the model (saved in every checkpoint)."""
    vocab_size: int = 65
    block_size: int = 64       # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    gelu: str = "tanh"         # "tanh" (GPT-2's approximation) or "none" (exact erf)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, device=None):
        super().__init__()
        self.config = config
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd, device=device)   # token embeddings, tied to the head
        self.wpe = nn.Embedding(c.block_size, c.n_embd, device=device)   # learned positions
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerBlock(c.n_embd, c.n_head, c.dropout, c.bias, causal=True, approximate=c.gelu, device=device)
            for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias, device=device)
        self._init_weights()

    def _init_weights(self):
        """GPT-2 init: N(0, 0.02) for matrices and embeddings, zero biases, and the projections
        that write into the residual stream scaled by 1/√(2·n_layer) (GPT-2 paper, §2.3)."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith(("out_proj.weight", "mlp.proj.weight")) \
                    else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets=None):
        """idx (B, T) int -> logits (B, T, vocab_size); with targets (B, T) also the mean
        cross-entropy loss (targets equal to -100 are ignored)."""
        b, t = idx.shape
        if t > self.config.block_size:
            raise ValueError(f"GPT: sequence of length {t} is longer than block_size {self.config.block_size}; "
                             "crop the context (generate() does this)")
        positions = backend.xp_of_device(self.wpe.weight.device).arange(t)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = F.linear(x, self.wte.weight)    # weight tying: the head is the embedding matrix
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embeddings (as nanoGPT reports;
        the token embeddings count once, being the head too)."""
        n = super().num_parameters()
        return n - self.wpe.weight.size if non_embedding else n

    @no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 crop: bool = True):
        """Append ``max_new_tokens`` sampled tokens to idx (B, T) and return (B, T + new).

        The context is cropped to the last ``block_size`` tokens (``crop=False`` makes a longer
        context an error instead). ``temperature`` < 1 sharpens, ``top_k`` keeps the k likeliest.
        """
        if temperature <= 0:
            raise ValueError(f"generate: temperature must be > 0, got {temperature}")
        was_training = self.training
        self.eval()
        device = self.wte.weight.device
        xp = backend.xp_of_device(device)
        gen = backend.generator(device)
        tokens = xp.asarray(idx.data if getattr(idx, "_is_tensor", False) else idx, dtype=np.int64)
        if tokens.ndim == 1:
            tokens = tokens[None]
        for _ in range(max_new_tokens):
            context = tokens
            if context.shape[1] > self.config.block_size:
                if not crop:
                    raise ValueError(f"generate: context of {context.shape[1]} tokens exceeds block_size "
                                     f"{self.config.block_size} and crop=False")
                context = context[:, -self.config.block_size:]
            logits = self(Tensor(context)).data[:, -1, :].astype(np.float32) / temperature
            if top_k is not None:
                k = min(top_k, logits.shape[-1])
                kth = xp.sort(logits, axis=-1)[:, -k][:, None]
                logits = xp.where(logits < kth, -xp.inf, logits)
            probs = xp.exp(logits - logits.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
            # inverse-CDF sampling, one uniform number per row
            u = gen.random((probs.shape[0], 1), dtype=np.float32)
            nxt = (xp.cumsum(probs, axis=-1) < u).sum(axis=-1, keepdims=True)
            nxt = xp.minimum(nxt, probs.shape[-1] - 1).astype(np.int64)
            tokens = xp.concatenate([tokens, nxt], axis=1)
        self.train(was_training)
        return Tensor(tokens)
