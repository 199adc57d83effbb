"""The compiled CPU loops (``minillm/kernels/compiled.py``, the ``[fast]`` extra) give the same
results as NumPy's passes: on every layout, in float32 and float64, with NaN and ±inf, in a
forked child, from two threads at once, and over a few training steps. Skipped where numba is
not installed; the rest of the suite then runs the NumPy path only.
"""
import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("numba")

import minillm as mm  # noqa: E402
from minillm import ops  # noqa: E402
from minillm.kernels import compiled  # noqa: E402
from minillm.nn import functional as F  # noqa: E402
from minillm.tensor import Tensor  # noqa: E402

from test_layouts import LAYOUTS, relayout  # noqa: E402

# float32: the compiled layer norm sums in float64, and the compiled GELU's σ(2u) = ½(1 + tanh u) is
# a rational tanh a few ulp from tanh, where NumPy's path computes 1/(1 + exp(−2u)); in σ's far
# tail ½(1 + tanh u) keeps only absolute accuracy (as PyTorch's float32 GELU does), so each path's
# gradient is within ~4e-6 of the float64 value per unit of upstream gradient (measured below)
@pytest.fixture(autouse=True)
def compile_every_size(monkeypatch):
    """The tests use small arrays; the library keeps NumPy below ``MIN_ELEMENTS``. Also counts the
    compiled loops fetched (``LOOPS_USED``), so a comparison can prove the compiled side ran."""
    monkeypatch.setattr(compiled, "MIN_ELEMENTS", 0)
    LOOPS_USED.clear()
    real = compiled.kernel

    def counting(name):
        LOOPS_USED.append(name)
        return real(name)
    monkeypatch.setattr(compiled, "kernel", counting)


LOOPS_USED = []


TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=8e-6)}


def _layer_norm(x, w, b):
    return F.layer_norm(x, x.shape[-1], w, b)


def _gelu_tanh(x):
    return ops.gelu(x, approximate="tanh")


def _both_paths(fn, arrays, out_grad, compiled_loops=2):
    """Outputs and gradients of ``fn`` on leaves made from ``arrays``, compiled and NumPy; the
    compiled run must have used ``compiled_loops`` loops (forward and backward: 2) and the NumPy
    run none."""
    results = {}
    for flag in (True, False):
        LOOPS_USED.clear()
        with compiled.enabled_if(flag):
            leaves = [None if a is None else Tensor(a, requires_grad=True) for a in arrays]
            out = fn(*leaves)
            out.backward(Tensor(out_grad))
            results[flag] = [out.numpy()] + [None if t is None else t.grad.numpy() for t in leaves]
        assert len(LOOPS_USED) == (compiled_loops if flag else 0), (flag, LOOPS_USED)
    return results[True], results[False]


def _assert_same(got, want, dtype, what):
    for i, (a, b) in enumerate(zip(got, want)):
        if a is None:
            assert b is None, what
            continue
        assert a.dtype == b.dtype == dtype, f"{what}[{i}]: dtypes {a.dtype}, {b.dtype}"
        tol = dict(TOLERANCE[dtype])
        # the weight/bias gradients are sums over all rows: NumPy sums them in the input's dtype,
        # the compiled loop in float64, so float32 differs by the sum's rounding, relative to its scale
        tol["atol"] *= max(1.0, float(np.max(np.abs(b), initial=0.0)))
        np.testing.assert_allclose(a, b, **tol, err_msg=f"{what}[{i}]")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(3, 5, 16), (2, 300, 128), (1, 7)])   # (2, 300, 128): threaded
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_compiled_equals_numpy(dtype, layout, shape, affine):
    rng = np.random.default_rng(1)
    x = relayout((3 * rng.standard_normal(shape) + 1).astype(dtype), layout)
    d = shape[-1]
    w = rng.standard_normal(d).astype(dtype) if affine else None
    b = rng.standard_normal(d).astype(dtype) if affine else None
    g = rng.standard_normal(shape).astype(dtype)
    got, want = _both_paths(_layer_norm, [x, w, b], g)
    _assert_same(got, want, dtype, f"layer_norm {layout} {shape}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(4, 33), (12, 64, 512)])   # (12, 64, 512): threaded
def test_gelu_tanh_compiled_equals_numpy(layout, shape):
    rng = np.random.default_rng(2)
    x = relayout((4 * rng.standard_normal(shape)).astype(np.float32), layout)
    g = rng.standard_normal(shape).astype(np.float32)
    got, want = _both_paths(_gelu_tanh, [x], g)
    _assert_same(got, want, np.float32, f"gelu {layout} {shape}")


def test_gelu_tanh_compiled_backward_follows_its_forward():
    """The compiled forward keeps no σ(2u) (its backward recomputes it), so its backward runs the
    compiled loop even when the switch is off by then, or the upstream gradient is float64."""
    rng = np.random.default_rng(16)
    x = (3 * rng.standard_normal((8, 40))).astype(np.float32)
    g = rng.standard_normal((8, 40))
    grads = {}
    for flag in (True, False):
        with compiled.enabled_if(flag):
            leaf = Tensor(x, requires_grad=True)
            out = _gelu_tanh(leaf)
        with compiled.enabled_if(False):
            out.backward(Tensor(g))   # float64 gradient into a float32 op
        grads[flag] = leaf.grad.numpy()
    assert LOOPS_USED == ["gelu_tanh_forward", "gelu_tanh_backward"]
    assert grads[True].dtype == np.float32
    np.testing.assert_allclose(grads[True], grads[False], rtol=1e-5, atol=8e-6)


def test_gelu_tanh_compiled_on_special_values_matches_numpy():
    """NaN stays NaN, ±inf and far tails give what NumPy's σ(2u) gives (σ exactly 0 or 1)."""
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 5.0, -5.0, 9.0, -9.0, 50.0, -50.0,
                  3e38, -3e38], np.float32)
    got, want = _both_paths(_gelu_tanh, [x], np.ones_like(x))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
    assert got[0][2] != got[0][2] and got[0][12] == 0.0   # gelu(−inf) = −inf·0 = NaN as in NumPy; gelu(−50) = −0


