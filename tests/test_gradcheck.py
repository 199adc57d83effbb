"""Second derivatives (gradgradcheck), fused backward == composite backward, and proof that the
checker itself can fail (a planted wrong derivative is caught, and named)."""
import numpy as np
import pytest

import minillm as mm
from minillm import GradcheckError, gradcheck, gradgradcheck, ops
from minillm.nn import functional as F
from minillm import kernels
from minillm.kernels import GELU, Attention as _Attention, CrossEntropy as _CrossEntropy, LayerNorm as _LayerNorm
from minillm.kernels import threads

# the plain tensor-op formula each fused kernel computes
REFERENCE = {GELU: ops._gelu_formula, _LayerNorm: F._layer_norm_formula, _Attention: F.attention,
             _CrossEntropy: F._cross_entropy_formula}
from minillm.tensor import Tensor


def _targets(mk, *values):
    return mk.const(np.asarray(values, dtype=np.int64))


# ------------------------------------------------------------ second order
GRADGRAD_CASES = {
    "add": lambda mk: (lambda a, b: a + b, (mk(2, 3), mk(3))),
    "sub": lambda mk: (lambda a, b: a - b, (mk(2, 3), mk(2, 1))),
    "mul": lambda mk: (lambda a, b: a * b, (mk(2, 3), mk(3))),
    "mul_self": lambda mk: (lambda a: a * a * a, (mk(3),)),
    "div": lambda mk: (lambda a, b: a / b, (mk(2, 3), mk(3, domain="nonzero"))),
    "pow_tensor": lambda mk: (lambda a, b: a ** b, (mk(2, 3, domain="pos"), mk(3))),
    "pow_scalar": lambda mk: (lambda a: a ** 3, (mk(4),)),
    "pow_half": lambda mk: (lambda a: a ** 0.5, (mk(4, domain="pos"),)),
    "rpow": lambda mk: (lambda a: 3.0 ** a, (mk(4),)),
    "matmul": lambda mk: (lambda a, b: a @ b, (mk(2, 3), mk(3, 2))),
    "matmul_batched_broadcast": lambda mk: (lambda a, b: a @ b, (mk(2, 2, 3), mk(3, 2))),
    "matmul_1d": lambda mk: (lambda a, b: a @ b, (mk(3), mk(3, 2))),
    "sum": lambda mk: (lambda a: (a * a).sum(1), (mk(2, 3),)),
    "mean": lambda mk: (lambda a: (a * a).mean((0, 2), keepdim=True), (mk(2, 2, 2),)),
    "tanh": lambda mk: (mm.tanh, (mk(2, 3),)),
    "exp": lambda mk: (mm.exp, (mk(2, 3),)),
    "log": lambda mk: (mm.log, (mk(2, 3, domain="pos"),)),
    "sigmoid": lambda mk: (mm.sigmoid, (mk(2, 3),)),
    "softmax": lambda mk: (lambda x: mm.softmax(x, -1), (mk(2, 3),)),
    "log_softmax": lambda mk: (lambda x: mm.log_softmax(x, 0), (mk(3, 2),)),
    "gelu_none": lambda mk: (lambda x: F.gelu(x, "none"), (mk(2, 3),)),
    "gelu_tanh": lambda mk: (lambda x: F.gelu(x, "tanh"), (mk(2, 3),)),
    "layer_norm": lambda mk: (lambda x, w, b: F.layer_norm(x, (3,), w, b), (mk(2, 3), mk(3), mk(3))),
    "attention_masked": lambda mk: (
        lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, attn_mask=mk.const([[True, False, True], [True, True, False]])),
        (mk(1, 2, 2), mk(1, 3, 2), mk(1, 3, 2))),
    "attention_causal": lambda mk: (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                    (mk(2, 2), mk(2, 2), mk(2, 2))),
    "cross_entropy": lambda mk: (lambda x: F.cross_entropy(x, _targets(mk, 0, 2, -100), label_smoothing=0.1),
                                 (mk(3, 3),)),
    "cross_entropy_none": lambda mk: (lambda x: F.cross_entropy(x, _targets(mk, 1, 0), reduction="none"),
                                      (mk(2, 3),)),
    "linear": lambda mk: (F.linear, (mk(2, 3), mk(2, 3), mk(2))),
    "max_logsumexp": lambda mk: (lambda x: mm.logsumexp(x * x, 1), (mk(2, 3),)),
    "getitem_gather": lambda mk: (lambda x: (x[mk.const([0, 0, 1])] ** 2).gather(1, _targets(mk, [1], [0], [2])),
                                  (mk(2, 3),)),
    "where_sqrt": lambda mk: (lambda x: mm.where(mk.const([True, False, True]), mm.sqrt(x), x * x),
                              (mk(2, 3, domain="pos"),)),
}


