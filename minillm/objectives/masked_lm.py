"""Masked language modelling (BERT; Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional
Transformers for Language Understanding", §3.1 "Task #1: Masked LM").

15% of the tokens are chosen; of those 80% become ``[MASK]``, 10% a random token and 10% stay
unchanged; the model sees the corrupted copy and the loss is the cross-entropy at the chosen
positions only (every other label is ``IGNORE_INDEX``). Since every position reads every other
one, the encoder is bidirectional.

* :func:`mask_tokens` corrupts a ``(B, T)`` array of ids (NumPy only);
* :func:`make_mlm_batch` does it with a tokenizer's special tokens, :func:`mlm_batch` on random
  windows of a corpus; :func:`mlm_loss` is the loss; ``MASKED_LM`` the registered objective.
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import numpy as np

from ..nn.functional import IGNORE_INDEX
from .base import Objective, as_generator
from .special_tokens import SPECIAL_TOKENS, special_ids

__all__ = ["mask_tokens", "make_mlm_batch", "mlm_batch", "mlm_loss", "MASKED_LM"]


def mask_tokens(ids, *, vocab_size: int, mask_id: int, special_ids: Iterable[int] = (),
                pad_id: Optional[int] = None, mlm_probability: float = 0.15,
                rng, ignore_index: int = IGNORE_INDEX,
                mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1
                ) -> Tuple[np.ndarray, np.ndarray]:
    """BERT's masked-LM corruption (Devlin et al. 2019, Sec. 3.1).

    ``ids``: int array of shape ``(B, T)`` (or ``(T,)``); it is not modified.

    Selection rule -- a fixed count per sequence, as in BERT's own
    ``create_pretraining_data.py`` (``num_to_predict = max(1, round(n * p))``),
    rather than an independent coin per token (Hugging Face's collator):
    in each sequence the *eligible* positions are those whose id is not in
    ``special_ids``, not ``mask_id`` and not ``pad_id``; exactly
    ``k = round(mlm_probability * n_eligible)`` of them (halves rounded up; at
    least 1 when any position is eligible and ``mlm_probability > 0``) are
    chosen uniformly at random without replacement.

    Each chosen position independently becomes ``mask_id`` with probability
    ``mask_replace_prob`` (0.8), a random token with probability
    ``random_replace_prob`` (0.1) and is left unchanged otherwise (0.1). Random
    tokens are drawn uniformly from the *non-special* ids: ``range(vocab_size)``
    minus ``special_ids``, ``mask_id`` and ``pad_id`` (BERT draws from the whole
    vocabulary; it may coincide with the original token, as in BERT).

    Returns ``(inputs, labels)``: ``inputs`` is the corrupted copy (dtype of
    ``ids``); ``labels`` (int64) holds the original id at the chosen positions
    and ``ignore_index`` everywhere else.
    """
    rng = as_generator(rng)
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"ids must be integers, got {ids.dtype}")
    if ids.ndim not in (1, 2):
        raise ValueError(f"ids must be 1-D or 2-D, got shape {ids.shape}")
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
    if mask_replace_prob < 0 or random_replace_prob < 0 or \
            mask_replace_prob + random_replace_prob > 1.0 + 1e-12:
        raise ValueError("need mask_replace_prob, random_replace_prob >= 0 and sum <= 1")
    squeeze = ids.ndim == 1
    x = ids[None, :] if squeeze else ids

    special = {int(s) for s in special_ids} | {int(mask_id)}
    if pad_id is not None:
        special.add(int(pad_id))
    special_arr = np.array(sorted(special), dtype=np.int64)
    eligible = ~np.isin(x, special_arr)

    # number to choose per row: round(p * n_eligible), at least 1 if possible
    n_elig = eligible.sum(axis=1)
    k = np.floor(mlm_probability * n_elig + 0.5).astype(np.int64)
    if mlm_probability > 0:
        k = np.where(n_elig > 0, np.maximum(k, 1), 0)
    k = np.minimum(k, n_elig)

    # choose k eligible positions per row uniformly: random keys, ineligible
    # keys pushed past every eligible one, take the k smallest
    keys = rng.random(x.shape)
    keys[~eligible] = 2.0
    order = np.argsort(keys, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(x.shape[1])[None, :].repeat(x.shape[0], 0), axis=1)
    chosen = (ranks < k[:, None]) & eligible

    # 80 / 10 / 10
    u = rng.random(x.shape)
    to_mask = chosen & (u < mask_replace_prob)
    to_random = chosen & (u >= mask_replace_prob) & (u < mask_replace_prob + random_replace_prob)

    candidates = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), special_arr)
    if len(candidates) == 0 and to_random.any():
        raise ValueError("no non-special token id to draw random replacements from")

    inputs = x.copy()
    inputs[to_mask] = mask_id
    n_rand = int(to_random.sum())
    if n_rand:
        inputs[to_random] = candidates[rng.integers(len(candidates), size=n_rand)]
    labels = np.full(x.shape, ignore_index, dtype=np.int64)
    labels[chosen] = x[chosen]
    if squeeze:
        return inputs[0], labels[0]
    return inputs, labels


def make_mlm_batch(ids, tokenizer, rng, mlm_probability: float = 0.15) -> Tuple[np.ndarray, np.ndarray]:
    """BERT's masked LM on a (B, T) array of token ids with ``tokenizer``'s special tokens:
    ``(inputs, labels)`` from :func:`mask_tokens` (15% chosen; 80% ``[MASK]``, 10% random,
    10% kept; labels ``IGNORE_INDEX`` except at the chosen positions). Special tokens are never
    chosen."""
    sp = special_ids(tokenizer)
    return mask_tokens(ids, vocab_size=tokenizer.vocab_size, mask_id=sp.mask, special_ids=sp.all,
                       pad_id=sp.pad, mlm_probability=mlm_probability, rng=rng)


def mlm_batch(data, config, rng, tokenizer) -> Tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)``, each int64 of shape ``(config.batch_size, config.block_size)``: masked
    LM on random windows of the 1-D token array ``data`` (``config.mlm_probability``, default
    0.15, of each window chosen)."""
    from ..data import get_batch
    windows, _ = get_batch(data, config.batch_size, config.block_size, rng)
    return make_mlm_batch(windows, tokenizer, rng, getattr(config, "mlm_probability", 0.15))


def mlm_loss(model, inputs, labels):
    """A BERT's mean cross-entropy at the chosen positions (labels other than ``IGNORE_INDEX``)."""
    return model.mlm_loss(inputs, labels)


def _bert_classes():
    from ..models.bert import BERT, BERTConfig
    return BERTConfig, BERT


MASKED_LM = Objective(
    "mlm", mlm_batch, mlm_loss,
    "masked language modelling (BERT): predict the 15% chosen tokens (80% [MASK], 10% random, 10% kept)",
    model_classes=_bert_classes(), special_tokens=SPECIAL_TOKENS, generates_text=False)
