"""A tiny training run for the data-parallel tests (tests/test_distributed.py), in-process or under
``mpirun -n N python tests/_dist_worker.py OUT_ROOT``.

``run(out_dir, dtype, ...)`` trains a 1-layer, 16-wide GPT on the embedded plays for ``iters``
steps with ``Trainer`` (global batch ``batch_size``, ``grad_accum`` micro-batches), the model
cast to ``dtype`` right after it is built; rank 0 writes ``last.npz`` and ``log.jsonl`` there
and ``ranks.json``: the largest difference between any rank's parameters and rank 0's.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=12, lr=1e-2, min_lr=1e-3, warmup_iters=5,
            lr_decay_iters=20, max_iters=20, eval_interval=10, eval_iters=2, sample_tokens=0, grad_clip=0.5,
            dropout=0.0, progress=False, overwrite=True)


def run(out_dir, dtype="float64", log=None, **overrides) -> dict:
    from minillm import distributed
    from minillm.train import Trainer
    from minillm.train_config import TrainConfig
    cfg = TrainConfig(**{**TINY, **overrides, "out_dir": str(out_dir)})
    trainer = Trainer(cfg, log=log)
    trainer.model.to(dtype=np.dtype(dtype))
    summary = trainer.train()
    group = trainer.dist
    params = np.concatenate([np.asarray(p.data, dtype=np.float64).ravel() for p in trainer.model.parameters()])
    ref = params.copy()
    distributed.broadcast(ref, 0, group)
    diff = float(np.abs(params - ref).max())
    diffs = group.all_gather_object(diff)
    from minillm import backend
    dropout_draws = group.all_gather_object(float(backend.generator(trainer.device).random()))
    micro = trainer.get_micro_batches()      # the rows this rank computes per step
    rows = group.all_gather_object([int(b[0].shape[0]) for b in micro])
    if group.rank == 0:
        (Path(out_dir) / "ranks.json").write_text(json.dumps({
            "world_size": group.world_size, "max_param_diff_to_rank0": max(diffs), "dropout_draws": dropout_draws, "rows_per_rank": rows,
            "allreduce_calls": trainer.grad_reducer.calls if trainer.grad_reducer else 0}))
    return summary


if __name__ == "__main__":
    root = Path(sys.argv[1])
    run(root / "float64", "float64", batch_size=12)
    run(root / "float32", "float32", batch_size=12)
