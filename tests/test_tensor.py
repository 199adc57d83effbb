"""Tensor basics and autograd behaviour: graph building, accumulation, retain_graph, no_grad,
detach, retain_grad, grad(), dtype rules (no float64 creeping into float32 models)."""
import gc

import numpy as np
import pytest

import minillm as mm
from minillm import nn
from minillm.nn import functional as F
from minillm.tensor import Tensor


# ------------------------------------------------------------ construction, dtypes, accessors
def test_dtype_rules():
    assert mm.tensor(1.5).dtype == mm.float32                     # Python float -> float32
    assert mm.tensor([1.0, 2.0]).dtype == mm.float32
    assert mm.tensor([[1, 2.5]]).dtype == mm.float32
    assert mm.tensor(np.array([1.0, 2.0])).dtype == mm.float64    # float64 given: kept
    assert mm.tensor(np.float64(3.0)).dtype == mm.float64
    assert mm.tensor(np.array([1.0], dtype=np.float16)).dtype == mm.float16
    assert mm.tensor([1.0], dtype=mm.float64).dtype == mm.float64
    assert mm.tensor([1, 2]).dtype == mm.int64                    # Python int -> int64
    assert mm.tensor(3).dtype == mm.int64
    assert mm.tensor(np.array([1, 2], dtype=np.int32)).dtype == mm.int32
    assert mm.tensor([True, False]).dtype == mm.bool_
    assert mm.zeros(2, 3).dtype == mm.float32 and mm.ones(2).dtype == mm.float32
    assert mm.randn(2).dtype == mm.float32 and mm.rand(2).dtype == mm.float32
    assert mm.arange(3).dtype == mm.int64 and mm.arange(0.0, 1.0, 0.5).dtype == mm.float32
    assert mm.full((2,), 1.5).dtype == mm.float32
    assert Tensor(np.float64(2.0)).dtype == mm.float64           # NumPy scalars keep their dtype


def test_float32_ops_stay_float32(device):
    x = mm.randn(3, 4, device=device, requires_grad=True)
    w = mm.randn(4, 2, device=device, requires_grad=True)
    outs = [x + 1.5, 2.0 * x, x / 3.0, 1.0 / (x * x + 1), x ** 2, mm.abs(x) ** 2.5, mm.sqrt(mm.abs(x) + 1),
            mm.exp(x), mm.tanh(x), mm.sigmoid(x), mm.gelu(x), mm.gelu(x, "tanh"), mm.erf(x), mm.relu(x),
            mm.maximum(x, 0.0), mm.clamp(x, -0.5, 0.5), mm.where(x > 0, x, 0.0), x.masked_fill(x > 0, -1e9),
            x.mean(), x.var(1), x.softmax(-1), x.log_softmax(-1), mm.logsumexp(x, 1), x @ w,
            F.layer_norm(x, 4), F.dropout(x, 0.5), F.mse_loss(x, mm.zeros(3, 4, device=device)),
            F.cross_entropy(x, mm.tensor([0, 1, 3], device=device), label_smoothing=0.1),
            F.binary_cross_entropy_with_logits(x, mm.ones(3, 4, device=device))]
    for i, out in enumerate(outs):
        assert out.dtype == mm.float32, (i, out.dtype)
    sum(o.sum() for o in outs).backward()
    assert x.grad.dtype == mm.float32 and w.grad.dtype == mm.float32


def test_no_float64_anywhere_in_a_float32_transformer_block(monkeypatch, device):
    """Every Tensor created during forward + backward of a float32 block (with dropout, masks and
    cross attention) is float32: NumPy's type promotion never upcasts it behind our back."""
    mm.manual_seed(0)
    block = nn.TransformerBlock(8, 2, dropout=0.1, cross_attention=True, approximate="none").to(device)
    norm = nn.LayerNorm(8).to(device)
    head = nn.Linear(8, 5).to(device)
    x = mm.randn(2, 3, 8, device=device, requires_grad=True)
    context = mm.randn(2, 4, 8, device=device)
    pad = mm.tensor([[False, False, False, True], [False, False, False, False]], device=device)
    target = mm.tensor([[0, 1, 2], [3, 4, -100]], device=device)
    seen = []
    original = Tensor.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.data.dtype.kind == "f" and self.data.dtype != np.float32:
            seen.append(self.data.dtype)
    monkeypatch.setattr(Tensor, "__init__", spy)
    y = block(x, context=context, context_padding_mask=pad)
    logits = head(norm(y))
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), label_smoothing=0.1)
    loss.backward()
    assert not seen, f"non-float32 tensors were created: {seen}"
    assert loss.dtype == mm.float32 and x.grad.dtype == mm.float32
    params = list(block.parameters()) + list(head.parameters())
    assert all(p.grad is not None and p.grad.dtype == mm.float32 for p in params)