def test_gelu_tanh_compiled_is_accurate_against_float64():
    x = np.linspace(-12, 12, 200_001).astype(np.float32)
    with compiled.enabled_if(True):
        leaf = Tensor(x, requires_grad=True)
        out = _gelu_tanh(leaf)
        out.backward(Tensor(np.ones_like(x)))
    assert LOOPS_USED == ["gelu_tanh_forward", "gelu_tanh_backward"]
    x64 = x.astype(np.float64)
    k, c = np.sqrt(2 / np.pi), 0.044715
    t = np.tanh(k * (x64 + c * x64 ** 3))
    exact = 0.5 * x64 * (1 + t)
    exact_grad = 0.5 * (1 + t) + 0.5 * x64 * (1 - t * t) * k * (1 + 3 * c * x64 ** 2)
    assert np.max(np.abs(out.numpy() - exact)) < 2e-6, np.max(np.abs(out.numpy() - exact))
    assert np.max(np.abs(leaf.grad.numpy() - exact_grad)) < 5e-6, np.max(np.abs(leaf.grad.numpy() - exact_grad))


def test_layer_norm_compiled_propagates_nan_and_inf_per_row():
    x = np.ones((4, 8), np.float32)
    x[0, 3], x[1, 5] = np.nan, np.inf
    x[2] = np.arange(8)
    for flag in (True, False):
        with compiled.enabled_if(flag):
            y = F.layer_norm(Tensor(x), 8).numpy()
        assert np.isnan(y[0]).all() and np.isnan(y[1]).all(), (flag, y[:2])
        assert np.isfinite(y[2:]).all()
        np.testing.assert_allclose(y[3], 0.0)   # a constant row normalizes to 0 (σ² = 0, ε keeps it finite)


def test_float64_gelu_and_erf_gelu_stay_on_numpy_and_agree():
    """Only float32 tanh GELU has a compiled loop; the rest must be unchanged by the switch."""
    rng = np.random.default_rng(3)
    for dtype, approximate in ((np.float64, "tanh"), (np.float32, "none"), (np.float64, "none")):
        x = rng.standard_normal((5, 9)).astype(dtype)
        fn = lambda t: ops.gelu(t, approximate=approximate)   # noqa: E731
        got, want = _both_paths(fn, [x], np.ones_like(x), compiled_loops=0)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def _compiled_ops_in_child(queue):
    try:
        x = Tensor(np.random.default_rng(0).standard_normal((300, 512)).astype(np.float32), requires_grad=True)
        y = F.layer_norm(_gelu_tanh(x), 512)
        y.sum().backward()
        queue.put(float(np.abs(x.grad.numpy()).sum()))
    except Exception as exc:   # pragma: no cover - reported to the parent
        queue.put(repr(exc))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_compiled_kernels_work_in_a_forked_child():
    with compiled.enabled_if(True):
        _compiled_ops_in_child(queue := multiprocessing.Queue())   # compile and use in the parent first
        expected = queue.get(timeout=60)
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_compiled_ops_in_child, args=(queue,))
        child.start()
        got = queue.get(timeout=60)
        child.join(60)
    assert child.exitcode == 0 and got == pytest.approx(expected, rel=1e-6), got


