"""Every op on every memory layout: contiguous, permuted, step-sliced, broadcast (stride 0) and
empty inputs, in float32 and float64.

A kernel that assumes C-contiguous memory gives garbage on a permuted tensor while passing every
gradcheck on contiguous inputs (``F.gelu`` once did: its output was allocated in the input's
stride order, then reshaped, which copied, and the kernel filled the copy). So each op runs on
inputs whose values are the same but whose memory is laid out differently, and must give the
same outputs and the same gradients as on a contiguous copy; with the fused kernels switched
off (the plain formulas) it must agree too; and, where PyTorch is installed, it must agree with
PyTorch on the same values. Hypothesis draws the layouts, the dtypes and, for the ops whose
shapes are free, the shapes.

Also here: the fused kernels in a forked child process (their thread pool does not survive
``fork``), and the float32 accuracy of each fused kernel against its float64 result.
"""
import multiprocessing
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minillm as mm
from minillm import kernels
from minillm.kernels import threads
from minillm.nn import functional as F
from minillm.tensor import Tensor

from conftest import Maker
from test_ops import CASES, FUNCTIONAL_CASES

LAYOUTS = ("contiguous", "permuted", "sliced", "broadcast")
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}
SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """An array laid out as ``layout``: the values of ``a`` (for "broadcast", the values of its
    first slice along dim 0 repeated, which is what a stride-0 dim holds)."""
    if a.ndim == 0 or layout == "contiguous":
        return a.copy()
    if layout == "permuted":   # same values, reversed strides (Fortran order)
        order = tuple(reversed(range(a.ndim)))
        return np.ascontiguousarray(a.transpose(order)).transpose(order)
    if layout == "sliced":     # every other element of a twice-longer last dim
        big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "broadcast":  # dim 0 has stride 0 (read-only, as np.broadcast_to makes it)
        return np.broadcast_to(a[:1], a.shape)
    raise ValueError(layout)


def _leaf(array):
    """A leaf tensor that keeps ``array``'s memory layout (``minillm.tensor`` would copy it)."""
    return Tensor(array, requires_grad=True)


def _tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _run(fn, inputs, out_grads=None):
    """Outputs and input gradients of ``fn(*inputs)`` (gradients for a given/random out_grads)."""
    outs = _tuple(fn(*inputs))
    if out_grads is None:
        rng = np.random.default_rng(7)
        out_grads = [rng.standard_normal(o.shape).astype(o.dtype) for o in outs]
    wrt = [x for x in inputs if getattr(x, "_is_tensor", False) and x.requires_grad]
    grads = mm.grad(list(outs), wrt, [Tensor(g) for g in out_grads], allow_unused=True) if wrt else []
    return [o.numpy() for o in outs], [None if g is None else g.numpy() for g in grads], out_grads


def _assert_close(got, want, dtype, what):
    for i, (a, b) in enumerate(zip(got, want)):
        if a is None or b is None:
            assert (a is None or not np.any(a)) and (b is None or not np.any(b)), f"{what} {i}"
            continue
        assert a.shape == b.shape, f"{what} {i}: shape {a.shape} vs {b.shape}"
        assert a.dtype == b.dtype, f"{what} {i}: dtype {a.dtype} vs {b.dtype}"
        finite = np.abs(b[np.isfinite(b)])
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        tol = TOLERANCE[dtype]
        np.testing.assert_allclose(a, b, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=f"{what} {i}")