@pytest.mark.parametrize("name", sorted(GRADGRAD_CASES))
def test_gradgradcheck(name, mk):
    fn, inputs = GRADGRAD_CASES[name](mk)
    assert gradgradcheck(fn, inputs)


def test_grad_of_grad_values(mk):
    """d²/dx² of x³ is 6x; of tanh it is −2 tanh (1 − tanh²)."""
    x = mk(4)
    (g,) = mm.grad(x ** 3, [x], mm.ones_like(x), create_graph=True)
    (gg,) = mm.grad(g.sum(), [x])
    np.testing.assert_allclose(gg.numpy(), 6 * x.numpy(), rtol=1e-12)
    y = mm.tanh(x)
    (g,) = mm.grad(y.sum(), [x], create_graph=True)
    (gg,) = mm.grad(g.sum(), [x])
    t = np.tanh(x.numpy())
    np.testing.assert_allclose(gg.numpy(), -2 * t * (1 - t * t), rtol=1e-12)


# ------------------------------------------------------------ fused backward == composite backward
def _leaf(x):
    return mm.tensor(x.data, dtype=x.dtype, device=x.device, requires_grad=True)


def _compare_fast_and_composite(cls, mk, inputs, options):
    inputs = tuple(_leaf(x) if getattr(x, "_is_tensor", False) and not x.is_leaf else x for x in inputs)
    wrt = [x for x in inputs if getattr(x, "_is_tensor", False) and x.requires_grad]
    reference = REFERENCE[cls]
    out = cls.apply(*inputs, **options, reference=reference)
    with kernels.enabled_if(False):
        composite_out = reference(*inputs, **options)
    np.testing.assert_allclose(out.numpy(), composite_out.numpy(), rtol=1e-12, atol=1e-13)
    g = mk(*out.shape, requires_grad=False)
    fast = mm.grad(out, wrt, g)
    slow = mm.grad(composite_out, wrt, g)
    for i, (a, b) in enumerate(zip(fast, slow)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"input {i}")
    # create_graph=True differentiates the composite: the first derivative is the same
    again = mm.grad(cls.apply(*inputs, **options, reference=reference), wrt, g, create_graph=True)
    assert again[0].requires_grad  # (d/d bias of layer norm is Σg: a constant)
    for a, b in zip(again, fast):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_fast_backward_equals_composite(mk, approximate):
    _compare_fast_and_composite(GELU, mk, (mk(3, 4) * 2,), {"approximate": approximate})


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_fast_backward_equals_composite(mk, affine):
    x = mk(2, 3, 4)
    w, b = (mk(3, 4), mk(3, 4)) if affine else (None, None)
    _compare_fast_and_composite(_LayerNorm, mk, (x, w, b), {"normalized_shape": (3, 4), "eps": 1e-5})