def test_compiled_kernels_from_two_threads_at_once():
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((200, 1024)).astype(np.float32) for _ in range(2)]
    with compiled.enabled_if(True):
        want = [F.layer_norm(_gelu_tanh(Tensor(a)), 1024).numpy() for a in inputs]
        got = [None, None]

        def work(i):
            for _ in range(20):
                got[i] = F.layer_norm(_gelu_tanh(Tensor(inputs[i])), 1024).numpy()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_training_steps_agree_on_both_paths(dropout):
    """A few GPT training steps (AdamW) give the same losses on both paths, and every compiled loop
    took part in the compiled run."""
    from minillm.models.gpt import GPT, GPTConfig
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 30, (4, 17)) for _ in range(5)]
    losses = {}
    for flag in (True, False):
        LOOPS_USED.clear()
        with compiled.enabled_if(flag):
            mm.manual_seed(0)
            model = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=dropout))
            opt = mm.optim.AdamW(model.parameters(), lr=1e-2)
            losses[flag] = []
            for b in batches:
                _, loss = model(mm.tensor(b[:, :-1]), mm.tensor(b[:, 1:]))
                loss.backward()
                opt.step()
                opt.zero_grad()
                losses[flag].append(loss.item())
        if flag:
            assert {"layer_norm_forward", "layer_norm_backward", "gelu_tanh_forward", "gelu_tanh_backward",
                    "causal_softmax_forward", "causal_softmax_backward", "adam_update"} <= set(LOOPS_USED)
        else:
            assert LOOPS_USED == []
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)


