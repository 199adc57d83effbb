"""A BERT-style bidirectional encoder with a masked-language-model head, in one file.

    idx (B, T) ─► token embedding + position embedding ─► dropout
               ─► n_layer × pre-LN TransformerBlock (bidirectional self-attention, padding mask)
               ─► final LayerNorm ─► hidden states (B, T, E)          ← encode()
               ─► MLM head: Linear(E, E) → GELU → LayerNorm → linear tied to the token
                  embedding + a per-token bias ─► logits (B, T, V)      ← forward()

Masked language modelling (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional
Transformers for Language Understanding", §3.1): 15% of the tokens are chosen, the model sees a
corrupted copy (80% ``[MASK]``, 10% a random token, 10% unchanged) and is trained to predict the
original token at the chosen positions only; ``minillm.objectives.mask_tokens`` makes the batches.
Since every position sees every other one, the hidden states are bidirectional: what a
classifier on top wants, and why BERT cannot generate text left to right.

Differences from the paper, to share code with the GPT: pre-LN blocks with a final LayerNorm
(BERT is post-LN with a LayerNorm on the embeddings), GPT-2's initialization, no segment
(token-type) embeddings and no next-sentence prediction (RoBERTa, Liu et al. 2019, showed NSP is
not needed). The MLM head is BERT's (``cls.predictions`` in the original code).

``padding_mask`` (B, T) is True at padding positions (PyTorch's ``key_padding_mask``
convention): no position attends to them, so a padded token never changes the outputs at the
real positions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .. import backend, nn, ops
from ..nn import functional as F
from ..nn.functional import IGNORE_INDEX
from ..tensor import Tensor
from .common import embed, init_gpt2_weights, padding_mask_array

__all__ = ["BERTConfig", "BERT"]


@dataclass
class BERTConfig:
    """Plain data: everything needed to rebuild the model (saved in every checkpoint)."""
    vocab_size: int = 1024
    block_size: int = 128      # the longest sequence (learned positions)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    gelu: str = "tanh"         # "tanh" or "none" (exact erf, as BERT)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class BERT(nn.Module):
    def __init__(self, config: BERTConfig, device=None):
        super().__init__()
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd, device=device)   # tied to the MLM decoder
        self.wpe = nn.Embedding(c.block_size, c.n_embd, device=device)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerBlock(c.n_embd, c.n_head, c.dropout, c.bias, causal=False, approximate=c.gelu,
                                device=device)
            for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias, device=device)
        # the MLM head ("transform" then a decoder tied to the token embedding, plus a bias)
        self.mlm_dense = nn.Linear(c.n_embd, c.n_embd, bias=c.bias, device=device)
        self.mlm_ln = nn.LayerNorm(c.n_embd, bias=c.bias, device=device)
        self.mlm_bias = nn.Parameter(ops.zeros(c.vocab_size, device=device))
        self._init_weights()

    def _init_weights(self):
        """GPT-2's init (as gpt.py): N(0, 0.02²), zero biases, residual projections scaled by
        1/√(2·n_layer). BERT itself uses N(0, 0.02²) truncated at 2σ."""
        init_gpt2_weights(self, residual_writes=2 * self.config.n_layer)

    # ------------------------------------------------------------------ the encoder
    def encode(self, idx, padding_mask=None):
        """idx (B, T) int -> hidden states (B, T, n_embd) after the final LayerNorm.
        ``padding_mask`` (B, T): True at padding (those keys get no attention weight)."""
        mask = padding_mask_array(padding_mask)
        if mask is not None and tuple(mask.shape) != tuple(idx.shape):
            raise ValueError(f"BERT: padding_mask has shape {tuple(mask.shape)}, expected {tuple(idx.shape)}")
        x = embed(idx, self.wte, self.wpe, self.drop, "BERT")
        for block in self.blocks:
            x = block(x, key_padding_mask=mask)
        return self.ln_f(x)

    def mlm_head(self, h):
        """Hidden states (..., E) -> vocabulary logits (..., V)."""
        h = self.mlm_ln(F.gelu(self.mlm_dense(h), self.config.gelu))
        return F.linear(h, self.wte.weight, self.mlm_bias)

    def forward(self, idx, targets=None, padding_mask=None):
        """idx (B, T) -> MLM logits (B, T, V); with ``targets`` (B, T) (the original id at the
        chosen positions, ``IGNORE_INDEX`` elsewhere, as ``mask_tokens`` makes them) also the mean
        cross-entropy over the chosen positions."""
        logits = self.mlm_head(self.encode(idx, padding_mask))
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                       ignore_index=IGNORE_INDEX)

    def mlm_loss(self, idx, targets, padding_mask=None):
        """The same loss as ``forward(idx, targets)[1]``, with the head applied only at the
        chosen positions (about 15%): the (E × V) decoder is the costliest matrix product of a
        small model, so this is what pre-training calls."""
        h = self.encode(idx, padding_mask)
        tgt = targets.data if getattr(targets, "_is_tensor", False) else targets
        flat = tgt.reshape(-1)
        xp = backend.get_array_module(flat)
        chosen = xp.nonzero(flat != IGNORE_INDEX)[0]
        if chosen.size == 0:
            return (h * 0.0).sum()       # nothing to predict: a zero that keeps the graph
        picked = h.reshape(-1, h.shape[-1])[chosen]
        return F.cross_entropy(self.mlm_head(picked), Tensor(flat[chosen].astype(np.int64)))

    def num_parameters(self, non_embedding: bool = True) -> int:
        n = super().num_parameters()
        return n - self.wpe.weight.size if non_embedding else n
