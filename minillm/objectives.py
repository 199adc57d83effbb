"""The data side of language-model pre-training objectives (NumPy only).

Each function turns a batch of token ids into ``(model inputs, targets)``:

* :func:`causal_lm_batch` -- next-token prediction (GPT): targets are the
  inputs shifted left by one.
* :func:`mask_tokens` -- masked language modelling (BERT; Devlin et al. 2019,
  "BERT: Pre-training of Deep Bidirectional Transformers for Language
  Understanding", Sec. 3.1 "Task #1: Masked LM"): 15% of the tokens are chosen;
  of those 80% become ``[MASK]``, 10% a random token, 10% stay unchanged; the
  loss is taken at the chosen positions only.
* :func:`span_corruption` / :func:`span_corruption_batch` -- T5's span
  corruption (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
  with a Unified Text-to-Text Transformer", Sec. 3.1.4 and 3.3): random spans
  (15% of the tokens, mean span length 3) are each replaced by one sentinel in
  the input; the target lists the dropped spans, each after its sentinel.
  :func:`reconstruct` inverts it.

All randomness comes from a :class:`numpy.random.Generator` passed by the
caller; input arrays are never modified.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "causal_lm_batch",
    "mask_tokens",
    "random_spans_noise_mask",
    "span_corruption",
    "span_corruption_batch",
    "reconstruct",
]

IGNORE_INDEX = -100  # the cross-entropy "ignore" label used throughout minillm


def _round_half_up(x: float) -> int:
    """Round to nearest, halves up (Python's ``round`` rounds halves to even)."""
    return int(np.floor(x + 0.5))


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise TypeError("pass rng=np.random.default_rng(seed) (results must be reproducible)")
    return np.random.default_rng(rng)


# ---------------------------------------------------------------------------
# Causal language modelling
# ---------------------------------------------------------------------------


def causal_lm_batch(ids) -> Tuple[np.ndarray, np.ndarray]:
    """Next-token prediction: ``inputs = ids[..., :-1]``, ``targets = ids[..., 1:]``
    (the model reading ``ids[..., :t+1]`` must predict ``ids[..., t+1]``).
    Works on any leading shape; returns contiguous copies."""
    ids = np.asarray(ids)
    if ids.ndim == 0 or ids.shape[-1] < 2:
        raise ValueError(f"need at least 2 tokens along the last axis, got shape {ids.shape}")
    return np.ascontiguousarray(ids[..., :-1]), np.ascontiguousarray(ids[..., 1:])


# ---------------------------------------------------------------------------
# Masked language modelling (BERT)
# ---------------------------------------------------------------------------


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
    rng = _as_rng(rng)
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


# ---------------------------------------------------------------------------
# Span corruption (T5)
# ---------------------------------------------------------------------------


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``num_items`` into ``num_segments`` non-empty parts, uniformly over
    all such compositions (T5's ``_random_segmentation``)."""
    if num_segments == 1:
        return np.array([num_items], dtype=np.int64)
    cuts = np.sort(rng.choice(num_items - 1, size=num_segments - 1, replace=False)) + 1
    return np.diff(np.concatenate([[0], cuts, [num_items]])).astype(np.int64)


def random_spans_noise_mask(length: int, noise_density: float = 0.15,
                            mean_noise_span_length: float = 3.0, *, rng,
                            random_roll: bool = False) -> np.ndarray:
    """Boolean noise mask of ``length`` tokens (T5's ``random_spans_noise_mask``).

    ``num_noise = round(length * noise_density)``, clipped to ``[1, length-1]``;
    ``num_spans = round(num_noise / mean_noise_span_length)``, clipped to
    ``[1, min(num_noise, length - num_noise)]`` (halves rounded up). The noise
    tokens and the non-noise tokens are each split into ``num_spans`` random
    non-empty segments, which are interleaved starting with non-noise -- so the
    mask is ``keep, noise, keep, noise, ...`` and ends with noise. With
    ``random_roll`` the mask is rotated by a random offset (T5's later option)
    so spans can also start the sequence.
    """
    rng = _as_rng(rng)
    length = int(length)
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
    num_noise = min(max(_round_half_up(length * noise_density), 1), length - 1)
    num_nonnoise = length - num_noise
    num_spans = max(_round_half_up(num_noise / mean_noise_span_length), 1)
    num_spans = min(num_spans, num_noise, num_nonnoise)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    keep_lengths = _random_segmentation(num_nonnoise, num_spans, rng)
    interleaved = np.stack([keep_lengths, noise_lengths], axis=1).reshape(-1)
    is_noise = np.repeat(np.tile([False, True], num_spans), interleaved)
    if random_roll:
        is_noise = np.roll(is_noise, int(rng.integers(length)))
    return is_noise


def span_corruption(ids, *, noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                    sentinel_ids: Sequence[int], rng, eos_id: Optional[int] = None,
                    final_sentinel: bool = False, random_roll: bool = False,
                    noise_mask: Optional[np.ndarray] = None
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """T5 span corruption of one 1-D sequence (Raffel et al. 2020, Sec. 3.1.4).

    A noise mask is drawn with :func:`random_spans_noise_mask` (or given as
    ``noise_mask``). In the input every maximal run of noise tokens is replaced
    by one sentinel -- ``sentinel_ids[0]`` for the first run, ``[1]`` for the
    next... (T5's ``<extra_id_0>``, ``<extra_id_1>``...); the target is
    ``sentinel_0 span_0 sentinel_1 span_1 ...``. Example (the paper's)::

        Thank you for inviting me to your party last week .
        inputs : Thank you <X> me to your party <Y> week .
        targets: <X> for inviting <Y> last <Z>

    ``final_sentinel=True`` appends the next unused sentinel to the target (the
    ``<Z>`` above); ``eos_id`` is appended to both input and target when given.
    Returns int64 arrays ``(inputs, targets)``.
    """
    rng = _as_rng(rng)
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"span_corruption takes one 1-D sequence, got shape {ids.shape}")
    ids = ids.astype(np.int64, copy=False)
    if noise_mask is None:
        noise = random_spans_noise_mask(len(ids), noise_density, mean_noise_span_length,
                                        rng=rng, random_roll=random_roll)
    else:
        noise = np.asarray(noise_mask, dtype=bool)
        if noise.shape != ids.shape:
            raise ValueError("noise_mask must have the shape of ids")
    sentinels = np.asarray(list(sentinel_ids), dtype=np.int64)
    prev = np.concatenate([[False], noise[:-1]])
    starts = noise & ~prev  # first token of each noise run
    n_runs = int(starts.sum())
    if len(sentinels) < n_runs + int(final_sentinel):
        raise ValueError(f"need {n_runs + int(final_sentinel)} sentinel ids, got {len(sentinels)}")
    run_id = np.cumsum(starts) - 1  # index of the current noise run

    # inputs: keep the non-noise tokens; the first token of each noise run
    # becomes that run's sentinel and the rest of the run is dropped
    inputs = ids.copy()
    inputs[starts] = sentinels[run_id[starts]]
    inputs = inputs[~noise | starts]
    # targets: the noise tokens, with run j's sentinel inserted before run j
    pieces: List[np.ndarray] = []
    if n_runs:
        t_tokens = ids[noise]
        t_starts = starts[noise]
        out = np.empty(len(t_tokens) + n_runs, dtype=np.int64)
        pos = np.arange(len(t_tokens)) + np.cumsum(t_starts)  # shifted by sentinels so far
        out[pos] = t_tokens
        out[pos[t_starts] - 1] = sentinels[:n_runs]
        pieces.append(out)
    if final_sentinel:
        pieces.append(sentinels[n_runs:n_runs + 1])
    targets = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    if eos_id is not None:
        inputs = np.concatenate([inputs, [eos_id]]).astype(np.int64)
        targets = np.concatenate([targets, [eos_id]]).astype(np.int64)
    return inputs.astype(np.int64), targets.astype(np.int64)


def span_corruption_batch(seqs: Union[Sequence[Sequence[int]], np.ndarray], *, pad_id: int,
                          lengths: Optional[Sequence[int]] = None, **kwargs
                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply :func:`span_corruption` to every sequence of a list (ragged) or of
    a 2-D array (optionally truncated row-wise to ``lengths``), drawing from
    the one ``rng`` in ``kwargs`` in order.

    Returns ``(inputs, targets, input_lengths, target_lengths)``: int64 arrays
    right-padded with ``pad_id`` to the longest input / target, and the true
    lengths (``inputs[i, :input_lengths[i]]`` is sequence ``i``'s input).
    """
    if isinstance(seqs, np.ndarray) and seqs.ndim == 2:
        rows = [seqs[i] for i in range(seqs.shape[0])]
    else:
        rows = [np.asarray(s) for s in seqs]
    if lengths is not None:
        if len(lengths) != len(rows):
            raise ValueError("lengths must have one entry per sequence")
        rows = [r[:int(n)] for r, n in zip(rows, lengths)]
    outs = [span_corruption(r, **kwargs) for r in rows]
    in_len = np.array([len(i) for i, _ in outs], dtype=np.int64)
    tg_len = np.array([len(t) for _, t in outs], dtype=np.int64)
    B = len(outs)
    inputs = np.full((B, int(in_len.max(initial=0))), pad_id, dtype=np.int64)
    targets = np.full((B, int(tg_len.max(initial=0))), pad_id, dtype=np.int64)
    for b, (i, t) in enumerate(outs):
        inputs[b, :len(i)] = i
        targets[b, :len(t)] = t
    return inputs, targets, in_len, tg_len


def reconstruct(inputs, targets, sentinel_ids: Sequence[int],
                eos_id: Optional[int] = None) -> np.ndarray:
    """Rebuild the original sequence from a span-corruption ``(inputs, targets)``
    pair (unpadded 1-D). Each sentinel in the input is replaced by the tokens
    that follow the same sentinel in the target (up to the next sentinel). A
    trailing ``eos_id`` is removed from both first, when given."""
    inputs = [int(t) for t in np.asarray(inputs).reshape(-1)]
    targets = [int(t) for t in np.asarray(targets).reshape(-1)]
    if eos_id is not None:
        if inputs and inputs[-1] == eos_id:
            inputs = inputs[:-1]
        if targets and targets[-1] == eos_id:
            targets = targets[:-1]
    sentinel_set = {int(s) for s in sentinel_ids}
    spans: dict = {}
    current: Optional[int] = None
    for t in targets:
        if t in sentinel_set:
            current = t
            spans[current] = []
        elif current is None:
            raise ValueError("target does not start with a sentinel")
        else:
            spans[current].append(t)
    out: List[int] = []
    for t in inputs:
        if t in sentinel_set:
            if t not in spans:
                raise ValueError(f"sentinel {t} of the input is missing from the target")
            out.extend(spans[t])
        else:
            out.append(t)
    return np.array(out, dtype=np.int64)