def check_layouts(build, layouts, dtype):
    """Build a case, move its float inputs to ``layouts`` (one per input, cycled) and ``dtype``;
    compare with the contiguous copy, with the plain formulas, and return both runs."""
    fn, inputs = build(Maker("cpu"))
    laid, contiguous = [], []
    for i, x in enumerate(inputs):
        if getattr(x, "_is_tensor", False) and x.requires_grad:
            a = relayout(x.numpy().astype(dtype), layouts[i % len(layouts)])
            laid.append(_leaf(a))
            contiguous.append(_leaf(np.ascontiguousarray(a)))
        else:
            laid.append(x)
            contiguous.append(x)
    outs, grads, g = _run(fn, laid)
    ref_outs, ref_grads, _ = _run(fn, contiguous, g)
    _assert_close(outs, ref_outs, dtype, "output (layout vs contiguous)")
    _assert_close(grads, ref_grads, dtype, "gradient (layout vs contiguous)")
    with kernels.enabled_if(False):
        formula_outs, formula_grads, _ = _run(fn, laid, g)
    _assert_close(outs, formula_outs, dtype, "output (fused vs formula)")
    _assert_close(grads, formula_grads, dtype, "gradient (fused vs formula)")
    for a, x in zip(grads, laid):
        if a is not None:
            assert a.dtype == x.dtype, "a gradient must have its input's dtype"


ALL_CASES = {**CASES, **FUNCTIONAL_CASES,
             "attention_weights": lambda mk: (lambda q, k: F.attention_weights(q, k, is_causal=True),
                                              (mk(2, 3, 4), mk(2, 3, 4)))}
layouts_strategy = st.lists(st.sampled_from(LAYOUTS), min_size=3, max_size=3)
dtype_strategy = st.sampled_from([np.float32, np.float64])


@pytest.mark.parametrize("name", sorted(ALL_CASES))
@SETTINGS
@given(layouts=layouts_strategy, dtype=dtype_strategy)
def test_every_op_on_every_layout(name, layouts, dtype):
    check_layouts(ALL_CASES[name], layouts, dtype)


def test_every_public_op_and_functional_has_a_layout_case():
    """Every op of ``ops.__all__`` and every public function of ``F`` runs through the harness
    (through a case of its own, or a case named by the alias given here)."""
    from minillm import ops
    import inspect
    not_differentiable = {"argmax", "zeros", "ones", "zeros_like", "ones_like", "full", "arange", "randn",
                          "rand", "randint", "empty", "tril_mask", "triu_mask", "eye", "one_hot", "dropout_mask"}
    alias = {"concat": "cat", "clip": "clamp", "sum_to": "sum", "broadcast_to": "expand", "view": "view",
             "scaled_dot_product_attention": "sdpa", "attention": "sdpa", "attention_weights": "attention_weights",
             "binary_cross_entropy_with_logits": "bce_with_logits", "to_device": "clone", "cast": "clone"}
    public_f = {n for n, f in vars(F).items() if inspect.isfunction(f) and not n.startswith("_")
                and f.__module__ == F.__name__}
    names = set(ALL_CASES) | set(ELEMENTWISE)
    missing = [op for op in sorted(set(ops.__all__) | public_f) if op not in not_differentiable
               and not any(n == alias.get(op, op) or n.startswith(alias.get(op, op) + "_") for n in names)]
    assert not missing, f"no layout case for: {missing}"


# ------------------------------------------------------------ the PyTorch cases on every layout
def _torch_cases():
    try:
        import test_torch_parity
    except Exception:        # torch not installed: the module skips itself on import
        return {}
    return test_torch_parity.CASES


@pytest.mark.parametrize("layout", ("permuted", "sliced", "broadcast"))
@pytest.mark.parametrize("name", sorted(_torch_cases()) or ["(torch not installed)"])
def test_torch_cases_on_layouts(name, layout, torch):
    import test_torch_parity as tp
    case = tp.CASES[name]
    mm_fn, torch_fn, specs = case if len(case) == 3 else (case[0], case[0], case[1])
    arrays = [relayout(a, layout) for a in tp._inputs(specs, seed=sum(map(ord, name)))]
    c_mm = {k: mm.tensor(v) for k, v in tp.C.items()}
    c_t = {k: torch.from_numpy(v.copy()) for k, v in tp.C.items()}
    xs_mm = [_leaf(a) for a in arrays]
    xs_t = [torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in arrays]
    outs_mm, outs_t = _tuple(mm_fn(tp.MM, c_mm, *xs_mm)), _tuple(torch_fn(tp.TT, c_t, *xs_t))
    rng = np.random.default_rng(99)
    grads = [rng.standard_normal(tuple(o.shape)) for o in outs_t]
    for i, (a, b) in enumerate(zip(outs_mm, outs_t)):
        tp._compare(a, b, f"{layout}: forward output {i}")
    g_mm = mm.grad(list(outs_mm), xs_mm, [mm.tensor(g) for g in grads], allow_unused=True)
    g_t = torch.autograd.grad(outs_t, xs_t, [torch.from_numpy(g) for g in grads], allow_unused=True)
    for i, (a, b) in enumerate(zip(g_mm, g_t)):
        tp._compare(a, b, f"{layout}: gradient of input {i}")