@pytest.mark.parametrize("masked,dropped", [(False, False), (True, False), (True, True)])
def test_attention_fast_backward_equals_composite(mk, masked, dropped):
    q, k, v = mk(2, 3, 4), mk(2, 5, 4), mk(2, 5, 3)
    keep = mk.const(mk.rng.random((3, 5)) < 0.6).data if masked else None
    if masked:
        keep[:, 0] = True
    drop = mk.const(np.where(mk.rng.random((2, 3, 5)) < 0.3, 0.0, 1 / 0.7)).data if dropped else None
    _compare_fast_and_composite(_Attention, mk, (q, k, v), {"keep": keep, "drop": drop, "scale": 0.5})


def test_attention_fully_masked_row_outputs_zeros(mk):
    q, k, v = mk(1, 2, 2), mk(1, 3, 2), mk(1, 3, 2)
    keep = mk.const([[False, False, False], [True, False, True]])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    np.testing.assert_array_equal(out.numpy()[0, 0], 0.0)
    assert np.isfinite(out.numpy()).all()
    g = mk(*out.shape, requires_grad=False)
    grads = mm.grad(out, [q, k, v], g)
    assert all(np.isfinite(x.numpy()).all() for x in grads)
    np.testing.assert_array_equal(grads[0].numpy()[0, 0], 0.0)
    _compare_fast_and_composite(_Attention, mk, (q, k, v), {"keep": keep.data, "drop": None, "scale": 1.0})


@pytest.mark.parametrize("smoothing,ignore", [(0.0, False), (0.2, False), (0.0, True), (0.3, True)])
def test_cross_entropy_fast_backward_equals_composite(mk, smoothing, ignore):
    target = np.array([0, 3, 1, 3, 2])
    if ignore:
        target[1] = -100
    target = mk.const(target).data
    _compare_fast_and_composite(_CrossEntropy, mk, (mk(5, 4) * 3, target),
                                {"ignore_index": -100, "label_smoothing": smoothing})


def test_cross_entropy_is_stable_for_huge_logits(mk):
    x = mk.const(np.array([[1000.0, 0.0, -1000.0], [-5e3, 5e3, 0.0]]))
    x.requires_grad_()
    loss = F.cross_entropy(x, _targets(mk, 0, 0), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [0.0, 1e4], rtol=1e-12)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0, 0], [-1, 1, 0]], atol=1e-12)


# ------------------------------------------------------------ the checker can fail
def test_wrong_tanh_derivative_is_caught(monkeypatch, mk):
    x = mk(2, 3)
    assert gradcheck(mm.tanh, (x,))
    monkeypatch.setattr(ops.Tanh, "backward", lambda self, g: g * (1 - self.output))  # should be 1 − y²
    with pytest.raises(GradcheckError) as info:
        gradcheck(mm.tanh, (x,))
    message = str(info.value)
    assert "input 0" in message and "shape (2, 3)" in message and "at index (" in message
    assert "analytic" in message and "numeric" in message
    assert gradcheck(mm.tanh, (x,), raise_exception=False) is False


def test_message_names_the_input(monkeypatch, mk):
    """A wrong gradient for the second input only: the message says input 1."""
    def wrong(self, g):
        a, b = self.inputs
        return g * b, g * b  # d(ab)/db is a, not b
    monkeypatch.setattr(ops.Mul, "backward", wrong)
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(3,\)\)"):
        gradcheck(lambda a, b: a * b, (mk(3), mk(3)))


def test_message_names_the_element(monkeypatch, mk):
    """A derivative wrong at exactly one element: the message names that element."""
    def wrong(self, g):
        bump = np.zeros(self.output.shape)
        bump[1, 2] = 0.5
        return g * self.output + mk.const(bump)
    monkeypatch.setattr(ops.Exp, "backward", wrong)
    with pytest.raises(GradcheckError) as info:
        gradcheck(mm.exp, (mk(2, 4),))
    assert "at index (1, 2)" in str(info.value)
    assert "1 of 8 elements" in str(info.value)


