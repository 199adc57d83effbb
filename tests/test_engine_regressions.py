"""Wrong results found by trying the engine as a new user would, each with the test that catches
it (the layout and fork cases are in test_layouts.py)."""
import numpy as np
import pytest

import minillm as mm
from minillm import backend, kernels, nn, optim
from minillm.nn import functional as F
from minillm.tensor import Tensor


# ------------------------------------------------------------ gradients have their leaf's dtype
def test_float32_leaf_times_float64_constant_gets_a_float32_grad():
    w = mm.randn(3, requires_grad=True)
    (w * mm.tensor(np.arange(3.0), dtype=mm.float64)).sum().backward()
    assert w.grad.dtype == mm.float32
    np.testing.assert_allclose(w.grad.numpy(), [0, 1, 2])


def test_optimizer_step_after_mixed_precision_backward_keeps_float32():
    w = nn.Parameter(mm.randn(4))
    opt = optim.AdamW([w], lr=0.1)
    (w * mm.tensor(np.ones(4), dtype=mm.float64)).sum().backward()
    opt.step()
    assert w.dtype == mm.float32 and opt.state[w]["exp_avg"].dtype == np.float32


# ------------------------------------------------------------ relu(−inf)
def test_relu_of_minus_infinity_is_zero_with_zero_gradient():
    x = mm.tensor([-np.inf, -1.0, 0.0, 2.0, np.inf], requires_grad=True)
    y = F.relu(x)
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 0.0, 2.0, np.inf])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 0, 1, 1])
    assert np.isnan(F.relu(mm.tensor([np.nan])).item())          # nan stays nan, as in PyTorch


# ------------------------------------------------------------ create_graph: each leaf its own .grad
def test_create_graph_gives_each_leaf_its_own_writable_grad():
    a = mm.tensor([1.0, 2.0], requires_grad=True)
    b = mm.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward(create_graph=True)   # Add hands the same gradient to both inputs
    assert a.grad is not b.grad and a.grad.data is not b.grad.data
    a.grad.data *= 10                           # an optimizer or clipping updates in place
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
    c = mm.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    c.expand(4, 3).sum().backward(create_graph=True)   # the gradient path goes through a broadcast view
    assert c.grad.data.flags.writeable
    nn.utils.clip_grad_norm_([a, b, c], 1.0)    # raised "assignment destination is read-only" before


# ------------------------------------------------------------ PyTorch's comparison and transpose names
def test_equality_is_elementwise_and_hashing_is_by_identity():
    a, b = mm.tensor([1.0, 2.0, 3.0]), mm.tensor([1.0, 0.0, 3.0])
    np.testing.assert_array_equal((a == b).numpy(), [True, False, True])
    np.testing.assert_array_equal((a != b).numpy(), [False, True, False])
    np.testing.assert_array_equal((a == 2.0).numpy(), [False, True, False])
    c = mm.tensor([1.0, 2.0, 3.0])
    assert len({a, c}) == 2 and {a: 1}[a] == 1        # equal values, different keys
    with pytest.raises(ValueError, match="ambiguous"):
        bool(a == c)


def test_T_reverses_every_dim_and_mT_swaps_the_last_two():
    x = mm.randn(2, 3, 4)
    assert x.T.shape == (4, 3, 2) and x.mT.shape == (2, 4, 3)
    np.testing.assert_array_equal(x.T.numpy(), x.numpy().T)
    np.testing.assert_array_equal(x.mT.numpy(), np.swapaxes(x.numpy(), -1, -2))
    m = mm.randn(3, 5)
    np.testing.assert_array_equal(m.T.numpy(), m.numpy().T)


# ------------------------------------------------------------ version counters
def test_modifying_a_saved_input_before_backward_is_an_error():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    w = mm.tensor([3.0, 4.0], requires_grad=True)
    y = (x * w).sum()
    w.data = w.data * 0          # replaces the values Mul saved for x's gradient
    with pytest.raises(RuntimeError, match=r"Mul: input 1 .* modified in place"):
        y.backward()
    x2 = mm.tensor([1.0, 2.0], requires_grad=True)
    y2 = (x2.exp()).sum()
    x2.data += 1                 # in place through the attribute: the version moves too
    with pytest.raises(RuntimeError, match="modified in place"):
        y2.backward()