def test_accessors_and_repr(device):
    x = mm.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    assert x.shape == (2, 2) and x.ndim == 2 and x.size == 4 and len(x) == 2 and x.numel() == 4
    assert x.dtype == mm.float32
    assert x.device == ("cpu" if device == "cpu" else "cuda:0")
    a = x.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a, [[1, 2], [3, 4]])
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    s = x.sum()
    assert s.item() == 10.0 and isinstance(s.item(), float)
    assert isinstance(mm.tensor([7], device=device).item(), int)
    assert float(s) == 10.0 and int(mm.tensor(3, device=device)) == 3
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        x.item()
    r = repr(x)
    assert r.startswith("tensor([[1., 2.],") and "requires_grad" not in r
    assert (device == "cpu") == ("device=" not in r)
    w = mm.tensor([1.0, 2.0], dtype=mm.float64, requires_grad=True, device=device)
    assert "requires_grad=True" in repr(w) and "dtype=float64" in repr(w)
    assert "grad_fn=<Mul>" in repr(w * 2)
    assert "..." in repr(mm.zeros(1000, device=device))           # long tensors are summarized
    assert "int64" not in repr(mm.tensor([1, 2], device=device))  # ints print plainly


def test_tensor_copies_its_data_and_tensor_constructor_does_not():
    a = np.array([1.0, 2.0])
    t = mm.tensor(a)
    a[0] = 9.0
    assert t.numpy()[0] == 1.0
    u = Tensor(a)
    assert u.data is a
    d = t.detach()
    assert d.data is t.data


def test_operators_with_arrays_and_scalars():
    x = mm.tensor([1.0, 2.0, 3.0])
    out = np.ones(3, dtype=np.float32) * x   # ndarray on the left: Tensor.__rmul__ wins
    assert isinstance(out, Tensor)
    np.testing.assert_array_equal((2 - x).numpy(), [1, 0, -1])
    np.testing.assert_array_equal((6 / x).numpy(), [6, 3, 2])
    np.testing.assert_array_equal((2 ** x).numpy(), [2, 4, 8])
    np.testing.assert_array_equal(abs(-x).numpy(), [1, 2, 3])
    np.testing.assert_array_equal((x > 1.5).numpy(), [False, True, True])
    np.testing.assert_array_equal(x.eq(2.0).numpy(), [False, True, False])
    np.testing.assert_array_equal(x.ne(2.0).numpy(), [True, False, True])
    assert bool(mm.tensor([1.0]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)
    assert {x: 1}[x] == 1  # tensors hash by identity


def test_requires_grad_rules():
    with pytest.raises(TypeError, match="floating"):
        mm.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="floating"):
        mm.tensor([1, 2]).requires_grad_()
    x = mm.tensor([1.0, 2.0])
    assert not x.requires_grad and x.is_leaf
    assert x.requires_grad_() is x and x.requires_grad
    y = mm.tensor([3.0, 4.0])           # a constant: no graph through it
    z = x * y
    assert z.requires_grad and not z.is_leaf
    c = y * 2
    assert not c.requires_grad and c.is_leaf and c._ctx is None


# ------------------------------------------------------------ backward
def test_long_chain_has_no_recursion_limit():
    x = mm.tensor(1.0, dtype=mm.float64, requires_grad=True)
    y = x
    for i in range(10_000):
        y = y * 1.0001 if i % 2 else y + 0.5
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 5000, rel=1e-9)
    # a long graph that is dropped without a backward is freed without recursion either
    z = x
    for _ in range(10_000):
        z = z * 1.0
    del z
    gc.collect()


def test_gradients_accumulate_across_backward_calls(device):
    x = mm.tensor([1.0, 2.0], dtype=mm.float64, requires_grad=True, device=device)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, 2.0]) + 3)
    x.zero_grad()
    assert x.grad is None
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_retain_graph(device):
    x = mm.tensor([1.0, 2.0], dtype=mm.float64, requires_grad=True, device=device)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])
    z = (mm.exp(x) * 2).sum()
    z.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        z.backward()


