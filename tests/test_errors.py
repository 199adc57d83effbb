"""Bad input gives an error that names the op (or key) and the shapes/devices involved."""
import re

import numpy as np
import pytest

import minillm as mm
from minillm import DeviceError, backend, nn
from minillm.nn import functional as F


def t(*shape, dtype=np.float64):
    return mm.tensor(np.ones(shape, dtype=dtype))


# ------------------------------------------------------------ shapes
def test_matmul_shape_mismatch():
    with pytest.raises(ValueError, match=re.escape("matmul: shapes (2, 3) and (4, 5) are not aligned (3 != 4)")):
        t(2, 3) @ t(4, 5)
    with pytest.raises(ValueError, match=r"matmul: batch shapes of \(2, 3, 4\) and \(3, 4, 5\) do not broadcast"):
        t(2, 3, 4) @ t(3, 4, 5)
    with pytest.raises(ValueError, match=r"matmul: both operands need at least 1 dimension.*\(\).*\(3,\)"):
        mm.matmul(mm.tensor(2.0), t(3))
    with pytest.raises(ValueError, match=r"matmul: shapes \(1, 3\) and \(4, 1\)"):
        t(3) @ t(4)


def test_linear_shape_mismatch():
    with pytest.raises(ValueError, match=re.escape("linear: input has 3 features (shape (2, 3)) but the weight "
                                                   "expects 4 (weight shape (5, 4))")):
        F.linear(t(2, 3), t(5, 4))
    with pytest.raises(ValueError, match=r"linear.*\(7, 2\).*\(3, 4\)"):
        nn.Linear(4, 3)(mm.randn(7, 2))


@pytest.mark.parametrize("op,name", [(lambda a, b: a + b, "Add"), (lambda a, b: a - b, "Sub"),
                                     (lambda a, b: a * b, "Mul"), (lambda a, b: a / b, "Div"),
                                     (lambda a, b: a ** b, "Pow"), (mm.maximum, "Maximum")])
def test_broadcast_mismatch_names_op_and_shapes(op, name):
    with pytest.raises(ValueError, match=re.escape(f"{name}: shapes [(2, 3), (4,)] do not broadcast")):
        op(t(2, 3), t(4))