def test_changes_before_the_forward_pass_are_fine():
    w = mm.tensor([3.0, 4.0], requires_grad=True)
    w.data = w.data * 2
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [12.0, 16.0])


# ------------------------------------------------------------ the fused kernels sit behind one switch
def test_the_switch_runs_the_plain_formulas():
    x = mm.randn(3, 4, requires_grad=True)
    with kernels.enabled_if(False):
        y = F.layer_norm(F.gelu(x), 4)
        assert type(y._ctx).__name__ != "LayerNorm"   # built from plain ops
    assert type(F.layer_norm(x, 4)._ctx) is kernels.LayerNorm
    assert kernels.is_enabled()


def test_adam_in_place_update_equals_the_paper_form():
    def train(cls, fused, **kwargs):
        p = nn.Parameter(mm.tensor(np.linspace(-1, 1, 5), dtype=mm.float64))
        opt = cls([p], lr=0.1, **kwargs)
        with kernels.enabled_if(fused):
            for step in range(5):
                p.grad = mm.tensor(np.sin(np.arange(5.0) + step), dtype=mm.float64)
                opt.step()
        return p.numpy()
    for cls, kwargs in ((optim.Adam, dict(weight_decay=0.1)), (optim.AdamW, dict(weight_decay=0.1)),
                        (optim.Adam, dict(amsgrad=True)), (optim.AdamW, dict(maximize=True))):
        np.testing.assert_allclose(train(cls, True, **kwargs), train(cls, False, **kwargs), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------ no host synchronization in the step's ops
def test_cross_entropy_mean_is_a_device_division():
    """The mean over counted targets divides by a tensor (on the GPU: no host round trip)."""
    x = mm.tensor([[1.0, 2.0], [0.5, 0.1], [3.0, -1.0]], dtype=mm.float64, requires_grad=True)
    t = mm.tensor([1, -100, 0])
    loss = F.cross_entropy(x, t)
    manual = F.cross_entropy(x, t, reduction="sum").item() / 2
    assert loss.item() == pytest.approx(manual, rel=1e-14)
    all_ignored = F.cross_entropy(x, mm.tensor([-100, -100, -100]))
    assert all_ignored.item() == 0.0


# ------------------------------------------------------------ GPU: devices named in errors, random streams
@pytest.mark.gpu
def test_keyword_arrays_are_device_checked(cuda_device):
    q = mm.randn(1, 2, 3, 4, device=cuda_device)
    cpu_mask = mm.tensor(np.tril(np.ones((3, 3), dtype=bool)))
    with pytest.raises(mm.DeviceError, match="attention.*cpu"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=cpu_mask)
    with pytest.raises(mm.DeviceError, match="Where|where"):
        mm.where(np.array([True, False, True]), mm.zeros(3, device=cuda_device), 1.0)
    with pytest.raises(mm.DeviceError, match="cross_entropy"):
        F.cross_entropy(mm.randn(2, 3, device=cuda_device), mm.tensor([0, 1]))


@pytest.mark.gpu
def test_gpu_dropout_stream_resumes_exactly(cuda_device):
    def masks(n):
        return [backend.to_numpy(F.dropout_mask((64,), 0.5, np.float32, "cuda:0")) for _ in range(n)]
    mm.manual_seed(0)
    masks(2)
    state = backend.get_rng_state()          # a checkpoint: the GPU generator is re-keyed here
    uninterrupted = masks(3)
    mm.manual_seed(123)                      # a new process would start from anything
    masks(1)
    backend.set_rng_state(state)
    resumed = masks(3)
    for a, b in zip(uninterrupted, resumed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.gpu
def test_each_gpu_has_its_own_stream(cuda_device):
    import cupy  # noqa: the test may; the library imports cupy only in backend.py
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    mm.manual_seed(0)
    a = backend.to_numpy(backend.generator("cuda:0").random(16))
    b = backend.to_numpy(backend.generator("cuda:1").random(16))
    assert not np.array_equal(a, b)


def test_cpu_rng_state_round_trips_and_gpu_keys_are_recorded():
    mm.manual_seed(5)
    F.dropout_mask((8,), 0.5, np.float32, "cpu")
    state = backend.get_rng_state()
    a = F.dropout_mask((8,), 0.5, np.float32, "cpu")
    backend.set_rng_state(state)
    np.testing.assert_array_equal(a, F.dropout_mask((8,), 0.5, np.float32, "cpu"))
    assert state["gpu_keys"] == {}
    backend.set_rng_state({"seed": 5, "generators": {}, "gpu_keys": {"cuda:0": 3}})
    assert backend._gpu_keys == {"cuda:0": 3}


# ------------------------------------------------------------ misuse gets a message, not a traceback deep inside
@pytest.mark.parametrize("args", [(0, 3), (-1, 3), (3, 0), (2.5, 3), (True, 3)])
def test_linear_refuses_sizes_that_are_not_positive_integers(args):
    with pytest.raises(ValueError, match="Linear: (in|out)_features must be a positive integer"):
        nn.Linear(*args)
    with pytest.raises(ValueError, match="Embedding: .* must be a positive integer"):
        nn.Embedding(*args)


def test_load_state_dict_refuses_integer_and_non_finite_values():
    layer = nn.Linear(2, 2)
    state = {k: v.numpy() for k, v in layer.state_dict().items()}
    with pytest.raises(TypeError, match="'weight' holds int64 values"):
        layer.load_state_dict({**state, "weight": np.ones((2, 2), dtype=np.int64)})
    bad = state["bias"].copy()
    bad[1] = np.nan
    with pytest.raises(ValueError, match="'bias' holds NaN or infinite values"):
        layer.load_state_dict({**state, "bias": bad})
    layer.load_state_dict(state)      # the intact state still loads


# ------------------------------------------------------------ float16 parameters: float32 master weights
def test_float16_parameters_are_updated_through_float32_master_weights():
    p = nn.Parameter(mm.tensor(np.full(4, 1000.0), dtype=mm.float16))
    opt = optim.AdamW([p], lr=1e-3, weight_decay=0.0)
    for _ in range(10):
        p.grad = mm.tensor(np.ones(4), dtype=mm.float16)
        opt.step()
    # each step moves the weight by lr = 1e-3, far below float16's spacing at 1000 (0.5): only a
    # float32 master copy accumulates the 10 steps (1000 − 0.01); the float16 weight is its rounding
    master = opt.state[p]["master_param"]
    assert master.dtype == np.float32 and opt.state[p]["exp_avg"].dtype == np.float32
    np.testing.assert_allclose(master, 1000.0 - 10 * 1e-3, rtol=1e-6)
    assert p.dtype == mm.float16 and np.isfinite(p.numpy()).all()
    restored = optim.AdamW([p], lr=1e-3, weight_decay=0.0)
    restored.load_state_dict(opt.state_dict())
    assert restored.state[p]["master_param"].dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [True, False])
def test_packed_self_attention_is_bitwise_the_split_heads_path(dtype, causal):
    """nn.MultiHeadAttention's self-attention now runs F.packed_self_attention (one node); it must
    give exactly what splitting qkv, attending per head and merging gave before, forward and
    backward, so that runs and quoted numbers reproduce (CPU-preset sizes: the compiled softmax
    applies to the causal float32 case)."""
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((12, 64, 384)).astype(dtype)
    g = rng.standard_normal((12, 64, 128)).astype(dtype)
    packed = mm.Tensor(qkv, requires_grad=True)
    out_packed = F.packed_self_attention(packed, 4, is_causal=causal)
    out_packed.backward(mm.Tensor(g))
    split = mm.Tensor(qkv, requires_grad=True)
    q, k, v = (x.reshape(12, 64, 4, 32).transpose(1, 2) for x in split.split(128, dim=-1))
    out_split = F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2).reshape(12, 64, 128)
    out_split.backward(mm.Tensor(g))
    np.testing.assert_array_equal(out_packed.numpy(), out_split.numpy())
    np.testing.assert_array_equal(packed.grad.numpy(), split.grad.numpy())
