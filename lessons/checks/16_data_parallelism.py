"""Checks for lesson 16 (data parallelism). Each calls the student's function first, so an
unfinished stub raises NotImplementedError before any assertion."""
import numpy as np


def exercise_1(fn):
    """The full-batch gradient from per-shard mean gradients and shard sizes: Σ n_r g_r / Σ n_r."""
    rng = np.random.default_rng(0)
    for sizes in ((6, 6), (8, 4), (1, 2, 9), (5,)):
        grads = [rng.normal(size=(3, 4)) for _ in sizes]
        got = np.asarray(fn([g.copy() for g in grads], list(sizes)), dtype=float)
        want = sum(n * g for n, g in zip(sizes, grads)) / sum(sizes)
        assert got.shape == (3, 4), f"the gradient keeps the parameters' shape (3, 4), got {got.shape}"
        err = np.abs(got - want).max()
        hint = ("with equal shards this is the plain mean; " if len(set(sizes)) == 1 else
                "each shard's gradient is a mean over its own examples, so a shard of 8 examples should count "
                "twice as much as a shard of 4; ")
        assert err < 1e-12, f"shard sizes {sizes}: off by {err:.3g}; {hint}which weights make the sum a mean over all examples?"


def exercise_2(fn):
    """A ring all-reduce: every rank ends with the sum, and each sends 2(N−1)/N of the buffer."""
    rng = np.random.default_rng(1)
    for n, length in ((2, 6), (4, 8), (3, 9), (5, 20)):
        buffers = [rng.normal(size=length) for _ in range(n)]
        out = fn([b.copy() for b in buffers])
        assert isinstance(out, tuple) and len(out) == 2, "return (results, sent): the N buffers and the elements each rank sent"
        results, sent = out
        want = np.sum(buffers, axis=0)
        assert len(results) == n, f"{n} ranks: return {n} buffers, got {len(results)}"
        for r, res in enumerate(results):
            err = np.abs(np.asarray(res, dtype=float) - want).max()
            assert err < 1e-12, f"N = {n}: rank {r} ends {err:.3g} away from the sum; after the reduce-scatter, which chunk is complete on which rank?"
        expect = 2 * (n - 1) * length // n
        assert list(sent) == [expect] * n, (
            f"N = {n}, {length} elements: each rank should send {expect} elements (2(N-1) chunks of {length // n}), "
            f"you counted {list(sent)}: one chunk per rank per step, N-1 steps of reduce-scatter and N-1 of all-gather")


def exercise_3(fn):
    """Goyal et al.'s linear scaling rule with gradual warmup."""
    cases = [((0, 0.1, 256, 8192, 5), 0.1), ((5, 0.1, 256, 8192, 5), 3.2), ((9, 0.1, 256, 8192, 5), 3.2),
             ((2, 0.1, 256, 8192, 5), 0.1 + (3.2 - 0.1) * 2 / 5), ((3, 1e-3, 12, 12, 10), 1e-3),
             ((0, 1e-3, 12, 48, 0), 4e-3)]
    for args, want in cases:
        got = float(fn(*args))
        assert abs(got - want) < 1e-12 * max(1, want), (
            f"it={args[0]}, base_lr={args[1]}, base_batch={args[2]}, batch={args[3]}, warmup={args[4]}: expected "
            f"{want:.6g}, got {got:.6g}. The target is base_lr × batch / base_batch; during warmup go in a straight "
            f"line from base_lr (it = 0) to the target (it = warmup)")