def test_other_shape_errors():
    cond = np.ones((2, 3), dtype=bool)
    with pytest.raises(ValueError, match=re.escape("Where: shapes [(2, 3), (4,), (2, 3)] do not broadcast")):
        mm.where(cond, t(4), t(2, 3))
    with pytest.raises(ValueError, match=re.escape("expand: cannot broadcast shape (2, 3) to (4, 3)")):
        t(2, 3).expand(4, 3)
    with pytest.raises(ValueError, match=re.escape("reshape: cannot reshape a tensor of shape (2, 3) (6 elements) "
                                                   "to (4, 2)")):
        t(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=re.escape("reshape: cannot reshape a tensor of shape (2, 3) (6 elements) "
                                                   "to (-1, 4)")):
        t(2, 3).view(-1, 4)
    with pytest.raises(ValueError, match=r"cat: shapes \[\(2, 3\), \(2, 4\)\] differ outside dim 0"):
        mm.cat([t(2, 3), t(2, 4)])
    with pytest.raises(ValueError, match=r"stack: all tensors need the same shape.*\(2, 3\).*\(3, 2\)"):
        mm.stack([t(2, 3), t(3, 2)])
    with pytest.raises(ValueError, match=r"split: sections \[1, 1\] do not add up to size 3 of dim 0"):
        t(3, 2).split([1, 1])
    with pytest.raises(ValueError, match=r"permute: dims \(0, 0\) are not a permutation of 2"):
        t(2, 3).permute(0, 0)
    with pytest.raises(IndexError, match="dim 3 is out of range for a tensor with 2 dimensions"):
        t(2, 3).sum(3)
    with pytest.raises(ValueError, match=r"layer_norm: input shape \(2, 3\) does not end with normalized_shape \(4,\)"):
        F.layer_norm(t(2, 3), 4)
    with pytest.raises(ValueError, match=r"attention: shapes q \(2, 3\), k \(2, 4\), v \(2, 4\)"):
        F.scaled_dot_product_attention(t(2, 3), t(2, 4), t(2, 4))
    with pytest.raises(ValueError, match=r"batch_norm: expected \(N, C\) or \(N, C, L\) input, got shape \(3,\)"):
        F.batch_norm(t(3), None, None, training=True)
    with pytest.raises(ValueError, match=r"need more than one value per channel.*\(1, 3\)"):
        F.batch_norm(t(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\): expected input \(N, 4\[, L\]\), got shape \(2, 3\)"):
        nn.BatchNorm1d(4)(mm.randn(2, 3))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: expected input \(B, T, 4\), got \(2, 4\)"):
        nn.MultiHeadAttention(4, 2)(mm.randn(2, 4))
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(2, 3\) and target shape \(3,\) differ"):
        F.mse_loss(t(2, 3), t(3))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: input shape \(2,\).*\(3,\)"):
        F.binary_cross_entropy_with_logits(t(2), t(3))
    with pytest.raises(ValueError, match=r"cross_entropy: target shape \(3,\) does not fit input shape \(2, 5\)"):
        F.cross_entropy(t(2, 5), mm.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="cross_attention needs a `context`"):
        nn.TransformerBlock(4, 2, cross_attention=True)(mm.randn(1, 2, 4))
    with pytest.raises(ValueError, match=r"gather: index has 1 dims but input has 2 \(shape \(2, 3\)\)"):
        t(2, 3).gather(1, mm.tensor([0, 1]))


def test_bad_option_values():
    with pytest.raises(ValueError, match="clamp: give at least one of min and max"):
        mm.clamp(t(2))
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'fast'"):
        F.gelu(t(2), approximate="fast")
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.mse_loss(t(2), t(2), reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        F.cross_entropy(t(2, 3), mm.tensor([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\], got -0.1"):
        F.dropout(t(2), -0.1)
    with pytest.raises(ValueError, match="embed_dim 6 is not divisible by num_heads 4"):
        nn.MultiHeadAttention(6, 4)
    with pytest.raises(TypeError, match="unsupported data of dtype <U1"):
        mm.tensor(["a"])


# ------------------------------------------------------------ indices
def test_float_indices_are_refused():
    w = t(5, 3)
    with pytest.raises(TypeError, match="embedding: indices must be an integer tensor, got float32"):
        F.embedding(mm.tensor([0.0, 1.0]), w)
    with pytest.raises(TypeError, match="embedding: indices must be an integer tensor, got list"):
        F.embedding([0, 1], w)
    with pytest.raises(TypeError, match="gather: index must be an integer tensor, got dtype float64"):
        w.gather(1, mm.tensor(np.zeros((5, 1))))
    with pytest.raises(TypeError, match="indexing: indices must be integers or booleans, got dtype float32"):
        w[mm.tensor([0.0, 1.0])]
    with pytest.raises(TypeError, match="indexing: indices must be integers or booleans, got float64"):
        w[[0.5, 1.0]]
    with pytest.raises(IndexError, match=r"indexing a tensor of shape \(5, 3\): only integers"):
        w[1.5]
    with pytest.raises(TypeError, match="cross_entropy: target must be an integer tensor of class indices, got float64"):
        F.cross_entropy(t(2, 3), t(2))
    with pytest.raises(TypeError, match="masked_fill: mask must be boolean, got dtype int64"):
        w.masked_fill(mm.tensor([1, 0, 1]), 0.0)
    with pytest.raises(TypeError, match="attn_mask must be boolean.*float64"):
        F.scaled_dot_product_attention(t(2, 3), t(2, 3), t(2, 3), attn_mask=t(2, 2))


def test_out_of_range_indices():
    w = t(5, 3)
    with pytest.raises(IndexError, match="embedding: index 7 is out of range for 5 embeddings"):
        F.embedding(mm.tensor([0, 7]), w)
    with pytest.raises(IndexError, match="embedding: index -1 is out of range for 5 embeddings"):
        nn.Embedding(5, 3)(mm.tensor([[-1, 2]]))
    with pytest.raises(IndexError, match="cross_entropy: target value 3 is out of range for 3 classes"):
        F.cross_entropy(t(2, 3), mm.tensor([0, 3]))
    with pytest.raises(IndexError, match="cross_entropy: target value -2 is out of range for 3 classes"):
        F.cross_entropy(t(2, 3), mm.tensor([-2, 0]))
    with pytest.raises(IndexError, match=r"gather: index 3 is out of range for dim 1 of size 3 \(input shape \(2, 3\)\)"):
        F.nll_loss(t(2, 3), mm.tensor([0, 3]))
    with pytest.raises(IndexError, match=r"gather: index -1 is out of range for dim 1 of size 3"):
        F.nll_loss(t(2, 3), mm.tensor([0, -1]))      # would silently wrap to the last class
    with pytest.raises(IndexError, match=r"indexing a tensor of shape \(5, 3\): index 9 is out of bounds"):
        w[9]
    with pytest.raises(IndexError, match=r"indexing a tensor of shape \(5, 3\)"):
        w[mm.tensor([0, 5])]


# ------------------------------------------------------------ backward
def test_backward_on_non_scalar_needs_gradient():
    y = mm.tensor(np.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"backward\(\) on a tensor of shape \(2, 3\) needs an explicit `gradient`"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3, 2\) but the tensor has \(2, 3\)"):
        y.backward(np.ones((3, 2)))


# ------------------------------------------------------------ devices
@pytest.mark.skipif(mm.is_cuda_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_raises_with_reason():
    reason = backend.cuda_unavailable_reason()
    assert reason
    for make in (lambda: mm.tensor([1.0], device="cuda"), lambda: mm.zeros(2, device="cuda:0"),
                 lambda: mm.tensor([1.0]).to("cuda"), lambda: nn.Linear(2, 2).cuda(),
                 lambda: mm.set_default_device("cuda")):
        with pytest.raises(DeviceError, match="CUDA is unavailable") as info:
            make()
        assert reason in str(info.value)
        assert "'cuda" in str(info.value)
    assert backend.default_device() == "cpu"


def test_cuda_unavailable_reason_is_reported(monkeypatch):
    """The same on any machine: pretend CuPy failed to import."""
    monkeypatch.setattr(backend, "_load_cupy", lambda: None)
    monkeypatch.setattr(backend, "_cupy_error", "CuPy is not installed (simulated)")
    with pytest.raises(DeviceError, match=r"device 'cuda:1' requested but CUDA is unavailable: "
                                          r"CuPy is not installed \(simulated\)"):
        mm.tensor([1.0], device="cuda:1")
    with pytest.raises(DeviceError, match=r"cannot move an array to 'cuda:0': CuPy is not installed \(simulated\)"):
        backend.to_device(np.ones(2), "cuda:0")


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda0", "mps", ""])
def test_unknown_device_string(bad, monkeypatch):
    with pytest.raises(DeviceError, match=f"unknown device {bad!r}: use 'cpu', 'cuda' or 'cuda:N'"):
        backend.normalize_device(bad)
    with pytest.raises(DeviceError, match="unknown device"):
        mm.tensor([1.0], device=bad or "x")
    monkeypatch.setenv("MINILLM_DEVICE", "tpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        mm.zeros(2)


@pytest.mark.gpu
def test_device_mismatch_names_op_and_devices(cuda_device):
    a, b = mm.tensor([1.0, 2.0]), mm.tensor([1.0, 2.0], device="cuda")
    with pytest.raises(DeviceError, match=re.escape("Add: inputs are on different devices (cpu and cuda:0)")):
        a + b
    with pytest.raises(DeviceError, match=re.escape("MatMul: inputs are on different devices (cuda:0 and cpu)")):
        mm.tensor(np.ones((2, 2)), device="cuda") @ mm.tensor(np.ones((2, 2)))
    lin = nn.Linear(2, 2)
    with pytest.raises(DeviceError, match=r"_Linear: inputs are on different devices \(cuda:0 and cpu\)"):
        lin(b[None])
    with pytest.raises(DeviceError, match=r"only \d+ CUDA device\(s\) exist"):
        mm.tensor([1.0], device="cuda:99")


# ------------------------------------------------------------ state dicts
def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_load_state_dict_missing_key():
    state = _model().state_dict()
    del state["0.bias"]
    with pytest.raises(KeyError, match=re.escape("load_state_dict for Sequential: missing keys ['0.bias'], "
                                                 "unexpected keys []")):
        _model().load_state_dict(state)


def test_load_state_dict_extra_key():
    state = _model().state_dict()
    state["2.weight"] = mm.zeros(3)
    with pytest.raises(KeyError, match=re.escape("missing keys [], unexpected keys ['2.weight']")):
        _model().load_state_dict(state)


def test_load_state_dict_misshaped_key():
    state = _model().state_dict()
    state["0.weight"] = mm.zeros(4, 2)
    with pytest.raises(ValueError, match=re.escape("load_state_dict: '0.weight' has shape (4, 2) in the state dict "
                                                   "but (4, 3) in the model")):
        _model().load_state_dict(state)
    state = _model().state_dict()
    state["1.running_var"] = np.ones(5)
    with pytest.raises(ValueError, match=r"'1.running_var' has shape \(5,\).*\(4,\)"):
        _model().load_state_dict(state, strict=False)