def test_switch_follows_the_environment_and_refuses_without_numba(monkeypatch):
    code = "from minillm.kernels import compiled; print(compiled.is_enabled())"
    env = dict(os.environ, MINILLM_COMPILED="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    out = subprocess.run([sys.executable, "-c", "import sys, minillm; print('numba' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "importing minillm must not import numba"
    monkeypatch.setattr(compiled, "_available", False)
    with pytest.raises(RuntimeError, match="numba"):
        compiled.set_enabled(True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tq,tk", [(64, 64), (5, 9), (9, 5), (1, 1), (3, 40)])   # tq > tk: rows with no key
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_causal_attention_compiled_equals_numpy(layout, tq, tk, dropout):
    rng = np.random.default_rng(6)
    b, h, d = 3, 2, 8
    q, k, v = (relayout(rng.standard_normal(shape).astype(np.float32), layout)
               for shape in ((b, h, tq, d), (b, h, tk, d), (b, h, tk, d)))
    g = rng.standard_normal((b, h, tq, d)).astype(np.float32)

    def attend(qt, kt, vt):
        mm.manual_seed(11)   # the same dropout mask on both paths
        return F.scaled_dot_product_attention(qt, kt, vt, dropout_p=dropout, is_causal=True)
    got, want = _both_paths(attend, [q, k, v], g)
    _assert_same(got, want, np.float32, f"attention {layout} {tq}x{tk} p={dropout}")
    if tq > tk:   # query i sees keys ≤ i + tk − tq: the first tq − tk rows see none and output 0
        assert not np.any(got[0][:, :, :tq - tk])


def test_causal_attention_compiled_with_an_explicit_causal_mask_and_weights():
    """A hand-made causal mask takes the compiled path too; the weights are exactly 0 past the
    diagonal and each row sums to 1; any other mask (padding) runs NumPy's passes."""
    rng = np.random.default_rng(8)
    q = Tensor(rng.standard_normal((2, 2, 6, 4)).astype(np.float32))
    causal = np.tri(6, 6, dtype=bool)
    with compiled.enabled_if(True):
        LOOPS_USED.clear()
        w = F.attention_weights(q, q, attn_mask=causal).numpy()
        assert LOOPS_USED == ["causal_softmax_forward"]
        padded = causal & np.array([True] * 5 + [False])
        w_pad = F.attention_weights(q, q, attn_mask=padded).numpy()
        assert LOOPS_USED == ["causal_softmax_forward"]   # the padding mask ran NumPy's passes
    with compiled.enabled_if(False):
        w_ref = F.attention_weights(q, q, attn_mask=causal).numpy()
        w_pad_ref = F.attention_weights(q, q, attn_mask=padded).numpy()
    assert np.all(w[..., ~causal] == 0)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(w_pad, w_pad_ref)


def test_compiled_causal_softmax_is_accurate_against_float64():
    """The causal softmax's vectorizable float32 exp (Cephes' expf): a row of scores spanning
    float32's whole exp range gives the float64 softmax to float32 precision; scores that underflow
    (below −87.34, and −inf) give exactly 0; a NaN score makes its row NaN, as in NumPy."""
    from minillm.kernels import numba_loops

    x = np.concatenate([np.linspace(-87.3, 0, 100_001), [-87.4, -100.0, -np.inf]]).astype(np.float32)
    row = x.reshape(1, 1, -1).copy()
    numba_loops.causal_softmax_forward(row, row.shape[-1], 1.0, np.empty(row.shape[-1], np.int32))
    exp64 = np.exp(x.astype(np.float64))
    want = exp64 / exp64.sum()
    got = row[0, 0].astype(np.float64)
    assert np.all(got[-3:] == 0)
    normal = want > 1e-30   # leave out float32's subnormal range, where the spacing is absolute
    assert np.max(np.abs(got[normal] - want[normal]) / want[normal]) < 1e-6
    with_nan = np.array([[[0.0, np.nan, -1.0]]], np.float32)
    numba_loops.causal_softmax_forward(with_nan, 3, 1.0, np.empty(3, np.int32))
    assert np.isnan(with_nan).all()


def test_compiled_causal_softmax_scale_and_rows_of_minus_inf():
    """The scale inside the exponent gives softmax(scale·s); a row whose visible scores are all
    −inf has no allowed key and gives 0, as NumPy's path does (not NaN from −inf − (−inf))."""
    from minillm.kernels import numba_loops

    rng = np.random.default_rng(12)
    s = rng.standard_normal((2, 5, 5)).astype(np.float32) * 4
    got = s.copy()
    numba_loops.causal_softmax_forward(got, 0, 0.25, np.empty(5, np.int32))
    scaled = np.where(np.tri(5, dtype=bool), 0.25 * s.astype(np.float64), -np.inf)
    want = np.exp(scaled - scaled.max(-1, keepdims=True))
    np.testing.assert_allclose(got, want / want.sum(-1, keepdims=True), rtol=2e-6, atol=1e-7)
    s[1, 3, :4] = -np.inf
    numba_loops.causal_softmax_forward(s, 0, 1.0, np.empty(5, np.int32))
    assert np.all(s[1, 3] == 0) and np.isfinite(s).all()
    # through attention: a query of −inf against keys with positive first components
    q = np.zeros((1, 2, 200, 64), np.float32)   # big enough for the compiled path
    q[0, 1, 7, 0] = -np.inf
    k = np.abs(rng.standard_normal((1, 2, 200, 64))).astype(np.float32) + 0.1
    v = rng.standard_normal((1, 2, 200, 64)).astype(np.float32)
    outs = []
    for flag in (True, False):
        with compiled.enabled_if(flag):
            LOOPS_USED.clear()
            outs.append(F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), is_causal=True).numpy())
            assert ("causal_softmax_forward" in LOOPS_USED) == flag
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    assert np.all(outs[0][0, 1, 7] == 0)


@pytest.mark.parametrize("scale", [0.0, -0.5])
def test_causal_attention_with_a_scale_that_is_not_positive_runs_numpy(scale):
    """The compiled softmax takes the max of the unscaled scores, right only for scale > 0; any
    other scale runs NumPy's passes, with NumPy's results."""
    rng = np.random.default_rng(13)
    q, k, v = (Tensor(rng.standard_normal((2, 2, 100, 64)).astype(np.float32)) for _ in range(3))
    outs = []
    for flag in (True, False):
        with compiled.enabled_if(flag):
            LOOPS_USED.clear()
            outs.append(F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale).numpy())
            assert LOOPS_USED == []
    np.testing.assert_array_equal(outs[0], outs[1])


