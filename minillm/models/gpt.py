"""A GPT language model in one file (after Karpathy's nanoGPT, itself after GPT-2).

    idx (B, T) ─► token embedding + position embedding ─► dropout
               ─► n_layer × pre-LN TransformerBlock (causal self-attention, GELU MLP)
               ─► final LayerNorm ─► linear head tied to the token embedding ─► logits (B, T, V)

``hidden_states(idx)`` is everything before the head (what a classifier pools);
``generate`` samples with ``minillm/models/sampling.py``; the initialization and the embedding
are shared with BERT and T5 (``minillm/models/common.py``).

References: Radford et al. 2019 (GPT-2: pre-LN, weight tying, scaled residual init);
Vaswani et al. 2017 (attention); Press & Wolf 2017 (tying the input and output embeddings).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .. import backend, nn
from ..nn import functional as F
from ..tensor import Tensor, no_grad
from .common import embed, init_gpt2_weights, padding_mask_array
from .sampling import sample_next_token


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

    def __post_init__(self):
        errors = []
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 1:
                errors.append(f"{name} must be a positive integer, got {value!r}")
        if not errors and self.n_embd % self.n_head:
            errors.append(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            errors.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.gelu not in ("tanh", "none"):
            errors.append(f"gelu must be 'tanh' or 'none', got {self.gelu!r}")
        if errors:
            raise ValueError("GPTConfig: " + "; ".join(errors))

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
        """GPT-2 init: N(0, 0.02²) for matrices and embeddings, zero biases, and the projections
        that write into the residual stream scaled by 1/√(2·n_layer) (GPT-2 paper, §2.3)."""
        init_gpt2_weights(self, residual_writes=2 * self.config.n_layer)

    def hidden_states(self, idx, padding_mask=None):
        """idx (B, T) int -> the hidden states (B, T, n_embd) after the final LayerNorm, before
        the head. They are causal: position t has read tokens ≤ t only. ``padding_mask`` (B, T),
        True at padding, keeps every position from attending to the padding."""
        x = embed(idx, self.wte, self.wpe, self.drop, "GPT")
        mask = padding_mask_array(padding_mask)
        for block in self.blocks:
            x = block(x, key_padding_mask=mask)
        return self.ln_f(x)

    def forward(self, idx, targets=None):
        """idx (B, T) int -> logits (B, T, vocab_size); with targets (B, T) also the mean
        cross-entropy loss (targets equal to ``F.IGNORE_INDEX`` are ignored)."""
        logits = F.linear(self.hidden_states(idx), self.wte.weight)   # weight tying: the head is the embedding
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embeddings (as nanoGPT reports;
        the token embeddings count once, being the head too)."""
        n = super().num_parameters()
        return n - self.wpe.weight.size if non_embedding else n

    @no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
                 crop: bool = True):
        """Append ``max_new_tokens`` sampled tokens to idx (B, T) and return (B, T + new).

        The context is cropped to the last ``block_size`` tokens (``crop=False`` makes a longer
        context an error instead). ``temperature`` < 1 sharpens, ``top_k`` keeps the k likeliest.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
                or max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        if not (temperature > 0 and np.isfinite(temperature)):
            raise ValueError(f"generate: temperature must be a finite number > 0, got {temperature}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"generate: top_k must be a positive integer or None, got {top_k!r}")
        was_training = self.training
        self.eval()
        device = self.wte.weight.device
        xp = backend.xp_of_device(device)
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
            logits = self(Tensor(context)).data[:, -1, :]
            nxt = sample_next_token(logits, temperature, top_k, backend.generator(device))
            tokens = xp.concatenate([tokens, nxt[:, None]], axis=1)
        self.train(was_training)
        return Tensor(tokens)
