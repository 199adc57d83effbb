"""Pre-training objectives (masked LM and span-corruption batches and losses), the pre-training
and fine-tuning loops, and the trainer's mlm/span objectives."""
from types import SimpleNamespace

import numpy as np
import pytest

import minillm
from minillm import objectives as O
from minillm import pretrain as P
from minillm.data import BPETokenizer
from minillm.finetune import balanced_accuracy, encode_examples, finetune, pad_batch
from minillm.nn.functional import IGNORE_INDEX
from minillm.objectives import reconstruct

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 40


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, 300 + len(O.SPECIAL_TOKENS), special_tokens=O.SPECIAL_TOKENS)


@pytest.fixture(scope="module")
def data(tok):
    return np.asarray(tok.encode(TEXT), dtype=np.int64)


def test_special_ids(tok):
    sp = O.special_ids(tok)
    assert sp.pad == tok.special_id("[PAD]") and sp.mask == tok.special_id("[MASK]")
    assert len(sp.sentinels) == O.NUM_SENTINELS and sp.sentinels[0] == tok.special_id("<extra_id_0>")
    assert set(sp.all) == set(tok.special_to_id.values())
    with pytest.raises(ValueError, match="special tokens"):
        O.special_ids(BPETokenizer.train(TEXT, 260))


def test_mlm_batch(tok, data):
    cfg = SimpleNamespace(batch_size=4, block_size=32)
    x, y = O.mlm_batch(data, cfg, np.random.default_rng(0), tok)
    assert x.shape == y.shape == (4, 32)
    chosen = y != IGNORE_INDEX
    assert (chosen.sum(1) == round(0.15 * 32)).all()            # 15% of each row (5 of 32)
    sp = O.special_ids(tok)
    # unchosen positions are untouched and the labels are the originals; most chosen are [MASK]
    rng = np.random.default_rng(0)
    from minillm.data import get_batch
    orig, _ = get_batch(data, 4, 32, rng)
    np.testing.assert_array_equal(x[~chosen], orig[~chosen])
    np.testing.assert_array_equal(y[chosen], orig[chosen])
    assert (x[chosen] == sp.mask).mean() > 0.5
    assert not np.isin(x[~chosen], sp.all).any()


def test_mlm_loss_is_the_loss_at_chosen_positions(tok, data):
    model = P.build_model("mlm", tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)
    model.eval()
    x, y = O.mlm_batch(data, SimpleNamespace(batch_size=2, block_size=32), np.random.default_rng(1), tok)
    loss = O.mlm_loss(model, minillm.tensor(x), minillm.tensor(y))
    logits = model(minillm.tensor(x)).numpy()
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    chosen = np.argwhere(y != IGNORE_INDEX)
    manual = -np.mean([logp[b, t, y[b, t]] for b, t in chosen])
    assert abs(loss.item() - manual) < 1e-4


def test_span_batch(tok, data):
    cfg = SimpleNamespace(batch_size=3, block_size=40)
    src, src_pad, tgt_in, tgt = O.span_batch(data, cfg, np.random.default_rng(0), tok)
    sp = O.special_ids(tok)
    assert src.shape[1] <= 40 and src.shape == src_pad.shape and tgt_in.shape == tgt.shape
    assert (tgt_in[:, 0] == sp.pad).all()
    for b in range(3):
        real = tgt[b] != IGNORE_INDEX
        np.testing.assert_array_equal(tgt_in[b, 1:][real[1:]], tgt[b][real][:-1])   # shifted right
        assert tgt[b][real][0] == sp.sentinels[0] and tgt[b][real][-1] == sp.eos
        assert (src[b][src_pad[b]] == sp.pad).all() and src[b][~src_pad[b]][-1] == sp.eos
        rebuilt = reconstruct(src[b][~src_pad[b]], tgt[b][real], sp.sentinels, eos_id=sp.eos)
        assert len(rebuilt) == 39                                                   # block_size - 1 tokens
        assert not np.isin(rebuilt, sp.all).any()


def test_span_batch_of_ragged_sequences_pads(tok):
    seqs = [np.arange(10, 30), np.arange(40, 52)]
    src, src_pad, tgt_in, tgt = O.make_span_batch(seqs, tok, np.random.default_rng(0))
    sp = O.special_ids(tok)
    assert src_pad[1].any() and not src_pad[0].any()
    assert (tgt == IGNORE_INDEX).any()
    for b, s in enumerate(seqs):
        out = reconstruct(src[b][~src_pad[b]], tgt[b][tgt[b] != IGNORE_INDEX], sp.sentinels, eos_id=sp.eos)
        np.testing.assert_array_equal(out, s)