def test_random_output_gradient_matters(monkeypatch, mk):
    """A softmax backward off by a per-row constant inside the bracket, y ⊙ (g − mean(g)) instead
    of y ⊙ (g − Σ g⊙y), is right whenever g is constant along the row, as for ``.sum()``."""
    def wrong(self, g):
        return self.output * (g - g.mean(self.dim, keepdim=True))
    monkeypatch.setattr(ops.Softmax, "backward", wrong)
    x = mk(3, 4)
    assert gradcheck(lambda x: mm.softmax(x, -1).sum(), (x,))   # blind: passes
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda x: mm.softmax(x, -1), (x,))              # random v: caught


def test_gradgradcheck_catches_a_non_differentiable_backward(monkeypatch, mk):
    """A backward that is right in value but builds on raw arrays (not Tensor ops) breaks second
    derivatives: gradcheck passes, gradgradcheck fails."""
    monkeypatch.setattr(ops.Tanh, "backward",
                        lambda self, g: g * Tensor(1 - self.output.data * self.output.data))
    x = mk(3)
    assert gradcheck(mm.tanh, (x,))
    with pytest.raises(GradcheckError):
        gradgradcheck(mm.tanh, (x,))


def test_wrong_fused_backward_is_caught(monkeypatch, mk):
    """The fused fast path is what plain gradcheck tests: break it and gradcheck notices."""
    original = _LayerNorm.fast_backward

    def wrong(self, g):
        gx, gw, gb = original(self, g)
        return gx * 1.01, gw, gb
    monkeypatch.setattr(_LayerNorm, "fast_backward", wrong)
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda x, w: F.layer_norm(x, 3, w), (mk(2, 3), mk(3)))


def test_gradcheck_argument_errors(mk):
    x32 = mm.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(mm.exp, (x32,))
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(mm.exp, (mk(2, requires_grad=False),))


def test_gradcheck_handles_tuple_outputs_and_non_tensor_args(mk):
    assert gradcheck(lambda x, n: tuple(x.split(n, 0)), (mk(5), 2))
    assert gradcheck(lambda x, y: (x * y, x.exp()), (mk(2), mk(2)))
    # an input that does not reach the output gets a zero gradient, numerically zero too
    assert gradcheck(lambda x, y: x * 2, (mk(2), mk(2)))


# ------------------------------------------------------------ large inputs: the threaded CPU kernels
@pytest.fixture
def three_threads(monkeypatch):
    """Fused kernels split big CPU arrays into row blocks on threads (≥ 2**17 elements); three
    threads make the blocks uneven. Small gradcheck inputs never take that path."""
    monkeypatch.setattr(threads, "_num_threads", 3)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_threaded_kernel(mk, three_threads, approximate):
    _compare_fast_and_composite(GELU, mk, (mk(7, 401, 50),), {"approximate": approximate})


def test_layer_norm_threaded_kernel(mk, three_threads):
    x, w, b = mk(301, 3, 150), mk(3, 150), mk(3, 150)
    _compare_fast_and_composite(_LayerNorm, mk, (x, w, b), {"normalized_shape": (3, 150), "eps": 1e-5})


@pytest.mark.parametrize("mask", ["none", "causal", "padding", "full"])
def test_attention_threaded_kernel(mk, three_threads, mask):
    b, h, t, d = 5, 2, 120, 4            # scores: 5·2·120·120 = 144,000 elements
    q, k, v = mk(b, h, t, d), mk(b, h, t, d), mk(b, h, t, d)
    keep = {"none": None,
            "causal": np.tril(np.ones((t, t), dtype=bool)),
            "padding": mk.rng.random((b, 1, 1, t)) < 0.8,
            "full": mk.rng.random((b, h, t, t)) < 0.7}[mask]
    if keep is not None:
        keep = mk.const(keep).data
    drop = mk.const(np.where(mk.rng.random((b, h, t, t)) < 0.1, 0.0, 1 / 0.9)).data if mask == "full" else None
    _compare_fast_and_composite(_Attention, mk, (q, k, v), {"keep": keep, "drop": drop, "scale": 0.5})
