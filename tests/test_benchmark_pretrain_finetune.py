"""The pre-train → fine-tune experiment of benchmarks/pretrain_finetune.py, on tiny settings."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import pretrain_finetune as B  # noqa: E402


def test_majority_baseline():
    assert B.majority_baseline([1, 1, 2], [1, 2, 2, 1]) == 0.5


def test_run_experiment_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_CACHE_DIR", str(tmp_path / "cache"))
    cfg = B.ExperimentConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16, block_size=24, pretrain_steps=2,
                             pretrain_batch_size=2, max_corpus_chars=20_000, fractions=(0.01,), finetune_steps=(2,),
                             finetune_batch_size=4, seeds=(0,), max_val_examples=12, out_dir=str(tmp_path))
    res = B.run_experiment(cfg, log=None)
    assert set(res["rows"]) == {"scratch", "causal", "mlm", "span"}
    for row in res["rows"].values():
        assert 0.0 <= row["accuracy"]["0.01"] <= 1.0
    assert (tmp_path / "mlm.npz").exists() and (tmp_path / "span.npz").exists()
    table = B.results_markdown(res)
    assert "masked LM (BERT)" in table and "majority class" in table
    balanced = B.results_markdown(res, "balanced_accuracy")
    assert balanced.splitlines()[-1].endswith(f"| {1 / sum(c > 0 for c in res['val_class_counts']):.3f} |")
    with pytest.raises(ValueError, match="metric"):
        B.results_markdown(res, "f1")
    messages = []
    again = B.run_experiment(cfg, log=messages.append)   # reuses the checkpoints
    assert sum("reusing the pre-trained backbone" in m for m in messages) == 3
    assert again["pretraining"]["mlm"]["val"] == res["pretraining"]["mlm"]["val"]