@pytest.mark.parametrize("objective", ["causal", "mlm", "span"])
def test_pretrain_reduces_the_loss(tok, data, objective):
    minillm.manual_seed(0)
    model = P.build_model(objective, tok.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16, tokenizer=tok)
    hist = P.pretrain(model, objective, data, tok, steps=12, batch_size=4, lr=1e-2, warmup=2, val_data=data,
                      eval_every=100, eval_batches=2, log=None)
    assert len(hist["train_loss"]) == 12 and hist["val"][0][0] == 0 and hist["val"][-1][0] == 12
    assert hist["val"][-1][1] < hist["val"][0][1] - 0.5


def test_build_model_kinds(tok):
    from minillm.models.bert import BERT
    from minillm.models.gpt import GPT
    from minillm.models.t5 import T5
    assert isinstance(P.build_model("causal", 300), GPT) and isinstance(P.build_model("bert", 300), BERT)
    t5 = P.build_model("span", tok.vocab_size, tokenizer=tok)
    assert isinstance(t5, T5) and t5.config.decoder_start_id == O.special_ids(tok).pad
    with pytest.raises(ValueError, match="unknown model"):
        P.build_model("lstm", 300)


def test_pad_batch_encode_examples_and_balanced_accuracy(tok):
    seqs = encode_examples(["Speak, speak.", "Before we proceed any further, hear me speak."], tok, max_len=5,
                             cls_id=O.special_ids(tok).cls)
    assert all(len(s) <= 5 for s in seqs) and seqs[0][0] == O.special_ids(tok).cls
    ids, mask = pad_batch([np.array([1, 2, 3]), np.array([4])], pad_id=0)
    np.testing.assert_array_equal(ids, [[1, 2, 3], [4, 0, 0]])
    np.testing.assert_array_equal(mask, [[False] * 3, [False, True, True]])
    # balanced accuracy: recall averaged over the classes (a constant guess gets 1/C)
    assert balanced_accuracy([0, 0, 0, 0], [0, 1, 1, 1]) == 0.5
    assert abs(balanced_accuracy([0, 1, 1, 2], [0, 1, 2, 2]) - (1 + 1 + 0.5) / 3) < 1e-12


def test_finetune_learns_a_synthetic_task():
    """Label = which half of the vocabulary the tokens come from: learnt from 64 examples."""
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for i in range(96):
        low = 1 + 9 * (i % 2)
        seqs.append(rng.integers(low, low + 9, size=rng.integers(3, 8)))
        labels.append(i % 2)
    minillm.manual_seed(0)
    backbone = P.build_model("bert", 20, block_size=8, n_layer=1, n_head=2, n_embd=16)
    res = finetune(backbone, seqs[:64], labels[:64], seqs[64:], labels[64:], num_classes=2, pad_id=0,
                     steps=20, batch_size=16, lr=1e-2, dropout=0.0, seed=0)
    assert res["accuracy"] >= 0.9, res["accuracy"]
    assert len(res["train_loss"]) == 20 and res["predictions"].shape == (32,)


@pytest.mark.parametrize("objective,model_name", [("mlm", "BERT"), ("span", "T5")])
def test_trainer_objectives_mlm_and_span(tmp_path, monkeypatch, objective, model_name):
    """`minillm train --objective mlm|span`: the trainer builds a BERT / T5 with the special
    tokens, trains, checkpoints and resumes."""
    from minillm.checkpoint import load_checkpoint
    from minillm.objectives import OBJECTIVES
    from minillm.train import Trainer
    from minillm.train_config import TrainConfig
    monkeypatch.setenv("MINILLM_CACHE_DIR", str(tmp_path / "cache"))
    assert {"causal", "mlm", "span"} <= set(OBJECTIVES)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    settings = dict(data=str(corpus), objective=objective, n_layer=1, n_head=2, n_embd=16, block_size=24, batch_size=4, lr=3e-3,
                    warmup_iters=1, max_iters=3, lr_decay_iters=6, eval_interval=3, eval_iters=1, sample_tokens=20,
                    progress=False, out_dir=str(tmp_path / "run"))
    trainer = Trainer(TrainConfig(**settings), log=None)
    assert type(trainer.model).__name__ == model_name
    assert "[MASK]" in trainer.tokenizer.special_tokens and "<extra_id_0>" in trainer.tokenizer.special_tokens
    if objective == "span":
        assert trainer.model.config.decoder_start_id == trainer.tokenizer.special_id("[PAD]")
    summary = trainer.train()
    assert np.isfinite(summary["val_loss"]) and summary["sample"] is None
    ck = load_checkpoint(tmp_path / "run" / "last.npz")
    assert ck.iter_num == 3
    assert ("mlm_bias" if objective == "mlm" else "enc_wpe.weight") in ck.model_state
    resumed = Trainer(TrainConfig(**{**settings, "max_iters": 6, "resume": True}), log=None)
    assert type(resumed.model).__name__ == model_name
    assert resumed.train()["iter_num"] == 6
