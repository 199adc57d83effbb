"""Span corruption (T5; Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a
Unified Text-to-Text Transformer", §3.1.4 and §3.3).

Random spans (15% of the tokens, mean span length 3) are each replaced by one sentinel
``<extra_id_k>`` in the encoder input; the decoder must write the dropped spans, each after its
sentinel::

    Thank you for inviting me to your party last week .
    inputs : Thank you <X> me to your party <Y> week .
    targets: <X> for inviting <Y> last <Z>

* :func:`random_spans_noise_mask`, :func:`span_corruption` (one sequence),
  :func:`span_corruption_batch` (many) and :func:`reconstruct` (the inverse) work on NumPy ids;
* :func:`make_span_batch` adds a tokenizer's special tokens, the decoder inputs and the loss mask,
  :func:`span_batch` draws random windows of a corpus; :func:`span_loss` is the loss;
  ``SPAN_CORRUPTION`` the registered objective.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from ..nn.functional import IGNORE_INDEX
from .base import Objective, as_generator
from .special_tokens import SPECIAL_TOKENS, special_ids

__all__ = ["random_spans_noise_mask", "span_corruption", "span_corruption_batch", "reconstruct",
           "make_span_batch", "span_batch", "span_loss", "SPAN_CORRUPTION"]


def _round_half_up(x: float) -> int:
    """Round to nearest, halves up (Python's ``round`` rounds halves to even)."""
    return int(np.floor(x + 0.5))


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
    rng = as_generator(rng)
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
    rng = as_generator(rng)
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


def make_span_batch(ids, tokenizer, rng, noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                    lengths=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """T5's span corruption of each row of ``ids`` (B, T), or of a list of 1-D sequences, with
    ``tokenizer``'s sentinels, ``[EOS]`` and ``[PAD]``.

    Returns ``(src, src_padding_mask, tgt_in, tgt_targets)``: the corrupted inputs (B, S) ending
    in ``[EOS]`` and right-padded with ``[PAD]`` (the mask (B, S) is True at padding); the decoder
    inputs (B, U): ``[PAD]`` as the start token, as T5, then the targets shifted right; the
    targets (B, U): sentinel, span, sentinel, span, ..., ``[EOS]``, with ``IGNORE_INDEX`` at
    padding.
    """
    sp = special_ids(tokenizer)
    src, tgt, src_len, tgt_len = span_corruption_batch(
        ids, pad_id=sp.pad, lengths=lengths, noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length, sentinel_ids=sp.sentinels, rng=rng, eos_id=sp.eos)
    src_padding_mask = np.arange(src.shape[1])[None, :] >= src_len[:, None]
    tgt_real = np.arange(tgt.shape[1])[None, :] < tgt_len[:, None]
    tgt_in = np.concatenate([np.full((tgt.shape[0], 1), sp.pad, dtype=np.int64), tgt[:, :-1]], axis=1)
    tgt_targets = np.where(tgt_real, tgt, IGNORE_INDEX).astype(np.int64)
    return src, src_padding_mask, tgt_in, tgt_targets


def span_batch(data, config, rng, tokenizer) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`make_span_batch` on ``config.batch_size`` random windows of ``config.block_size - 1``
    tokens of the 1-D token array ``data`` (the encoder input, with its sentinels and ``[EOS]``,
    then fits in ``block_size``)."""
    from ..data import get_batch
    windows, _ = get_batch(data, config.batch_size, config.block_size - 1, rng)
    return make_span_batch(windows, tokenizer, rng, getattr(config, "noise_density", 0.15),
                           getattr(config, "mean_noise_span_length", 3.0))


def span_loss(model, src, src_padding_mask, tgt_in, tgt_targets):
    """A T5's mean cross-entropy over the real (not ``IGNORE_INDEX``) decoder targets."""
    return model(src, tgt_in, src_padding_mask, tgt_targets)[1]


def _t5_classes():
    from ..models.t5 import T5, T5Config
    return T5Config, T5


def _configure_t5(model_config, tokenizer) -> None:
    """T5 starts decoding with ``[PAD]`` (as the span batches do)."""
    model_config.decoder_start_id = special_ids(tokenizer).pad


SPAN_CORRUPTION = Objective(
    "span", span_batch, span_loss,
    "span corruption (T5): the decoder writes the spans that sentinels replaced in the encoder input",
    model_classes=_t5_classes(), configure_model=_configure_t5, special_tokens=SPECIAL_TOKENS,
    generates_text=False)
