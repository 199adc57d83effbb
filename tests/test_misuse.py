"""Issue 9, items 9 and 10: misuse of tensors, layers, models and optimizers is caught with a
clear error instead of giving silently wrong results (or an unrelated exception)."""
import math

import numpy as np
import pytest

import minillm
from minillm import nn
from minillm.models.gpt import GPT, GPTConfig


def tiny_gpt(**changes):
    minillm.manual_seed(0)
    return GPT(GPTConfig(**{**dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), **changes}))


# ------------------------------------------------------------------ 10. tensors saved for backward
@pytest.mark.parametrize("how", ["augmented", "assigned"])
def test_writing_data_of_a_tensor_saved_for_backward_is_caught(how):
    x = minillm.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = (x * x).sum()                     # saves x for its gradient 2x
    if how == "augmented":
        x.data += 1.0
    else:
        x.data = x.data * 10.0
    with pytest.raises(RuntimeError, match="version|modified"):
        y.backward()


def test_unmodified_saved_tensor_still_differentiates():
    x = minillm.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])


# ------------------------------------------------------------------ 10. load_state_dict
def test_load_state_dict_refuses_integer_and_non_finite_arrays():
    model = tiny_gpt()
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    name = "wte.weight"
    ints = dict(state, **{name: state[name].astype(np.int64)})
    with pytest.raises((TypeError, ValueError), match=name):
        model.load_state_dict(ints)
    for bad in (np.nan, np.inf):
        poisoned = dict(state, **{name: state[name].copy()})
        poisoned[name][0, 0] = bad
        with pytest.raises(ValueError, match=name):
            model.load_state_dict(poisoned)
    # nothing was half-loaded by the refused calls, and a good state dict still loads
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k])
    model.load_state_dict(state)


# ------------------------------------------------------------------ 10. layer sizes
@pytest.mark.parametrize("args", [(0, 3), (-1, 3), (3, 0), (3, -2)])
def test_linear_refuses_non_positive_sizes(args):
    with pytest.raises(ValueError, match="positive"):
        nn.Linear(*args)


# ------------------------------------------------------------------ 10. model configs and calls
@pytest.mark.parametrize("field,value", [("vocab_size", 0), ("block_size", -1), ("n_layer", 0), ("n_embd", 0),
                                         ("n_head", 3), ("dropout", 1.5), ("vocab_size", 2.5)])
def test_gpt_config_refuses_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        GPTConfig(**{field: value})


def test_gpt_given_1d_ids_says_so():
    model = tiny_gpt()
    ids = minillm.tensor(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\(batch, time\).*batch dimension"):
        model(ids)
    assert model(minillm.tensor(np.array([[1, 2, 3]]))).shape == (1, 3, 11)


@pytest.mark.parametrize("kwargs,match", [
    (dict(max_new_tokens=-3), "max_new_tokens"),
    (dict(max_new_tokens=2.5), "max_new_tokens"),
    (dict(max_new_tokens=2, temperature=float("nan")), "temperature"),
    (dict(max_new_tokens=2, top_k=-5), "top_k"),
])
def test_generate_refuses_bad_arguments(kwargs, match):
    model = tiny_gpt()
    with pytest.raises(ValueError, match=match):
        model.generate(minillm.tensor(np.array([[1, 2]])), **kwargs)


def test_generate_zero_tokens_returns_the_prompt():
    model = tiny_gpt()
    out = model.generate(minillm.tensor(np.array([[1, 2]])), max_new_tokens=0)
    np.testing.assert_array_equal(out.numpy(), [[1, 2]])


# ------------------------------------------------------------------ 9. float16 parameters
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_adamw_on_float16_parameters_refuses_or_stays_finite():
    from minillm.optim import AdamW
    model = tiny_gpt()
    for p in model.parameters():
        p.data = p.data.astype(np.float16)
    x = minillm.tensor(np.arange(16).reshape(2, 8) % 11)
    try:
        opt = AdamW(model.parameters(), lr=1e-3)
        for _ in range(3):
            _, loss = model(x, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
    except (TypeError, ValueError) as exc:
        assert "float16" in str(exc)
        return
    for name, p in model.named_parameters():
        assert np.isfinite(p.numpy().astype(np.float32)).all(), f"{name} is not finite after AdamW steps"
    assert math.isfinite(float(loss.item()))
