"""Checkpoints: round trip, atomic writes, and clear errors for files that are not checkpoints."""
import json
import math
import os
import zipfile

import numpy as np
import pytest

import minillm
from minillm import checkpoint as ckpt_mod
from minillm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minillm.models.gpt import GPT, GPTConfig


def tiny_model(seed=0):
    minillm.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))


def one_step(model, optimizer):
    x = minillm.tensor(np.arange(16).reshape(2, 8) % 11)
    _, loss = model(x, x)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def params(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_round_trip_model_optimizer_and_metadata(tmp_path):
    from minillm.optim import AdamW
    model = tiny_model(0)
    opt = AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    one_step(model, opt)
    rng = np.random.default_rng(5)
    rng.integers(0, 10, 3)
    meta = dict(iter_num=7, best_val_loss=1.25, model_config=model.config.to_dict(),
                train_config={"lr": 1e-2, "data": None}, tokenizer={"type": "char", "chars": ["a", "b"]},
                rng={"batch": rng.bit_generator.state, "backend": minillm.backend.get_rng_state()})
    path = save_checkpoint(tmp_path / "c.npz", model, opt, **meta)
    assert path == tmp_path / "c.npz"

    ck = load_checkpoint(path)
    assert ck.meta["format"] == ckpt_mod.FORMAT and ck.meta["version"] == ckpt_mod.VERSION
    assert ck.iter_num == 7 and ck.best_val_loss == 1.25
    assert ck.model_config == model.config.to_dict()
    assert ck.train_config == {"lr": 1e-2, "data": None}
    assert ck.tokenizer == {"type": "char", "chars": ["a", "b"]}
    # the PCG64 state (128-bit integers) survives JSON exactly
    restored = np.random.default_rng(0)
    restored.bit_generator.state = ck["rng"]["batch"]
    assert np.array_equal(restored.integers(0, 1000, 20), rng.integers(0, 1000, 20))

    # parameters: bitwise, same dtype, and in the model's order
    saved = params(model)
    assert list(ck.model_state) == list(saved)
    for k, v in saved.items():
        assert ck.model_state[k].dtype == v.dtype
        np.testing.assert_array_equal(ck.model_state[k], v)

    # a fresh model + optimizer restored from the file continue exactly like the original
    model2 = tiny_model(1)
    opt2 = AdamW(model2.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    model2.load_state_dict(ck.model_state)
    opt2.load_state_dict(ck.optimizer_state)
    one_step(model, opt)
    one_step(model2, opt2)
    for k, v in params(model).items():
        np.testing.assert_array_equal(params(model2)[k], v)

    # the file is a plain npz that loads without pickle
    with np.load(path, allow_pickle=False) as npz:
        assert ckpt_mod.META_KEY in npz.files
        assert any(k.startswith("model/") for k in npz.files)
        assert any(k.startswith("optim/") for k in npz.files)


def test_tree_encoding_keeps_types(tmp_path):
    state = {"state": {0: {"step": 3, "exp_avg": np.ones(3, np.float32), "scale": np.float32(0.5)},
                       1: {"step": 3, "buf": np.zeros((2, 2), np.float64)}},
             "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99), "params": [0, 1], "eps": 1e-8}]}
    save_checkpoint(tmp_path / "c.npz", model_state={"w": np.arange(6.0).reshape(2, 3)}, optimizer_state=state,
                    best_val_loss=math.inf, note="héllo", nested={"a": [1, (2, 3)], "arr": np.arange(3)})
    ck = load_checkpoint(tmp_path / "c.npz")
    st = ck.optimizer_state
    assert set(st["state"]) == {0, 1}                      # int keys stay ints
    assert st["param_groups"][0]["betas"] == (0.9, 0.99)   # tuples stay tuples
    assert st["state"][0]["step"] == 3
    assert isinstance(st["state"][0]["scale"], np.float32) and st["state"][0]["scale"] == 0.5
    assert st["state"][1]["buf"].dtype == np.float64
    assert ck.best_val_loss == math.inf
    assert ck["note"] == "héllo"
    assert ck["nested"]["a"] == [1, (2, 3)]
    np.testing.assert_array_equal(ck["nested"]["arr"], np.arange(3))
    np.testing.assert_array_equal(ck.model_state["w"], np.arange(6.0).reshape(2, 3))


def test_atomic_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model_state={"w": np.zeros(4)}, iter_num=1)
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash before the rename")
    monkeypatch.setattr(ckpt_mod.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, model_state={"w": np.ones(4)}, iter_num=2)
    monkeypatch.undo()

    assert path.read_bytes() == before                # the previous checkpoint is untouched
    assert load_checkpoint(path).iter_num == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]  # and no partial file is left behind


def test_crash_while_writing_arrays(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model_state={"w": np.zeros(4)}, iter_num=1)
    real_savez = np.savez

    def half_write(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write
    monkeypatch.setattr(ckpt_mod.np, "savez", half_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model_state={"w": np.ones(4)}, iter_num=2)
    monkeypatch.setattr(ckpt_mod.np, "savez", real_savez)
    assert load_checkpoint(path).iter_num == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


def test_written_file_has_normal_permissions(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", model_state={"w": np.zeros(2)})
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", model_state={"w": np.random.rand(1000)}, iter_num=3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message


def test_corrupted_member_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", model_state={"w": np.arange(1000.0)}, iter_num=3)
    data = bytearray(path.read_bytes())
    start = data.find(b"\x93NUMPY")                    # inside the first stored array
    data[start + 200:start + 260] = b"\xff" * 60       # flip bytes: the CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_foreign_npz_is_a_clear_error(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, a=np.zeros(3), b=np.ones(2))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "no minillm metadata" in str(info.value)


def test_non_zip_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("just some text, not a checkpoint\n")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "not an .npz" in str(info.value)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(empty)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(CheckpointError, match="not an .npz"):
        load_checkpoint(npy)


def test_wrong_format_or_newer_version(tmp_path):
    def write(meta):
        path = tmp_path / "x.npz"
        np.savez(path, **{ckpt_mod.META_KEY: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
        return path
    with pytest.raises(CheckpointError, match="unknown format"):
        load_checkpoint(write({"format": "something-else", "version": 1}))
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(write({"format": ckpt_mod.FORMAT, "version": 99}))
    path = tmp_path / "bad.npz"
    np.savez(path, **{ckpt_mod.META_KEY: np.frombuffer(b"{not json", dtype=np.uint8)})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_missing_arrays_are_reported(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", model_state={"w": np.zeros(2), "v": np.ones(2)})
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "model/v.npy"}
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        load_checkpoint(tmp_path / "nothere.npz")
