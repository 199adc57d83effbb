"""Teacher's solutions for lesson 16 (data parallelism)."""
import numpy as np


def exercise_1(grads, sizes):
    """Each g_r is the mean gradient over n_r examples, so Σ n_r g_r is the sum over all examples:
    divide by Σ n_r. Equal shards: the plain mean of the g_r (what an all-reduce average computes)."""
    return sum(n * g for n, g in zip(sizes, grads)) / sum(sizes)


def exercise_2(buffers):
    """Ring all-reduce (Patarasuk & Yuan 2009): split each buffer into N chunks. Reduce-scatter: at
    step s, rank r sends chunk (r − s) mod N to rank r+1, which adds it to its own; after N−1 steps
    rank r holds the complete sum of chunk (r + 1) mod N. All-gather: the complete chunks travel
    round the ring N−1 more steps, overwriting. Each step each rank sends one chunk."""
    n = len(buffers)
    chunks = [np.array_split(np.asarray(b, dtype=float).copy(), n) for b in buffers]
    sent = [0] * n
    for s in range(n - 1):                     # reduce-scatter
        msgs = [(r, (r - s) % n, chunks[r][(r - s) % n].copy()) for r in range(n)]
        for r, c, data in msgs:
            chunks[(r + 1) % n][c] += data
            sent[r] += data.size
    for s in range(n - 1):                     # all-gather
        msgs = [(r, (r + 1 - s) % n, chunks[r][(r + 1 - s) % n].copy()) for r in range(n)]
        for r, c, data in msgs:
            chunks[(r + 1) % n][c] = data
            sent[r] += data.size
    return [np.concatenate(c) for c in chunks], sent


def exercise_3(it, base_lr, base_batch, batch, warmup_iters):
    """Goyal et al. 2017 §2.1–2.2: η = base_lr · k with k = batch / base_batch, reached by a linear
    ramp from base_lr over the warmup."""
    target = base_lr * batch / base_batch
    if it >= warmup_iters:
        return target
    return base_lr + (target - base_lr) * it / warmup_iters
