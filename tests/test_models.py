"""BERT-style encoder, T5-style encoder-decoder and the sequence-classification head: shapes,
padding masks, causality, gradients (float64 gradchecks on tiny configs), generation."""
import numpy as np
import pytest

import minillm
from minillm.gradcheck import gradcheck
from minillm.models.bert import BERT, BERTConfig
from minillm.models.classifier import SequenceClassifier, backbone_hidden_states
from minillm.models.gpt import GPT, GPTConfig
from minillm.models.t5 import T5, T5Config
from minillm.nn import functional as F

V, E, T = 13, 8, 6


def tiny(kind, dtype=None, **kw):
    minillm.manual_seed(0)
    common = dict(vocab_size=V, block_size=T + 2, n_layer=kw.pop("n_layer", 1), n_head=2, n_embd=E, **kw)
    model = {"bert": lambda: BERT(BERTConfig(**common)), "t5": lambda: T5(T5Config(**common)),
             "gpt": lambda: GPT(GPTConfig(**common))}[kind]()
    if dtype is not None:
        model.to(dtype=dtype)
    model.eval()
    return model


def ids(shape, seed=0, low=1):
    return minillm.tensor(np.random.default_rng(seed).integers(low, V, shape))


def right_padding(lengths, t):
    return np.arange(t)[None, :] >= np.asarray(lengths)[:, None]


# ------------------------------------------------------------------ BERT
def test_bert_shapes_and_config_roundtrip():
    m = tiny("bert", n_layer=2)
    x = ids((3, T))
    assert m.encode(x).shape == (3, T, E)
    assert m(x).shape == (3, T, V)
    assert BERTConfig.from_dict({**m.config.to_dict(), "unknown": 1}) == m.config
    with pytest.raises(ValueError, match="block_size"):
        m(ids((1, T + 3)))


def test_bert_decoder_is_tied_to_the_token_embedding():
    m = tiny("bert")
    names = [n for n, _ in m.named_parameters()]
    assert not any("decoder" in n for n in names) and "mlm_bias" in names
    h = m.encode(ids((2, T)))
    expected = F.linear(m.mlm_ln(F.gelu(m.mlm_dense(h), m.config.gelu)), m.wte.weight) + m.mlm_bias
    np.testing.assert_allclose(m(ids((2, T))).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_bert_is_bidirectional():
    m = tiny("bert")
    x = ids((1, T)).numpy()
    y = x.copy()
    y[0, -1] = (y[0, -1] % (V - 1)) + 1
    a, b = m.encode(minillm.tensor(x)).numpy(), m.encode(minillm.tensor(y)).numpy()
    assert not np.allclose(a[0, 0], b[0, 0])        # the first position sees the last token


def test_bert_padding_mask_hides_padded_tokens():
    m = tiny("bert", n_layer=2)
    x = ids((2, T)).numpy()
    mask = right_padding([4, T], T)
    y = x.copy()
    y[0, 4:] = [7, 2]                                # change only the padded tokens of row 0
    a = m.encode(minillm.tensor(x), mask).numpy()
    b = m.encode(minillm.tensor(y), mask).numpy()
    np.testing.assert_allclose(a[0, :4], b[0, :4], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a[1], b[1])
    c = m.encode(minillm.tensor(y)).numpy()          # without the mask they leak
    assert not np.allclose(a[0, :4], c[0, :4])
    with pytest.raises(ValueError, match="padding_mask"):
        m.encode(minillm.tensor(x), mask[:, :3])


def test_bert_mlm_loss_matches_forward_and_only_uses_chosen_positions():
    m = tiny("bert")
    x = ids((2, T))
    y = np.full((2, T), -100)
    y[0, 1], y[1, 3], y[1, 5] = 4, 9, 2
    _, full = m(x, minillm.tensor(y))
    fast = m.mlm_loss(x, minillm.tensor(y))
    assert abs(full.item() - fast.item()) < 1e-5
    logits = m(x)
    manual = np.mean([-np.log(np.exp(l - l.max())[t] / np.exp(l - l.max()).sum())
                      for l, t in ((logits.numpy()[0, 1], 4), (logits.numpy()[1, 3], 9), (logits.numpy()[1, 5], 2))])
    assert abs(full.item() - manual) < 1e-5
    # the gradient w.r.t. the logits is zero at every position that is not chosen
    logits = m(x)
    (g,) = minillm.grad(F.cross_entropy(logits.reshape(-1, V), minillm.tensor(y).reshape(-1)), [logits])
    nonzero = np.abs(g.numpy()).sum(-1) > 0
    np.testing.assert_array_equal(nonzero, y != -100)
    assert m.mlm_loss(x, minillm.tensor(np.full((2, T), -100))).item() == 0.0


def test_bert_gradcheck_float64():
    m = tiny("bert", dtype=minillm.float64)
    x = ids((2, 5))
    y = np.full((2, 5), -100)
    y[0, 1], y[1, 4] = 3, 7
    mask = right_padding([5, 4], 5)
    params = [m.mlm_bias, m.blocks[0].ln_1.weight, m.mlm_ln.bias, m.wpe.weight]
    assert gradcheck(lambda *p: m.mlm_loss(x, minillm.tensor(y), mask), params)
    assert gradcheck(lambda *p: m(x, padding_mask=mask), [m.blocks[0].attn.out_proj.bias])


# ------------------------------------------------------------------ T5
def test_t5_shapes_loss_and_shared_embedding():
    m = tiny("t5", n_layer=2, n_decoder_layer=1)
    assert len(m.encoder) == 2 and len(m.decoder) == 1
    src, tgt = ids((3, T)), ids((3, 4), seed=1)
    logits = m(src, tgt)
    assert logits.shape == (3, 4, V)
    targets = tgt.numpy().copy()
    targets[0, 2:] = -100
    _, loss = m(src, tgt, None, minillm.tensor(targets))
    assert np.isfinite(loss.item())
    names = [n for n, _ in m.named_parameters()]
    assert sum(n.startswith("wte") for n in names) == 1 and not any("head" in n for n in names)
    assert T5Config.from_dict(m.config.to_dict()) == m.config


def test_t5_decoder_is_causal():
    m = tiny("t5")
    src = ids((1, T))
    tgt = ids((1, 5), seed=2).numpy()
    changed = tgt.copy()
    changed[0, 3] = (changed[0, 3] % (V - 1)) + 1
    a = m(src, minillm.tensor(tgt)).numpy()
    b = m(src, minillm.tensor(changed)).numpy()
    np.testing.assert_allclose(a[0, :3], b[0, :3], rtol=1e-6, atol=1e-6)   # earlier positions unchanged
    assert not np.allclose(a[0, 3:], b[0, 3:])


def test_t5_source_padding_is_ignored():
    m = tiny("t5", n_layer=2)
    src = ids((2, T)).numpy()
    mask = right_padding([3, T], T)
    other = src.copy()
    other[0, 3:] = [1, 2, 3]
    tgt = ids((2, 4), seed=3)
    a = m(minillm.tensor(src), tgt, mask).numpy()
    b = m(minillm.tensor(other), tgt, mask).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.encode(minillm.tensor(src), mask).numpy()[0, :3],
                               m.encode(minillm.tensor(other), mask).numpy()[0, :3], rtol=1e-6, atol=1e-6)


