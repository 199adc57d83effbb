"""Issue 9: fault injection. Kill a run at random moments (SIGKILL, SIGINT, SIGTERM) and resume
it; flip bytes of a checkpoint and load it.

After every kill: whatever checkpoint the out-dir holds loads; ``--resume`` (or, when the run
was killed before its first checkpoint, ``--overwrite``) finishes the run with parameters
bit-identical to an uninterrupted run; log.jsonl holds every evaluation record of the
uninterrupted run, each once, and every training record once; no temporary or lock file
remains.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minillm.checkpoint import CheckpointError, load_checkpoint
from minillm.rundir import LOCK_FILE

MAX_ITERS = 24
ARGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-iters", "2", "--eval-interval", "4", "--sample-tokens", "0", "--warmup-iters", "2",
        "--dropout", "0.1", "--max-iters", str(MAX_ITERS), "--no-progress"]


def write_corpus(path):
    lines = ["ROMEO: But soft, what light through yonder window breaks?",
             "JULIET: O Romeo, Romeo, wherefore art thou Romeo?",
             "MERCUTIO: A plague o' both your houses!"]
    path.write_text("\n".join(lines[i % 3] for i in range(300)) + "\n", encoding="utf-8")
    return path


def cli(*args):
    return [sys.executable, "-m", "minillm", *map(str, args)]


def records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def comparable(recs):
    """The records without their timings, which differ from run to run."""
    return [{k: v for k, v in r.items() if k != "ms_per_iter"} for r in recs]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    env = dict(os.environ, MINILLM_CACHE_DIR=str(base / "cache"))
    corpus = write_corpus(base / "corpus.txt")
    reference = base / "reference"
    start = time.perf_counter()
    proc = subprocess.Popen(cli("train", *ARGS, "--data", corpus, "--out-dir", reference), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (reference / "log.jsonl").exists() and proc.poll() is None:
        time.sleep(0.005)
    startup = time.perf_counter() - start               # until the run starts writing its log
    final = f'"kind": "eval", "iter": {MAX_ITERS},'
    while proc.poll() is None and final not in (reference / "log.jsonl").read_text():
        time.sleep(0.005)
    training = time.perf_counter() - start - startup    # until its last evaluation
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return base, env, corpus, reference, (startup, training)


def test_kills_at_random_moments_never_lose_the_run(setup):
    base, env, corpus, reference, (startup, training) = setup
    ref_ck = load_checkpoint(reference / "last.npz")
    ref_log = records(reference)
    assert ref_ck.iter_num == MAX_ITERS
    rng = random.Random(9)
    plan = [signal.SIGKILL, signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGTERM]
    outcomes = []
    for trial, signum in enumerate(plan):
        out = base / f"trial{trial}"
        proc = subprocess.Popen(cli("train", *ARGS, "--data", corpus, "--out-dir", out), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # half of the kills land anywhere in the run (start-up included), half once it trains
        if trial % 2:
            deadline = time.monotonic() + 60
            while not (out / "log.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.9 * training))
        else:
            time.sleep(rng.uniform(0.0 if signum == signal.SIGKILL else 0.2, startup + 0.5 * training))
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
        where = f"trial {trial}: {signal.Signals(signum).name}"
        # (a signal that lands while the interpreter itself starts, before any minillm code runs,
        # gets the interpreter's own "Fatal Python error: init_..." report: not ours to change)
        interpreter_start = stderr.startswith("Fatal Python error: init_")
        assert "Traceback" not in stderr or interpreter_start, f"{where}: {stderr}"
        if signum == signal.SIGINT and not interpreter_start:
            assert proc.returncode in (130, -signal.SIGINT, 0), f"{where}: {proc.returncode} {stderr}"
        if signum == signal.SIGTERM:
            assert proc.returncode in (143, -signal.SIGTERM, 0), f"{where}: {proc.returncode} {stderr}"

        # the out-dir is loadable: every checkpoint in it
        present = [name for name in ("last.npz", "ckpt.npz") if (out / name).exists()]
        for name in present:
            load_checkpoint(out / name)
        stopped_at = load_checkpoint(out / "last.npz").iter_num if "last.npz" in present else None
        if signum != signal.SIGKILL and proc.returncode in (130, 143) and "stopped by" in stderr:
            # SIGINT/SIGTERM in the loop: saved at the iteration it stopped at
            trained = [r["iter"] for r in records(out) if r["kind"] == "train"]
            assert stopped_at == (trained[-1] if trained else 0), where

        if proc.returncode == 0:
            resume = None                                  # finished before the signal
        elif present:
            resume = subprocess.run(cli("train", "--resume", "--out-dir", out), env=env, capture_output=True,
                                    text=True, timeout=300)
        else:                                              # killed before its first checkpoint
            if out.exists() and (out / "log.jsonl").exists():
                refused = subprocess.run(cli("train", "--resume", "--out-dir", out), env=env, capture_output=True,
                                         text=True, timeout=300)
                assert refused.returncode == 1 and "--overwrite" in refused.stderr, refused.stderr
            resume = subprocess.run(cli("train", *ARGS, "--data", corpus, "--out-dir", out, "--overwrite"),
                                    env=env, capture_output=True, text=True, timeout=300)
        if resume is not None:
            assert resume.returncode == 0, f"{where}: {resume.stderr}"
        outcomes.append((where, proc.returncode, stopped_at, stderr.strip().splitlines()[-1:]))

        # bit-identical parameters and optimizer state, every record once, no leftovers
        ck = load_checkpoint(out / "last.npz")
        assert ck.iter_num == MAX_ITERS, where
        for k, v in ref_ck.model_state.items():
            assert np.array_equal(ck.model_state[k], v), f"{where}: {k} differs"
        assert comparable(records(out)) == comparable(ref_log), where
        leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == LOCK_FILE]
        assert not leftovers, f"{where}: {leftovers}"
    # the plan exercised resuming from a checkpoint written because of a signal
    assert any(stopped is not None for _, _, stopped, _ in outcomes), outcomes


def test_checkpoint_byte_flips_load_identical_data_or_fail_clearly(setup):
    """250 single-bit flips anywhere in a trainer checkpoint (half of them in the zip
    central directory and the metadata at the end): each load gives the identical data or a
    CheckpointError naming the file."""
    base, env, corpus, reference, _ = setup
    good = load_checkpoint(reference / "last.npz")
    data = (reference / "last.npz").read_bytes()
    path = base / "flipped.npz"
    rng = random.Random(1)
    outcomes = {"identical": 0, "error": 0}
    for i in range(250):
        buf = bytearray(data)
        pos = rng.randrange(len(buf)) if i % 2 else rng.randrange(max(0, len(buf) - 4000), len(buf))
        buf[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(buf))
        try:
            ck = load_checkpoint(path)
        except CheckpointError as exc:
            assert str(path) in str(exc), exc
            outcomes["error"] += 1
            continue
        assert list(ck.model_state) == list(good.model_state), pos
        for k, v in good.model_state.items():
            assert ck.model_state[k].dtype == v.dtype and np.array_equal(ck.model_state[k], v), (pos, k)
        assert repr(ck.meta) == repr(good.meta) and repr(ck.optimizer_state) == repr(good.optimizer_state), pos
        outcomes["identical"] += 1
    assert outcomes["error"] > 100, outcomes