# ------------------------------------------------------------ shapes drawn too (empty ones included)
def _shape(min_dims=1, max_dims=4, min_side=0, max_side=5):
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


ELEMENTWISE = {
    "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu,
    "tanh": F.tanh, "sigmoid": F.sigmoid, "exp": mm.exp, "erf": mm.erf, "softmax": lambda x: F.softmax(x, -1),
    "log_softmax": lambda x: F.log_softmax(x, -1), "sum": lambda x: x.sum(-1), "mean": lambda x: x.mean(0),
    "layer_norm": lambda x: F.layer_norm(x, x.shape[-1]), "clone": mm.Tensor.clone,
    "transpose_mul": lambda x: x.mT * 2.0 if x.ndim >= 2 else x * 2.0,
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@settings(max_examples=12, deadline=None, derandomize=True)
@given(shape=_shape(), layout=st.sampled_from(LAYOUTS), dtype=dtype_strategy)
def test_shape_free_ops_on_drawn_shapes(name, shape, layout, dtype):
    if name in ("softmax", "log_softmax", "layer_norm") and shape[-1] == 0:
        shape = shape[:-1] + (1,)     # a reduction over an empty dim has no value
    if layout == "broadcast" and (not shape or shape[0] == 0):
        layout = "contiguous"
    a = np.random.default_rng(len(shape)).standard_normal(shape) * 2
    check_layouts(lambda mk: (ELEMENTWISE[name], (mk.const(a, dtype=mm.float64).requires_grad_(),)), [layout], dtype)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(batch=st.integers(0, 3), heads=st.integers(1, 3), tq=st.integers(1, 6), tk=st.integers(1, 6),
       d=st.integers(1, 5), mask=st.sampled_from(["none", "causal", "padding"]),
       layout=st.sampled_from(LAYOUTS), dtype=dtype_strategy)
def test_attention_on_drawn_shapes_and_layouts(batch, heads, tq, tk, d, mask, layout, dtype):
    rng = np.random.default_rng(batch * 100 + tq * 10 + tk)
    q, k, v = (rng.standard_normal((batch, heads, t, d)) for t in (tq, tk, tk))
    keep = None
    if mask == "padding":
        keep = rng.random((batch, 1, 1, tk)) < 0.7
        keep[..., 0] = True
    if layout == "broadcast" and batch == 0:
        layout = "contiguous"

    def build(mk):
        fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=None if keep is None else mm.tensor(keep),
                                                            is_causal=mask == "causal")
        return fn, tuple(mk.const(x, dtype=mm.float64).requires_grad_() for x in (q, k, v))
    check_layouts(build, [layout, "permuted", "sliced"], dtype)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(n=st.integers(0, 5), c=st.integers(1, 5), extra=st.integers(0, 3), smoothing=st.sampled_from([0.0, 0.1]),
       layout=st.sampled_from(LAYOUTS), dtype=dtype_strategy)
def test_cross_entropy_on_drawn_shapes_and_layouts(n, c, extra, smoothing, layout, dtype):
    rng = np.random.default_rng(n * 10 + c)
    shape = (n, c) + ((extra,) if extra else ())
    target = rng.integers(0, c, (n,) + ((extra,) if extra else ()))
    if target.size:
        target.flat[0] = -100
    if layout == "broadcast" and n == 0:
        layout = "contiguous"

    def build(mk):
        fn = lambda x: F.cross_entropy(x, mm.tensor(target), label_smoothing=smoothing)
        return fn, (mk.const(rng.standard_normal(shape), dtype=mm.float64).requires_grad_(),)
    check_layouts(build, [layout], dtype)