def test_t5_decoder_reads_the_encoder():
    m = tiny("t5")
    tgt = ids((1, 3), seed=4)
    assert not np.allclose(m(ids((1, T), seed=5), tgt).numpy(), m(ids((1, T), seed=6), tgt).numpy())


def test_t5_gradcheck_float64():
    m = tiny("t5", dtype=minillm.float64)
    src, tgt = ids((2, 4)), ids((2, 3), seed=1)
    targets = tgt.numpy().copy()
    targets[1, 2] = -100
    mask = right_padding([4, 3], 4)
    params = [m.decoder[0].cross_attn.out_proj.bias, m.encoder[0].ln_2.weight, m.dec_ln.bias,
              m.decoder[0].ln_cross.weight]
    assert gradcheck(lambda *p: m(src, tgt, mask, minillm.tensor(targets))[1], params)


def test_t5_generate_greedy_is_deterministic_and_stops_at_eos():
    m = tiny("t5")
    src = ids((2, T))
    a = m.generate(src, 4).numpy()
    b = m.generate(src, 4).numpy()
    assert a.shape == (2, 5) and (a[:, 0] == m.config.decoder_start_id).all()
    np.testing.assert_array_equal(a, b)
    # greedy decoding = argmax of the forward logits, one token at a time
    logits = m(src, minillm.tensor(a[:, :-1])).numpy()
    np.testing.assert_array_equal(logits.argmax(-1), a[:, 1:])
    eos = int(a[0, 1])                               # row 0 emits this first: it stops there
    c = m.generate(src, 4, eos_id=eos).numpy()
    assert (c[0, 1:] == eos).all()
    s = m.generate(src, 3, temperature=1.0, top_k=3)
    assert s.shape == (2, 4) and m.training is False
    with pytest.raises(ValueError):
        m.generate(src, 2, temperature=-1)


# ------------------------------------------------------------------ the classifier
@pytest.mark.parametrize("kind", ["bert", "t5", "gpt"])
@pytest.mark.parametrize("pooling", ["mean", "first", "last"])
def test_classifier_shapes_and_padding(kind, pooling):
    clf = SequenceClassifier(tiny(kind), num_classes=4, pooling=pooling, dropout=0.0)
    clf.eval()
    x = ids((2, T)).numpy()
    mask = right_padding([4, T], T)
    y = x.copy()
    y[0, 4:] = [3, 3]
    a = clf(minillm.tensor(x), mask).numpy()
    b = clf(minillm.tensor(y), mask).numpy()
    assert a.shape == (2, 4)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    logits, loss = clf(minillm.tensor(x), mask, minillm.tensor(np.array([1, 3])))
    loss.backward()
    assert clf.head.weight.grad is not None and clf.backbone.wte.weight.grad is not None


