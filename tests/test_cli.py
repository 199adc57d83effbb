"""The ``minillm`` command: train and sample in subprocesses, presets, flag overrides, errors."""
import json
import os
import subprocess
import sys

import pytest

from minillm.cli import build_parser, main, train_config_from_args
from minillm.train_config import TrainConfig, load_preset, preset_names

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-iters", "2", "--eval-interval", "3", "--sample-tokens", "10", "--warmup-iters", "1"]


def run_cli(*args, env_extra=None, cache=None):
    env = dict(os.environ)
    if cache is not None:
        env["MINILLM_CACHE_DIR"] = str(cache)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "minillm", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def config_of(*argv):
    return train_config_from_args(build_parser().parse_args(["train", *argv]))


@pytest.fixture
def corpus(tmp_path):
    """A small text (parsing the embedded plays takes seconds in every new process)."""
    path = tmp_path / "corpus.txt"
    lines = ["ROMEO: But soft, what light through yonder window breaks?",
             "JULIET: O Romeo, Romeo, wherefore art thou Romeo?",
             "MERCUTIO: A plague o' both your houses!"]
    path.write_text("\n".join(lines[i % 3] for i in range(300)) + "\n", encoding="utf-8")
    return path


def test_train_then_sample(tmp_path, corpus):
    out = tmp_path / "run"
    result = run_cli("train", "--max-iters", "3", *TINY, "--data", str(corpus), "--out-dir", str(out),
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "val loss" in result.stdout
    for name in ("ckpt.npz", "last.npz", "log.jsonl", "samples.txt", "config.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["max_iters"] == 3 and config["n_layer"] == 1 and config["lr"] == 1e-3  # rest: the cpu preset

    result = run_cli("sample", "--out-dir", str(out), "--max-new-tokens", "20", "--prompt", "ROMEO:",
                     "--seed", "7")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("ROMEO:") and len(text.rstrip("\n")) >= len("ROMEO:") + 1
    again = run_cli("sample", "--out-dir", str(out), "--max-new-tokens", "20", "--prompt", "ROMEO:", "--seed", "7")
    assert again.stdout == text  # the same seed, the same sample

    # --resume continues from last.npz with the run's own settings
    result = run_cli("train", "--resume", "--max-iters", "6", "--out-dir", str(out), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["max_iters"] == 6 and config["n_embd"] == 16 and config["eval_interval"] == 3
    assert config["data"] == str(corpus)


def test_presets_load_with_nanogpt_values():
    assert {"cpu", "gpu"} <= set(preset_names())
    cpu = load_preset("cpu")
    assert {k: cpu[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "dropout")} == \
        dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0)
    assert (cpu["lr"], cpu["min_lr"], cpu["max_iters"], cpu["lr_decay_iters"], cpu["warmup_iters"]) == \
        (1e-3, 1e-4, 2000, 2000, 100)
    assert (cpu["beta2"], cpu["weight_decay"], cpu["grad_clip"], cpu["eval_interval"]) == (0.99, 0.1, 1.0, 250)
    gpu = load_preset("gpu")
    assert (gpu["n_layer"], gpu["n_head"], gpu["n_embd"], gpu["block_size"], gpu["batch_size"]) == (6, 6, 384, 256, 64)
    assert (gpu["dropout"], gpu["lr"], gpu["min_lr"], gpu["max_iters"], gpu["lr_decay_iters"]) == \
        (0.2, 1e-3, 1e-4, 5000, 5000)
    assert (gpu["warmup_iters"], gpu["beta2"], gpu["eval_interval"], gpu["eval_iters"]) == (100, 0.99, 250, 200)
    # the TrainConfig defaults are the cpu preset, and no flags at all means the full cpu preset
    defaults = TrainConfig().to_dict()
    assert all(defaults[k] == v for k, v in cpu.items())
    assert config_of().to_dict() == TrainConfig(**cpu).to_dict()
    assert config_of().max_iters == 2000


def test_flags_override_presets():
    cfg = config_of("--config", "gpu", "--n-layer", "2", "--device", "cpu", "--max_iters", "7", "--no-bias")
    assert cfg.n_layer == 2 and cfg.max_iters == 7 and cfg.device == "cpu" and cfg.bias is False
    assert cfg.n_embd == 384 and cfg.block_size == 256 and cfg.dropout == 0.2   # from the preset
    assert config_of("--lr", "3e-4").lr == 3e-4
    assert config_of("--top-k", "0").top_k is None


def test_config_file_path(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"n_layer": 3, "n_embd": 96, "n_head": 3, "_note": "comments are allowed"}))
    cfg = config_of("--config", str(path), "--n-head", "6")
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.block_size) == (3, 96, 6, 64)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"n_layers": 3}))
    assert main(["train", "--config", str(bad)]) == 2          # a usage error: argparse's exit status
    assert main(["train", "--config", "nosuchpreset"]) == 2


def test_bad_device_is_a_clear_error(tmp_path, corpus):
    result = run_cli("train", "--device", "cuda", "--max-iters", "1", *TINY, "--data", str(corpus),
                     "--out-dir", str(tmp_path / "o"),
                     env_extra={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode != 0
    assert "error" in result.stderr and "cuda" in result.stderr.lower() and "unavailable" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "ckpt.npz").exists()


def test_sample_without_checkpoint_fails_cleanly(tmp_path, capsys):
    assert main(["sample", "--out-dir", str(tmp_path / "none")]) == 1
    assert "no checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    assert main(["sample", "--checkpoint", str(junk)]) == 1
    assert "not an .npz" in capsys.readouterr().err


def test_help_lists_flags():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for flag in ("--data", "--tokenizer", "--vocab-size", "--n-layer", "--lr", "--min-lr", "--grad-clip",
                 "--eval-interval", "--device", "--seed", "--out-dir", "--resume", "--config", "--objective",
                 "--profile"):
        assert flag in text


def test_resume_takes_the_runs_settings_but_not_its_switches(tmp_path, corpus, monkeypatch):
    from minillm.train import Trainer
    monkeypatch.setenv("MINILLM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    first = config_of(*TINY, "--data", str(corpus), "--max-iters", "2", "--profile", "--profile-steps", "1",
                      "--out-dir", str(out), "--no-progress")
    Trainer(first, log=None).train()
    cfg = config_of("--resume", "--out-dir", str(out), "--max-iters", "4")
    assert cfg.resume and not cfg.profile and cfg.progress is None     # switches of the first call
    assert (cfg.n_embd, cfg.data, cfg.eval_interval, cfg.max_iters) == (16, str(corpus), 3, 4)
    assert config_of("--resume", "--out-dir", str(out), "--config", "gpu").n_embd == 384  # explicit wins