def test_numba_that_fails_to_load_falls_back_to_numpy_with_one_warning(monkeypatch):
    """numba installed but unusable (built for another NumPy, say): the step must not fail; the
    kernels warn once and run NumPy's passes, with NumPy's results."""
    import importlib

    def broken(name, *args, **kwargs):
        raise ImportError("Numba needs NumPy 2.3 or less")
    monkeypatch.setattr(compiled, "_loops", None)
    monkeypatch.setattr(compiled, "_load_error", None)
    monkeypatch.setattr(compiled, "_enabled", True)
    monkeypatch.setattr(compiled.importlib, "import_module", broken)
    x = np.random.default_rng(9).standard_normal((64, 256)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="could not be loaded.*NumPy 2.3"):
        got = F.layer_norm(Tensor(x), 256).numpy()
    assert not compiled.is_enabled()
    again = F.layer_norm(Tensor(x), 256).numpy()   # no second warning: the switch is off now
    monkeypatch.setattr(compiled.importlib, "import_module", importlib.import_module)
    with compiled.enabled_if(False):
        want = F.layer_norm(Tensor(x), 256).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(again, want)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_packed_self_attention_compiled_equals_numpy(layout, dropout):
    """nn.MultiHeadAttention's self-attention path: causal, with dropout on the probabilities."""
    rng = np.random.default_rng(12)
    qkv = relayout(rng.standard_normal((3, 10, 24)).astype(np.float32), layout)
    g = rng.standard_normal((3, 10, 8)).astype(np.float32)

    def attend(t):
        mm.manual_seed(5)
        return F.packed_self_attention(t, 2, dropout_p=dropout, is_causal=True)
    got, want = _both_paths(attend, [qkv], g)
    _assert_same(got, want, np.float32, f"packed {layout} p={dropout}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt_class,options", [
    ("AdamW", dict(weight_decay=0.1)),
    ("Adam", dict(weight_decay=0.01)),
    ("Adam", dict(maximize=True)),
    ("AdamW", dict(weight_decay=0.1, amsgrad=True)),   # amsgrad keeps NumPy's in-place form
])
def test_compiled_adam_equals_numpy(dtype, opt_class, options):
    """Adam/AdamW's compiled loop (one pass per parameter) against NumPy's in-place form, over ten
    steps, on a contiguous gradient (compiled) and a transposed one (NumPy's form, both runs)."""
    from minillm.kernels import threads
    rng = np.random.default_rng(14)
    shapes = [(64, 48), (48,), (3, 5, 7), (512, 300)]   # the last is big enough for the thread pool
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(10)]
    grads[3][0] = np.asfortranarray(grads[3][0])   # one step's gradient is not C-contiguous
    grads[5][3][0, 0], grads[6][3][1, 1] = np.nan, -np.inf   # NaN and −inf reach θ the same way

    def run(flag, num_threads=None):
        params = [Tensor(a.copy(), requires_grad=True) for a in init]
        opt = getattr(mm.optim, opt_class)(params, lr=1e-2, **options)
        LOOPS_USED.clear()
        saved, threads._num_threads = threads._num_threads, num_threads
        try:
            with compiled.enabled_if(flag), np.errstate(invalid="ignore"):   # inf − inf in NumPy's form
                for step in grads:
                    for p, g in zip(params, step):
                        p.grad = Tensor(g)
                    opt.step()
        finally:
            threads._num_threads = saved
        return [p.numpy() for p in params], list(LOOPS_USED)

    got, used = run(True)
    want, used_numpy = run(False)
    assert used_numpy == []
    assert (len(used) > 0) == (not options.get("amsgrad")), used
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)   # NaN where NaN
    assert np.isnan(got[3][0, 0]) and np.isnan(got[3][1, 1])
    # each element's arithmetic does not depend on how the rows were split between threads
    one_thread, _ = run(True, num_threads=1)
    for a, b in zip(got, one_thread):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("big", [False, True])   # True: large enough for the thread pool
@pytest.mark.parametrize("batches", [((1, 1, 3), "v"), ((3, 1, 1), "q"), ((1, 3, 3), "k and v")])
def test_causal_attention_with_broadcast_batches(big, batches):
    """q, k and v whose batch dims broadcast (one of size 1, as PyTorch allows): both paths agree,
    and each gradient has its input's shape. A v with more batch entries than q and k used to fail
    in the compiled backward (P reshaped to dP's larger shape)."""
    sizes, _ = batches
    t, d = (300, 16) if big else (6, 4)
    rng = np.random.default_rng(15)
    q, k, v = (rng.standard_normal((b, 2, t, d)).astype(np.float32) for b in sizes)
    g = rng.standard_normal((3, 2, t, d)).astype(np.float32)
    got, want = _both_paths(lambda qt, kt, vt: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True),
                            [q, k, v], g)
    for a, x in zip(got[1:], (q, k, v)):
        assert a.shape == x.shape
    _assert_same(got, want, np.float32, f"broadcast batches {sizes}")
