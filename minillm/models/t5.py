"""A T5-style encoder-decoder transformer, in one file.

    src (B, S) ─► shared token embedding + encoder positions ─► dropout
               ─► n_layer × pre-LN TransformerBlock (bidirectional, source padding mask)
               ─► LayerNorm ─► memory (B, S, E)                                ← encode()
    tgt_in (B, T) ─► shared token embedding + decoder positions ─► dropout
               ─► n_decoder_layer × pre-LN TransformerBlock (causal self-attention,
                  then cross-attention to the memory) ─► LayerNorm
               ─► linear head tied to the shared embedding ─► logits (B, T, V)  ← decode()

Span corruption (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", §3.1.4): random spans (15% of the tokens, mean length 3) are each
replaced by one sentinel ``<extra_id_k>`` in the encoder input; the decoder must write the
dropped spans, each after its sentinel. ``minillm/objectives/span_corruption.py`` makes the
batches: the corrupted inputs, the decoder inputs (targets shifted right behind a start token, the
pad id as in T5) and the targets with ``IGNORE_INDEX`` at padding.

Simplifications: learned absolute position embeddings (T5 uses relative position biases
shared across layers, bucketed by log-distance), GPT-2's pre-LN blocks with biases, GELU MLPs and
GPT-2 init (T5: RMSNorm without biases, ReLU, and the tied head scaled by 1/√E). One
``TransformerBlock`` class serves the encoder (``causal=False``) and the decoder
(``causal=True, cross_attention=True``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .. import backend, nn
from ..nn import functional as F
from ..nn.functional import IGNORE_INDEX
from ..tensor import Tensor, no_grad
from .common import embed, init_gpt2_weights, padding_mask_array
from .sampling import sample_next_token

__all__ = ["T5Config", "T5"]


@dataclass
class T5Config:
    """Plain data: everything needed to rebuild the model (saved in every checkpoint)."""
    vocab_size: int = 1024
    block_size: int = 128            # the longest encoder input and decoder input
    n_layer: int = 2                 # encoder blocks
    n_decoder_layer: Optional[int] = None   # decoder blocks (None: n_layer)
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    gelu: str = "tanh"
    decoder_start_id: int = 0        # the first decoder input (T5 uses the pad id)

    @property
    def decoder_layers(self) -> int:
        return self.n_layer if self.n_decoder_layer is None else self.n_decoder_layer

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class T5(nn.Module):
    def __init__(self, config: T5Config, device=None):
        super().__init__()
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd, device=device)   # shared: encoder, decoder, head
        self.enc_wpe = nn.Embedding(c.block_size, c.n_embd, device=device)
        self.dec_wpe = nn.Embedding(c.block_size, c.n_embd, device=device)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(
            nn.TransformerBlock(c.n_embd, c.n_head, c.dropout, c.bias, causal=False, approximate=c.gelu,
                                device=device)
            for _ in range(c.n_layer))
        self.enc_ln = nn.LayerNorm(c.n_embd, bias=c.bias, device=device)
        self.decoder = nn.ModuleList(
            nn.TransformerBlock(c.n_embd, c.n_head, c.dropout, c.bias, causal=True, cross_attention=True,
                                approximate=c.gelu, device=device)
            for _ in range(c.decoder_layers))
        self.dec_ln = nn.LayerNorm(c.n_embd, bias=c.bias, device=device)
        self._init_weights()

    def _init_weights(self):
        """GPT-2's init: N(0, 0.02²), zero biases, and the projections that write into a residual
        stream scaled by 1/√(number of such writes in that stack): 2 per encoder block
        (attention, MLP), 3 per decoder block (self-attention, cross-attention, MLP)."""
        writes = {"encoder": 2 * self.config.n_layer, "decoder": 3 * self.config.decoder_layers}
        init_gpt2_weights(self, residual_writes=lambda name: writes[name.split(".")[0]])

    def encode(self, src, src_padding_mask=None):
        """src (B, S) -> the encoder's hidden states (B, S, E); ``src_padding_mask`` (B, S)
        is True at padding."""
        mask = padding_mask_array(src_padding_mask)
        if mask is not None and tuple(mask.shape) != tuple(src.shape):
            raise ValueError(f"T5: src_padding_mask has shape {tuple(mask.shape)}, expected {tuple(src.shape)}")
        x = embed(src, self.wte, self.enc_wpe, self.drop, "T5", "source")
        for block in self.encoder:
            x = block(x, key_padding_mask=mask)
        return self.enc_ln(x)

    def decode(self, tgt_in, memory, src_padding_mask=None):
        """Decoder inputs (B, T) attending causally to themselves and to ``memory`` (B, S, E)
        -> logits (B, T, V)."""
        mask = padding_mask_array(src_padding_mask)
        x = embed(tgt_in, self.wte, self.dec_wpe, self.drop, "T5", "decoder input")
        for block in self.decoder:
            x = block(x, context=memory, context_padding_mask=mask)
        return F.linear(self.dec_ln(x), self.wte.weight)    # tied head

    def forward(self, src, tgt_in, src_padding_mask=None, tgt_targets=None):
        """Logits (B, T, V) for decoder inputs ``tgt_in`` given the source; with ``tgt_targets``
        (B, T) (``IGNORE_INDEX`` at padding) also the mean cross-entropy."""
        logits = self.decode(tgt_in, self.encode(src, src_padding_mask), src_padding_mask)
        if tgt_targets is None:
            return logits
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_targets.reshape(-1),
                                       ignore_index=IGNORE_INDEX)

    def num_parameters(self, non_embedding: bool = True) -> int:
        n = super().num_parameters()
        return n - self.enc_wpe.weight.size - self.dec_wpe.weight.size if non_embedding else n

    @no_grad()
    def generate(self, src, max_new_tokens: int, src_padding_mask=None, temperature: float = 0.0,
                 top_k: Optional[int] = None, eos_id: Optional[int] = None, start_id: Optional[int] = None):
        """Decode up to ``max_new_tokens`` tokens for each source row; returns (B, 1 + new) with
        the start token first. ``temperature=0`` is greedy (argmax); > 0 samples (``top_k``
        keeps the k likeliest). With ``eos_id`` a row stops growing (pads with ``eos_id``)
        once it has produced it, and decoding ends when every row has. The encoder runs once;
        the decoder re-reads its whole prefix at each step (no key/value cache)."""
        if temperature < 0:
            raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
        was_training = self.training
        self.eval()
        device = self.wte.weight.device
        xp = backend.xp_of_device(device)
        src_arr = xp.asarray(src.data if getattr(src, "_is_tensor", False) else src, dtype=np.int64)
        if src_arr.ndim == 1:
            src_arr = src_arr[None]
        mask = padding_mask_array(src_padding_mask)
        if mask is not None:
            mask = xp.asarray(mask).reshape(src_arr.shape)
        memory = self.encode(Tensor(src_arr), mask)
        start = self.config.decoder_start_id if start_id is None else start_id
        tokens = xp.full((src_arr.shape[0], 1), start, dtype=np.int64)
        done = xp.zeros(src_arr.shape[0], dtype=bool)
        steps = min(max_new_tokens, self.config.block_size - 1)
        for _ in range(steps):
            logits = self.decode(Tensor(tokens), memory, mask).data[:, -1, :]
            nxt = sample_next_token(logits, temperature, top_k, backend.generator(device))
            if eos_id is not None:
                nxt = xp.where(done, eos_id, nxt)
                done = done | (nxt == eos_id)
            tokens = xp.concatenate([tokens, nxt[:, None]], axis=1)
            if eos_id is not None and bool(done.all()):
                break
        self.train(was_training)
        return Tensor(tokens)
