"""``minillm finetune`` and ``minillm sample`` on its output, run as subprocesses."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minillm as mm
from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.data import CharTokenizer
from minillm.models.gpt import GPT, GPTConfig

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n\n") * 30


def cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "minillm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    (root / "text.txt").write_text(TEXT)
    tok = CharTokenizer.from_text(TEXT)
    mm.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16))
    save_checkpoint(root / "base" / "ckpt.npz", model, model_config=model.config.to_dict(), tokenizer=tok.to_dict(),
                    train_config={"objective": "causal"}, iter_num=0)
    return root


def finetune(base, out, method, *extra):
    return cli("finetune", "--init-from", base / "base", "--method", method, "--data", base / "text.txt",
               "--out-dir", out, "--max-iters", 3, "--batch-size", 2, "--eval-iters", 1, *extra)


def test_lora_saves_only_the_adapter_and_sample_merges_it(base, tmp_path):
    out = tmp_path / "lora"
    r = finetune(base, out, "lora", "--r", 2, "--lora-alpha", 4, "--target-modules", "q_proj", "v_proj", "out_proj",
                 "--lr", "0.05")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.npz", "finetune.json"]
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 2
    assert cfg["base_model_name_or_path"] == str((base / "base" / "ckpt.npz").resolve())
    with np.load(out / "adapter_model.npz", allow_pickle=False) as npz:
        assert npz.files and all("lora_" in k for k in npz.files)
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["method"] == "lora" and summary["trainable_params"] == 2 * (4 * 16 + 32 * 2 + 2 * 16 + 16 * 2)
    # sampling: the base checkpoint + the adapter, LoRA merged into a plain GPT
    from minillm.finetune_cli import load_adapter_run
    model, _, _ = load_adapter_run(out)
    assert type(model) is GPT
    base_w = load_checkpoint(base / "base" / "ckpt.npz").model_state["blocks.0.attn.out_proj.weight"]
    assert np.abs(model.blocks[0].attn.out_proj.weight.numpy() - base_w).max() > 0     # ΔW folded in
    s = cli("sample", "--out-dir", out, "--prompt", "ROMEO:", "--max-new-tokens", 20, "--seed", 1)
    assert s.returncode == 0, s.stderr
    assert s.stdout.startswith("ROMEO:") and len(s.stdout) >= 26


@pytest.mark.parametrize("method", ["full", "lp-ft", "adapter", "reft"])
def test_other_methods_write_a_sampleable_result(base, tmp_path, method):
    out = tmp_path / method
    r = finetune(base, out, method, "--probe-steps", 2)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in out.iterdir())
    if method in ("full", "lp-ft"):
        assert files == ["ckpt.npz", "finetune.json"]
        assert load_checkpoint(out / "ckpt.npz").tokenizer
    else:
        assert files == ["adapter_config.json", "adapter_model.npz", "finetune.json"]
    s = cli("sample", "--out-dir", out, "--max-new-tokens", 5)
    assert s.returncode == 0, s.stderr


def test_unknown_method_is_a_usage_error(base, tmp_path):
    r = finetune(base, tmp_path / "x", "prefix-tuning")
    assert r.returncode == 2 and "invalid choice: 'prefix-tuning'" in r.stderr and "lora" in r.stderr
    assert not (tmp_path / "x").exists()


def test_missing_or_corrupt_checkpoint_is_a_clear_error_and_writes_nothing(base, tmp_path):
    r = cli("finetune", "--init-from", tmp_path / "nowhere", "--method", "full", "--out-dir", tmp_path / "o1")
    assert r.returncode == 1 and "checkpoint not found" in r.stderr and "nowhere" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("finetune", "--init-from", tmp_path / "empty", "--method", "full", "--out-dir", tmp_path / "o1")
    assert r.returncode == 1 and "no checkpoint in" in r.stderr
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    r = cli("finetune", "--init-from", bad, "--method", "lora", "--out-dir", tmp_path / "o2")
    assert r.returncode == 1 and "cannot load checkpoint" in r.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_bad_lora_rank_and_occupied_out_dir(base, tmp_path):
    r = finetune(base, tmp_path / "r", "lora", "--r", 99)
    assert r.returncode == 1 and "larger than the layer" in r.stderr and not (tmp_path / "r").exists()
    r = finetune(base, tmp_path / "r0", "lora", "--r", 0)
    assert r.returncode == 1 and "positive integer" in r.stderr
    r = finetune(base, tmp_path / "t", "lora", "--target-modules", "c_attn")
    assert r.returncode == 1 and "c_attn" in r.stderr and "q_proj" in r.stderr
    out = tmp_path / "twice"
    assert finetune(base, out, "linear-probe").returncode == 0
    r = finetune(base, out, "linear-probe")
    assert r.returncode == 1 and "already holds" in r.stderr
    assert finetune(base, out, "lora", "--overwrite").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.npz", "finetune.json"]