# ------------------------------------------------------------ the regressions that started this file
def test_gelu_on_a_permuted_tensor_equals_gelu_on_its_copy():
    y = mm.randn(4, 3, 5).permute(2, 0, 1)
    for approximate in ("none", "tanh"):
        np.testing.assert_array_equal(F.gelu(y, approximate=approximate).numpy(),
                                      F.gelu(y.clone(), approximate=approximate).numpy())
    x = Tensor(np.ascontiguousarray(np.random.default_rng(0).standard_normal((5, 4, 3))).transpose(2, 0, 1),
               requires_grad=True)
    (F.gelu(x) * mm.arange(4, dtype=mm.float64)).sum().backward()
    x2 = mm.tensor(x.numpy(), dtype=mm.float64, requires_grad=True)
    (F.gelu(x2) * mm.arange(4, dtype=mm.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-14)


def test_cross_entropy_follows_pytorch_when_classes_equal_the_extra_dim():
    """(N, C, d1) with C == d1: the class dim is dim 1, never guessed from the shapes."""
    rng = np.random.default_rng(0)
    logits, target = rng.standard_normal((2, 3, 3)), rng.integers(0, 3, (2, 3))
    got = F.cross_entropy(mm.tensor(logits, dtype=mm.float64), mm.tensor(target), reduction="none").numpy()
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))          # log-softmax over dim 1
    want = -np.take_along_axis(logp, target[:, None, :], axis=1)[:, 0, :]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="class dim of the input is dim 1"):
        F.cross_entropy(mm.tensor(logits), mm.tensor(target[:, :2]))


# ------------------------------------------------------------ fork safety
def _gelu_in_child(queue):
    x = mm.randn(1 << 18)  # ≥ 2**17 elements: the threaded path
    queue.put(float(F.gelu(x.reshape(512, 512)).sum().item()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fused_kernels_work_in_a_forked_child(monkeypatch):
    monkeypatch.setattr(threads, "_num_threads", 2)
    F.gelu(mm.randn(512, 512))        # the parent starts its thread pool
    assert threads._pool is not None
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_gelu_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung, "a forked child hung in a fused kernel (the inherited thread pool has no threads)"
    assert child.exitcode == 0 and np.isfinite(queue.get(timeout=5))


# ------------------------------------------------------------ float32 accuracy of the fused kernels
def _fused_float32_error(fn, arrays):
    """Largest |fused float32 − formula float64| over outputs and gradients, relative to scale."""
    def run(dtype, fused):
        xs = [mm.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
        with kernels.enabled_if(fused):
            out = fn(*xs)
            g = np.random.default_rng(1).standard_normal(out.shape)
            grads = mm.grad(out, xs, mm.tensor(g, dtype=dtype))
        return [out.numpy()] + [x.numpy() for x in grads]
    errors = []
    for got, want in zip(run(mm.float32, True), run(mm.float64, False)):
        errors.append(float(np.abs(got - want).max() / max(1.0, np.abs(want).max())))
    return max(errors)


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "layer_norm", "attention", "cross_entropy"])
def test_fused_kernels_are_accurate_in_float32(name):
    rng = np.random.default_rng(3)
    targets = mm.tensor(rng.integers(0, 50, 64))
    fn, arrays = {
        "gelu": (F.gelu, [rng.standard_normal((64, 96)) * 3]),
        "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), [rng.standard_normal((64, 96)) * 3]),
        "layer_norm": (lambda x, w, b: F.layer_norm(x, 96, w, b),
                       [rng.standard_normal((64, 96)) * 5 + 3, rng.standard_normal(96), rng.standard_normal(96)]),
        "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                      [rng.standard_normal((2, 3, 40, 16)) for _ in range(3)]),
        "cross_entropy": (lambda x: F.cross_entropy(x, targets, label_smoothing=0.1),
                          [rng.standard_normal((64, 50)) * 4]),
    }[name]
    assert _fused_float32_error(fn, arrays) < 2e-5
