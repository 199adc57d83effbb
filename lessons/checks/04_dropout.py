"""Checks for lesson 04 (dropout). Each calls the student's function first, so an unfinished
stub raises NotImplementedError before any assertion."""
import numpy as np


def exercise_1(fn):
    """Inverted dropout: zeros with probability p, survivors scaled by 1/(1 − p), expectation
    preserved, identity in eval."""
    rng = np.random.default_rng(0)
    x = np.ones((400, 500))
    y = np.asarray(fn(x.copy(), 0.3, True, rng))
    assert y.shape == x.shape, f"the output should have the input's shape {x.shape}, got {y.shape}"
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.3) < 0.01, (
        f"with p = 0.3 about 30% of the elements should be zero, got {dropped:.1%}: keep each element "
        "with probability 1 − p (rng.random(x.shape) >= p)")
    survivors = y[y != 0]
    assert np.allclose(survivors, 1 / 0.7), (
        f"the kept elements of a tensor of ones should all be 1/(1 − p) = {1 / 0.7:.4f}, got values like "
        f"{survivors[:3]}: inverted dropout divides the survivors by 1 − p")
    assert abs(y.mean() - 1.0) < 0.01, f"the mean should stay ≈ 1 (expectation preserved), got {y.mean():.4f}"
    z = np.random.default_rng(1).standard_normal((3, 4))
    out = np.asarray(fn(z.copy(), 0.5, False, np.random.default_rng(2)))
    assert np.array_equal(out, z), "in eval mode (training=False) dropout must return the input unchanged"
    out = np.asarray(fn(z.copy(), 0.0, True, np.random.default_rng(2)))
    assert np.array_equal(out, z), "with p = 0 nothing is dropped: the output must equal the input"
    # expectation of a non-constant input, averaged over many masks
    rng = np.random.default_rng(3)
    avg = np.mean([np.asarray(fn(z.copy(), 0.5, True, rng)) for _ in range(4000)], axis=0)
    assert np.allclose(avg, z, atol=0.1), (
        f"averaged over many masks the output should equal the input (E[y] = x); got max error "
        f"{np.abs(avg - z).max():.3f}")


def exercise_2(fn):
    """Survival probability through stacked dropouts, and the total scale of a survivor."""
    for ps in ([0.5], [0.1, 0.2], [0.2, 0.2, 0.5], [0.0, 0.3]):
        got = fn(list(ps))
        assert isinstance(got, tuple) and len(got) == 2, "return a pair (survival probability, scale)"
        survive, scale = float(got[0]), float(got[1])
        want = float(np.prod([1 - p for p in ps]))
        assert abs(survive - want) < 1e-12, (
            f"for dropout rates {ps} a unit survives with probability {want:.4f}, got {survive:.4f}: the "
            "masks are independent, so multiply the keep probabilities (1 − p)")
        assert abs(scale - 1 / want) < 1e-9, (
            f"each layer scales a survivor by 1/(1 − p), so the total scale for {ps} is {1 / want:.4f}, "
            f"got {scale:.4f}")
    # the simulation agrees
    rng = np.random.default_rng(0)
    ps = [0.1, 0.3]
    keep = np.ones(200_000, bool)
    for p in ps:
        keep &= rng.random(keep.shape) >= p
    assert abs(keep.mean() - float(fn(ps)[0])) < 0.01


def exercise_3(fn):
    """Test-time weight scaling of non-inverted dropout."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 4))
    for p in (0.2, 0.5):
        got = np.asarray(fn(W.copy(), p))
        assert got.shape == W.shape, f"expected an array of shape {W.shape}, got {got.shape}"
        assert np.allclose(got, W * (1 - p)), (
            f"with p = {p}, the training-time expectation of a unit's output is (1 − p) times its value, so "
            "the test-time weights are W·(1 − p) (not W/(1 − p): that is the inverted form, applied in training)")
    # the scaled network matches the mean of the dropout network on a linear layer
    x = rng.standard_normal(5)
    masks = rng.random((20000, 5)) >= 0.5
    mean_out = np.mean((masks * x) @ W, axis=0)
    assert np.allclose(x @ np.asarray(fn(W.copy(), 0.5)), mean_out, atol=0.05)