def test_classifier_pooling_values():
    clf = SequenceClassifier(tiny("bert"), num_classes=3, dropout=0.0)
    h = minillm.tensor(np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2))
    mask = right_padding([2, 4], 4)
    np.testing.assert_allclose(clf.pool(h, mask).numpy(), [[1, 2], [11, 12]])
    clf.pooling = "last"
    np.testing.assert_allclose(clf.pool(h, mask).numpy(), [[2, 3], [14, 15]])
    clf.pooling = "first"
    np.testing.assert_allclose(clf.pool(h, mask).numpy(), [[0, 1], [8, 9]])
    with pytest.raises(ValueError):
        SequenceClassifier(tiny("bert"), 3, pooling="max")


def test_gpt_hidden_states_are_its_forward_without_the_head():
    gpt = tiny("gpt", n_layer=2)
    x = ids((2, T))
    h = backbone_hidden_states(gpt, x)
    np.testing.assert_allclose(F.linear(h, gpt.wte.weight).numpy(), gpt(x).numpy(), rtol=1e-5, atol=1e-6)


def test_classifier_gradcheck_float64():
    clf = SequenceClassifier(tiny("bert", dtype=minillm.float64), num_classes=3, dropout=0.0)
    clf.to(dtype=minillm.float64)
    x = ids((2, 5))
    mask = right_padding([3, 5], 5)
    labels = minillm.tensor(np.array([0, 2]))
    assert gradcheck(lambda *p: clf(x, mask, labels)[1], [clf.head.bias, clf.backbone.ln_f.weight])


def test_classifier_on_gpt_pools_gpt_hidden_states():
    """The classifier asks the GPT for its hidden states (GPT.hidden_states), padding included."""
    gpt = tiny("gpt", n_layer=2)
    clf = SequenceClassifier(gpt, num_classes=3, pooling="last", dropout=0.0)
    clf.eval()
    x = ids((2, T))
    mask = right_padding([4, T], T)
    h = gpt.hidden_states(x, mask)
    np.testing.assert_array_equal(backbone_hidden_states(gpt, x, mask).numpy(), h.numpy())
    pooled = np.stack([h.numpy()[0, 3], h.numpy()[1, T - 1]])
    expected = pooled @ clf.head.weight.numpy().T + clf.head.bias.numpy()
    np.testing.assert_allclose(clf(x, mask).numpy(), expected, rtol=1e-5, atol=1e-6)
    # causal: with right padding, the real positions read only real tokens
    np.testing.assert_allclose(h.numpy()[0, :4], gpt.hidden_states(minillm.tensor(x.numpy()[:1, :4])).numpy()[0],
                               rtol=1e-5, atol=1e-6)


def test_state_dict_keys_are_stable():
    """Checkpoints depend on these names: sharing init/embedding code must not rename anything."""
    block = {f"{m}.{p}" for m in ("attn.in_proj", "attn.out_proj", "ln_1", "ln_2", "mlp.fc", "mlp.proj")
             for p in ("weight", "bias")}
    gpt_keys = {f"blocks.0.{k}" for k in block} | {"ln_f.weight", "ln_f.bias", "wpe.weight", "wte.weight"}
    assert set(tiny("gpt").state_dict()) == gpt_keys
    assert set(tiny("bert").state_dict()) == gpt_keys | {"mlm_bias", "mlm_dense.weight", "mlm_dense.bias",
                                                         "mlm_ln.weight", "mlm_ln.bias"}
    cross = {f"{m}.{p}" for m in ("cross_attn.in_proj", "cross_attn.out_proj", "ln_cross") for p in ("weight", "bias")}
    assert set(tiny("t5").state_dict()) == ({f"encoder.0.{k}" for k in block} | {f"decoder.0.{k}" for k in block | cross}
                                            | {"enc_ln.weight", "enc_ln.bias", "dec_ln.weight", "dec_ln.bias",
                                               "enc_wpe.weight", "dec_wpe.weight", "wte.weight"})


def test_gpt2_init_scales_the_residual_projections():
    from minillm.models.common import INIT_STD
    minillm.manual_seed(0)
    L, n = 4, 96
    gpt = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=L, n_head=2, n_embd=n))
    t5 = T5(T5Config(vocab_size=50, block_size=8, n_layer=L, n_head=2, n_embd=n))
    for name, p in list(gpt.named_parameters()) + list(t5.named_parameters()):
        w = p.numpy()
        if name.endswith("bias"):
            assert not w.any(), name
        elif name.endswith(("out_proj.weight", "mlp.proj.weight")):
            writes = 3 * L if name.startswith("decoder") else 2 * L
            assert abs(w.std() / (INIT_STD / np.sqrt(writes)) - 1) < 0.1, name
        elif w.ndim == 2:
            assert abs(w.std() / INIT_STD - 1) < 0.1, name
