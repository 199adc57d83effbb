"""Teacher's solutions for lesson 11 (pre-training objectives)."""
import numpy as np

from minillm.nn.functional import IGNORE_INDEX


def exercise_1(ids, chosen, mask_id, vocab_size, rng):
    """BERT's 80/10/10 rule at the ``chosen`` positions (a boolean array shaped like ``ids``):
    80% become ``mask_id``, 10% a random id in ``[0, vocab_size)``, 10% stay. Returns
    ``(inputs, labels)``: a corrupted copy, and the original ids at the chosen positions with
    ``IGNORE_INDEX`` (-100) elsewhere (the loss ignores them)."""
    ids = np.asarray(ids)
    chosen = np.asarray(chosen, dtype=bool)
    u = rng.random(ids.shape)
    inputs = ids.copy()
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)
    inputs[to_mask] = mask_id
    inputs[to_random] = rng.integers(0, vocab_size, size=int(to_random.sum()))
    labels = np.where(chosen, ids, IGNORE_INDEX)
    return inputs, labels


def exercise_2(inputs, targets, sentinel_ids):
    """Undo span corruption: each sentinel of ``inputs`` is replaced by the tokens that follow
    the same sentinel in ``targets`` (up to the next sentinel)."""
    sentinels = set(int(s) for s in sentinel_ids)
    spans, current = {}, None
    for t in targets:
        t = int(t)
        if t in sentinels:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    out = []
    for t in inputs:
        t = int(t)
        out.extend(spans[t] if t in sentinels else [t])
    return np.array(out, dtype=np.int64)


def exercise_3(ids, noise_mask, sentinel_ids):
    """Span corruption with a given ``noise_mask``: every maximal run of noise tokens becomes one
    sentinel in the input (the k-th run gets ``sentinel_ids[k]``), and the target lists each
    run's tokens after its sentinel."""
    inputs, targets = [], []
    k = -1
    previous = False
    for token, noisy in zip(ids, noise_mask):
        if noisy and not previous:           # a new span starts
            k += 1
            inputs.append(int(sentinel_ids[k]))
            targets.append(int(sentinel_ids[k]))
        if noisy:
            targets.append(int(token))
        else:
            inputs.append(int(token))
        previous = bool(noisy)
    return np.array(inputs, dtype=np.int64), np.array(targets, dtype=np.int64)