def test_shared_subexpressions_sum_their_gradients():
    x = mm.tensor([0.5, -1.0], dtype=mm.float64, requires_grad=True)
    y = x * x
    z = (y + y * 3 + mm.exp(y)).sum()     # dz/dx = 2x (1 + 3 + e^{x²})
    z.backward()
    v = np.array([0.5, -1.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * v * (4 + np.exp(v * v)))


def test_no_grad_and_set_grad_enabled():
    x = mm.tensor([1.0], requires_grad=True)
    assert mm.is_grad_enabled()
    with mm.no_grad():
        assert not mm.is_grad_enabled()
        y = x * 2
        with mm.set_grad_enabled(True):
            w = x * 2
        assert not mm.is_grad_enabled()
    assert mm.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    assert w.requires_grad
    with pytest.raises(KeyError):
        with mm.no_grad():
            raise KeyError("boom")
    assert mm.is_grad_enabled()   # restored after an exception


def test_detach_cuts_the_graph():
    x = mm.tensor([1.0, 2.0], dtype=mm.float64, requires_grad=True)
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.data is y.data
    (x * d).sum().backward()           # d is a constant: grad is d, not d + 3x
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 6.0])


def test_retain_grad_on_non_leaf():
    x = mm.tensor([1.0, -2.0], dtype=mm.float64, requires_grad=True)
    h = x * 2
    h.retain_grad()
    k = h + 1                      # a non-leaf without retain_grad
    (h * k).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy() + 1)
    assert k.grad is None
    np.testing.assert_allclose(x.grad.numpy(), 2 * (2 * h.numpy() + 1))


def test_backward_argument_checks():
    x = mm.tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        y.backward(mm.ones(3, dtype=mm.float64))
    y.backward(np.full((2, 3), 0.5))  # an array is accepted as the gradient
    np.testing.assert_allclose(x.grad.numpy(), 1.0)
    with pytest.raises(RuntimeError, match="does not require grad"):
        mm.tensor([1.0]).sum().backward()


def test_grad_function(device):
    x = mm.tensor([0.3, -0.7], dtype=mm.float64, requires_grad=True, device=device)
    w = mm.tensor([2.0, 5.0], dtype=mm.float64, requires_grad=True, device=device)
    y = (w * x ** 3).sum()
    gx, gw = mm.grad(y, [x, w], create_graph=True)
    assert x.grad is None and w.grad is None            # grad() stores nothing
    np.testing.assert_allclose(gx.numpy(), 3 * w.numpy() * x.numpy() ** 2)
    assert gx.requires_grad
    (gxx,) = mm.grad(gx.sum(), [x])                     # d/dx Σ 3 w x² = 6 w x
    np.testing.assert_allclose(gxx.numpy(), 6 * w.numpy() * x.numpy())
    # a single tensor in, a single gradient out; with respect to a non-leaf too
    h = x * 2
    out = (h * h).sum()
    gh = mm.grad(out, h, retain_graph=True)
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())
    unused = mm.tensor([1.0], dtype=mm.float64, requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match=r"input 1 \(shape \(1,\)\) was not used"):
        mm.grad(out, [x, unused], retain_graph=True)
    assert mm.grad(out, [x, unused], allow_unused=True)[1] is None
    with pytest.raises(RuntimeError, match=r"shape \(2,\)"):
        mm.grad(h, [x])


def test_backward_frees_saved_arrays():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    y = mm.exp(x)
    z = y.sum()
    z.backward()
    assert y._ctx.inputs is None       # released after use


def test_clone_and_conversions_are_differentiable(device):
    x = mm.tensor([1.0, 2.0], requires_grad=True, device=device)
    y = x.clone()
    assert y.data is not x.data
    (y.double() * 2).sum().backward()
    assert x.grad.dtype == mm.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])
    assert x.to(device=device) is x and x.to(dtype=mm.float32) is x
    assert x.long().dtype == mm.int64 and x.float().dtype == mm.float32


@pytest.mark.gpu
def test_to_device_is_differentiable(cuda_device):
    x = mm.tensor([1.0, 2.0], dtype=mm.float64, requires_grad=True)
    y = x.to("cuda")
    assert y.device.startswith("cuda")
    (y * y).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])
    assert mm.gradcheck(lambda x: (x.cuda() * 3).cpu(), (x,))
