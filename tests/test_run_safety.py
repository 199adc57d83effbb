"""Issue 9: the CLI never loses a run and never fails silently.

Each test names the item of the issue it covers. CLI behaviour is tested through a subprocess,
as a user runs it (``python -m minillm ...``); a few checks of the library pieces run in-process.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from minillm.checkpoint import CheckpointError, load_checkpoint
from minillm.rundir import LOCK_FILE, RunLock, repair_log
from minillm.train import Trainer
from minillm.train_config import ConfigError, TrainConfig

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-iters", "2", "--eval-interval", "3", "--sample-tokens", "10", "--warmup-iters", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def token_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MINILLM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "token-cache"))


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minillm", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def one_error_line(result, status):
    """The CLI failed with ``status`` and said so in one line, without a traceback."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("minillm") and "error:" in lines[0], result.stderr
    return lines[0]


def write_corpus(path):
    lines = ["ROMEO: But soft, what light through yonder window breaks?",
             "JULIET: O Romeo, Romeo, wherefore art thou Romeo?",
             "MERCUTIO: A plague o' both your houses!"]
    path.write_text("\n".join(lines[i % 3] for i in range(300)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 6-iteration run (evaluations at 0, 3, 6), made once; tests copy it."""
    base = tmp_path_factory.mktemp("trained")
    corpus = write_corpus(base / "corpus.txt")
    out = base / "run"
    env = dict(os.environ, MINILLM_CACHE_DIR=str(base / "cache"))
    result = subprocess.run([sys.executable, "-m", "minillm", "train", *TINY, "--max-iters", "6", "--data",
                             str(corpus), "--out-dir", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return corpus, out


@pytest.fixture
def run_dir(trained, tmp_path):
    corpus, out = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    return corpus, copy


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def tiny_config(out_dir, corpus, **changes):
    settings = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, dropout=0.1, lr=3e-3, min_lr=3e-4,
                    warmup_iters=1, max_iters=10, lr_decay_iters=10, eval_interval=5, eval_iters=2, sample_tokens=0,
                    progress=False, seed=123, data=str(corpus), out_dir=str(out_dir))
    settings.update(changes)
    return TrainConfig(**settings)


# ------------------------------------------------------------------ 1. no silent overwrite
def test_item1_fresh_run_refuses_an_out_dir_holding_a_run(run_dir):
    corpus, out = run_dir
    before = snapshot(out)
    # an absurd batch size: the run would crash at once, after emptying the log
    result = run_cli("train", *TINY, "--batch-size", "100000000", "--max-iters", "3", "--data", corpus,
                     "--out-dir", out)
    line = one_error_line(result, 2)
    assert str(out) in line and "already holds a run" in line and "--overwrite" in line and "--resume" in line
    assert "last.npz (iteration 6)" in line and "log.jsonl" in line
    assert snapshot(out) == before                       # not one byte changed

    # --overwrite replaces it: only the new run's files and records remain
    result = run_cli("train", *TINY, "--max-iters", "2", "--eval-interval", "2", "--sample-tokens", "0",
                     "--data", corpus, "--out-dir", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["kind"] == "eval"] == [0, 2]
    assert [r["iter"] for r in records if r["kind"] == "train"] == [1, 2]
    assert json.loads((out / "config.json").read_text())["max_iters"] == 2
    assert load_checkpoint(out / "last.npz").iter_num == 2
    assert not (out / "samples.txt").exists()            # the old run's sample went with it


def test_item1_empty_or_unrelated_directory_is_fine(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    Trainer(tiny_config(out, corpus, max_iters=1, eval_interval=1), log=None).train()
    assert (out / "notes.txt").read_text() == "mine" and (out / "last.npz").exists()
    with pytest.raises(ConfigError, match="--resume .* --overwrite"):
        Trainer(tiny_config(out, corpus, resume=True, overwrite=True), log=None)


# ------------------------------------------------------------------ 2. one run per out-dir
def test_item2_second_run_fails_at_once_naming_the_holder(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    with RunLock(out) as lock:
        assert lock.held and json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
        result = run_cli("train", *TINY, "--max-iters", "3", "--data", corpus, "--out-dir", out)
        line = one_error_line(result, 1)
        assert f"process {os.getpid()}" in line and "in use" in line and str(out) in line
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]     # nothing written
        with pytest.raises(Exception, match=f"process {os.getpid()}"):
            RunLock(out).acquire()                                       # also within one process
    assert not (out / LOCK_FILE).exists()                                # released and removed


def test_item2_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": "here", "started": "earlier"}))
    result = run_cli("train", *TINY, "--max-iters", "3", "--sample-tokens", "0", "--data", corpus, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert f"process {dead.pid}" in result.stdout and "no longer running" in result.stdout
    assert not (out / LOCK_FILE).exists()


def test_item2_and_4_two_live_runs_and_sigterm_saves(tmp_path):
    """A real second process is refused while the first trains; SIGTERM then saves the first."""
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "minillm", "train", *TINY, "--max-iters", "100000",
                              "--eval-interval", "100000", "--data", str(corpus), "--out-dir", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = out / "log.jsonl"
        for _ in range(600):                      # until it has taken a few steps
            if log.exists() and log.read_text().count('"train"') >= 3:
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = run_cli("train", *TINY, "--max-iters", "3", "--data", corpus, "--out-dir", out)
        line = one_error_line(second, 1)
        assert f"process {first.pid}" in line
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "SIGTERM" in stderr and "--resume" in stderr
    ck = load_checkpoint(out / "last.npz")
    trained_iters = [json.loads(x)["iter"] for x in log.read_text().splitlines() if '"train"' in x]
    assert ck.iter_num == trained_iters[-1] >= 3          # saved at the iteration it stopped at
    assert not (out / LOCK_FILE).exists()


# ------------------------------------------------------------------ 3. eval records, temp files, fallback
def test_item3_eval_record_is_written_before_the_checkpoint(tmp_path, monkeypatch):
    """A kill between the two writes cannot lose the record: it is in the log (and in the
    checkpoint's metadata) before last.npz names its iteration."""
    from minillm import train as train_mod
    corpus = write_corpus(tmp_path / "corpus.txt")
    real_save = train_mod.save_checkpoint
    seen = []

    def checking_save(path, *args, **meta):
        lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        seen.append((path.name, meta["iter_num"], last["kind"], last["iter"]))
        assert [r["iter"] for r in meta["eval_records"]][-1] == meta["iter_num"]
        return real_save(path, *args, **meta)
    monkeypatch.setattr(train_mod, "save_checkpoint", checking_save)
    Trainer(tiny_config(tmp_path / "run", corpus, max_iters=6, eval_interval=3), log=None).train()
    assert ("last.npz", 3, "eval", 3) in seen and ("last.npz", 6, "eval", 6) in seen
    assert all(kind == "eval" and it == n for _, n, kind, it in seen)


def test_item3_resume_puts_back_lost_eval_records_and_removes_temp_files(run_dir):
    corpus, out = run_dir
    log = out / "log.jsonl"
    full = log.read_text().splitlines()
    # the log lost its last evaluation (e.g. a power cut after the checkpoint was on disk) and
    # a partial line; a killed atomic write left its temporary file
    kept = [line for line in full if not ('"eval"' in line and '"iter": 6' in line)]
    log.write_text("\n".join(kept) + '\n{"kind": "train", "it')
    (out / ".last.npz.k2j3h4g5.tmp").write_bytes(b"PK\x03\x04" + b"\0" * 1000)
    (out / ".notes.txt.k2j3h4g5.tmp").write_text("not ours")
    result = run_cli("train", "--resume", "--max-iters", "9", "--out-dir", out)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iter"] for r in records if r["kind"] == "eval"] == [0, 3, 6, 9]
    assert [r["iter"] for r in records if r["kind"] == "train"] == list(range(1, 10))
    assert json.loads([line for line in full if '"eval"' in line and '"iter": 6' in line][0]) in records
    assert not (out / ".last.npz.k2j3h4g5.tmp").exists()
    assert (out / ".notes.txt.k2j3h4g5.tmp").exists()      # not a run file: not ours to remove


def test_repair_log_orders_records():
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "log.jsonl"
        lines = [{"kind": "eval", "iter": 0}, {"kind": "train", "iter": 1}, {"kind": "train", "iter": 2},
                 {"kind": "train", "iter": 3}, {"kind": "train", "iter": 4}]
        path.write_text("".join(json.dumps(r) + "\n" for r in lines))
        repair_log(path, 3, [{"kind": "eval", "iter": 0}, {"kind": "eval", "iter": 2}])
        got = [(r["kind"], r["iter"]) for r in map(json.loads, path.read_text().splitlines())]
        assert got == [("eval", 0), ("train", 1), ("train", 2), ("eval", 2), ("train", 3)]


def flip_central_directory_byte(path):
    """Damage the archive's central directory (the compression method of its first entry)."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")                      # the first central directory entry
    data[pos + 10] ^= 0x5A                              # its compression method
    path.write_bytes(bytes(data))


def test_item3_corrupt_last_falls_back_to_ckpt(run_dir):
    corpus, out = run_dir
    best = load_checkpoint(out / "ckpt.npz").iter_num
    flip_central_directory_byte(out / "last.npz")
    result = run_cli("sample", "--out-dir", out, "--checkpoint", "last", "--max-new-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warning = [line for line in result.stderr.splitlines() if "warning" in line][0]
    assert str(out / "last.npz") in warning and str(out / "ckpt.npz") in warning

    result = run_cli("train", "--resume", "--max-iters", "9", "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert f"resuming from {out / 'ckpt.npz'} at iteration {best}" in result.stdout
    assert str(out / "last.npz") in result.stderr and result.stderr.count("warning") == 1, result.stderr
    assert load_checkpoint(out / "last.npz").iter_num == 9

    # both unreadable: one error naming both
    flip_central_directory_byte(out / "last.npz")
    flip_central_directory_byte(out / "ckpt.npz")
    line = one_error_line(run_cli("sample", "--out-dir", out), 1)
    assert str(out / "last.npz") in line and str(out / "ckpt.npz") in line


# ------------------------------------------------------------------ 4. save on SIGINT/SIGTERM
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_item4_signal_saves_and_resume_is_bit_identical(tmp_path, monkeypatch, signum):
    from minillm.rundir import RunInterrupted
    corpus = write_corpus(tmp_path / "corpus.txt")
    full = Trainer(tiny_config(tmp_path / "full", corpus), log=None)
    full.train()

    real_step = Trainer.get_batch

    def get_batch(self, split="train", rng=None):
        if rng is None and self.iter_num == 3:
            os.kill(os.getpid(), signum)              # arrives in the middle of iteration 4
        return real_step(self, split, rng)
    monkeypatch.setattr(Trainer, "get_batch", get_batch)
    with pytest.raises(RunInterrupted) as info:
        Trainer(tiny_config(tmp_path / "cut", corpus), log=None).train()
    monkeypatch.undo()
    assert info.value.signum == signum and info.value.iteration == 4
    assert load_checkpoint(tmp_path / "cut" / "last.npz").iter_num == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # handlers restored

    resumed = Trainer(tiny_config(tmp_path / "cut", corpus, resume=True), log=None)
    resumed.train()
    for k, v in full.model.state_dict().items():
        assert np.array_equal(resumed.model.state_dict()[k].numpy(), v.numpy()), k
    a = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "ms_per_iter"} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)


# ------------------------------------------------------------------ 5. JSON config types
def test_item5_json_config_types_are_checked_up_front(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    config = tmp_path / "mine.json"
    config.write_text(json.dumps({"decay_lr": "false", "bias": "no", "lr": "0.001", "sample_prompt": 3,
                                  "seed": "abc", "max_iters": 3}))
    result = run_cli("train", "--config", config, *TINY, "--data", corpus, "--out-dir", tmp_path / "out")
    line = one_error_line(result, 2)
    assert str(config) in line
    for expected in ("decay_lr must be a boolean (true or false), got 'false' (str)",
                     "bias must be a boolean (true or false), got 'no' (str)",
                     "lr must be a number, got '0.001' (str)",
                     "sample_prompt must be a string, got 3 (int)",
                     "seed must be an integer, got 'abc' (str)"):
        assert expected in line, line
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="decay_lr must be a boolean"):
        TrainConfig(decay_lr="false")


# ------------------------------------------------------------------ 6. non-finite and inconsistent values
@pytest.mark.parametrize("flags,expected", [
    (["--grad-clip", "nan"], "grad_clip must be a finite number"),
    (["--temperature", "nan"], "temperature must be a finite number"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--weight-decay", "nan"], "weight_decay must be a finite number"),
    (["--lr", "1e-5"], "min_lr (0.0001) is greater than lr (1e-05)"),
])
def test_item6_non_finite_and_inconsistent_values_are_refused(tmp_path, flags, expected, capsys):
    from minillm.cli import main
    assert main(["train", *TINY, *flags, "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_item6_through_the_cli_and_sample_flags(run_dir):
    corpus, out = run_dir
    one_error_line(run_cli("train", *TINY, "--lr", "inf", "--out-dir", out.parent / "o"), 2)
    for flags, expected in ((["--top-k", "-5"], "--top-k must be >= 0"),
                            (["--temperature", "nan"], "--temperature must be a finite number > 0"),
                            (["--max-new-tokens", "-3"], "--max-new-tokens must be >= 0")):
        line = one_error_line(run_cli("sample", "--out-dir", out, *flags), 2)
        assert expected in line


def test_item6_bpe_vocab_size_records_what_the_corpus_gives(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abab cdcd abab cdcd efef\n" * 40, encoding="utf-8")
    with pytest.warns(UserWarning, match=r"only \d+ tokens, not the 100000000"):
        trainer = Trainer(tiny_config(tmp_path / "o", corpus, tokenizer="bpe", vocab_size=100_000_000, block_size=8,
                                      max_iters=1, eval_interval=1), log=None)
    real = trainer.tokenizer.vocab_size
    assert 257 <= real < 300 and trainer.config.vocab_size == real == trainer.model_config.vocab_size
    trainer.train()
    assert json.loads((tmp_path / "o" / "config.json").read_text())["vocab_size"] == real
    assert load_checkpoint(tmp_path / "o" / "last.npz").train_config["vocab_size"] == real


# ------------------------------------------------------------------ 7. resume flags
@pytest.mark.parametrize("flags,expected", [
    (["--tokenizer", "bpe"], "tokenizer='bpe' differs from the run's 'char'"),
    (["--objective", "mlm"], "objective='mlm' differs from the run's 'causal'"),
    (["--seed", "7"], "seed=7 differs from the run's 1337"),
    (["--data", "OTHER"], "the data changed"),
])
def test_item7_resume_refuses_settings_it_cannot_honour(run_dir, flags, expected):
    corpus, out = run_dir
    if flags[-1] == "OTHER":
        other = out.parent / "other.txt"
        other.write_text(corpus.read_text().replace("Romeo", "Tybalt"))
        flags = ["--data", other]
    before = snapshot(out)
    line = one_error_line(run_cli("train", "--resume", "--max-iters", "9", *flags, "--out-dir", out), 2)
    assert expected in line and str(out) in line
    assert snapshot(out) == before


def test_item7_resume_honours_the_same_data_under_another_name(run_dir):
    corpus, out = run_dir
    copy = out.parent / "copy.txt"
    shutil.copy(corpus, copy)
    result = run_cli("train", "--resume", "--max-iters", "9", "--data", copy, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["data"] == str(copy)


# ------------------------------------------------------------------ 8. checked before the first step
def test_item8_unencodable_sample_prompt_fails_before_training(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "out"
    line = one_error_line(run_cli("train", *TINY, "--max-iters", "50", "--sample-prompt", "ÆØ€", "--data", corpus,
                                  "--out-dir", out), 2)
    assert "sample_prompt" in line and "'Æ'" in line
    assert not (out / "log.jsonl").exists() and not (out / "last.npz").exists()


# ------------------------------------------------------------------ 11. messages, not tracebacks
def test_item11_sample_on_an_mlm_run_is_one_line(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "mlm"
    result = run_cli("train", *TINY, "--objective", "mlm", "--max-iters", "1", "--eval-interval", "1",
                     "--data", corpus, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    line = one_error_line(run_cli("sample", "--out-dir", out), 2)
    assert "'mlm'" in line and "causal" in line


def test_item11_damaged_checkpoints_are_one_line(run_dir):
    corpus, out = run_dir
    path = out / "last.npz"
    flip_central_directory_byte(path)
    line = one_error_line(run_cli("sample", "--checkpoint", path), 1)
    assert str(path) in line and "corrupted" in line
    # a member holding bytes that are not .npy
    bad = out / "member.npz"
    with zipfile.ZipFile(out / "ckpt.npz") as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"not an array at all" if name.startswith("model/wte") else src.read(name))
    with pytest.raises(CheckpointError, match="does not hold .npy bytes"):
        load_checkpoint(bad)
    line = one_error_line(run_cli("sample", "--checkpoint", bad), 1)
    assert str(bad) in line and "model/wte" in line
    # a truncated file
    cut = out / "cut.npz"
    cut.write_bytes((out / "ckpt.npz").read_bytes()[:-100])
    line = one_error_line(run_cli("sample", "--checkpoint", cut), 1)
    assert str(cut) in line and "truncated" in line


INTERRUPT_DURING_IMPORT = r"""
import sys, importlib.abc
target = sys.argv[1]
class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, module=None):
        if name == target:
            raise KeyboardInterrupt          # what Ctrl-C does while `name` is being imported
        return None
sys.meta_path.insert(0, Interrupt())
sys.argv = [sys.argv[2], "train", "--max-iters", "1"]
from minillm.cli import main                 # what the `minillm` console script does
sys.exit(main())
"""


@pytest.mark.parametrize("module", ["numpy", "minillm.ops", "minillm.train", "minillm.objectives"])
def test_item11_ctrl_c_during_import_is_one_line(tmp_path, module):
    script = tmp_path / "launch.py"
    script.write_text(INTERRUPT_DURING_IMPORT)
    result = subprocess.run([sys.executable, str(script), module, str(tmp_path / "bin" / "minillm")],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.strip() == "minillm: interrupted", result.stderr
    if module not in ("numpy", "minillm.ops"):
        return            # imported inside cli.main, which handles Ctrl-C itself
    # a program that imports minillm keeps Python's own behaviour
    result = subprocess.run([sys.executable, str(script), module, str(tmp_path / "myprogram.py")],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0 and "KeyboardInterrupt" in result.stderr


def test_item11_unexpected_errors_keep_their_traceback(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    code = ("import sys, minillm.train as t\n"
            "def boom(self, *a, **k): raise RuntimeError('a bug')\n"
            "t.Trainer.evaluate = boom\n"
            "from minillm.cli import main\n"
            f"sys.exit(main(['train', *{TINY!r}, '--max-iters', '1', '--data', {str(corpus)!r}, "
            f"'--out-dir', {str(tmp_path / 'o')!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" in result.stderr and "RuntimeError: a bug" in result.stderr
    assert not (tmp_path / "o" / LOCK_FILE).exists()      # the lock went with the failed run


def test_item4_second_ctrl_c_stops_at_once_and_ignored_signals_stay_ignored():
    from minillm.rundir import StopSignals
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT and stop.name == "SIGINT"     # the loop saves, then stops
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)                          # the user insists
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)              # e.g. a background job
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum is None
    finally:
        signal.signal(signal.SIGINT, previous)


def test_item4_ctrl_c_after_training_stops_the_sample_at_once(tmp_path, monkeypatch):
    """Once the last checkpoint is written, Ctrl-C is an ordinary KeyboardInterrupt again (a long
    final sample is not waited for)."""
    from minillm import train as train_mod
    corpus = write_corpus(tmp_path / "corpus.txt")

    def slow_sample(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the sample went on after Ctrl-C")
    monkeypatch.setattr(train_mod, "generate_text", slow_sample)
    with pytest.raises(KeyboardInterrupt) as info:
        Trainer(tiny_config(tmp_path / "run", corpus, max_iters=2, eval_interval=2, sample_tokens=5), log=None).train()
    assert type(info.value) is KeyboardInterrupt
    assert load_checkpoint(tmp_path / "run" / "last.npz").iter_num == 2
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_item1_grow_refuses_an_out_dir_holding_a_run(run_dir):
    corpus, out = run_dir
    small = out.parent / "small"
    shutil.copytree(out, small)
    before = snapshot(out)
    line = one_error_line(run_cli("grow", "--init-from", small, "--n-layer", "2", "--out-dir", out), 2)
    assert str(out) in line and "already holds a run" in line and "--overwrite" in line
    assert snapshot(out) == before
    result = run_cli("grow", "--init-from", small, "--n-layer", "2", "--out-dir", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(out / "last.npz").model_config["n_layer"] == 2
    assert not (out / "ckpt.npz").exists() and not (out / "log.jsonl").exists()   # the old run is gone


def test_item2_resume_refuses_a_checkpoint_replaced_after_loading(tmp_path):
    """Two resumes started together: the one that takes the lock second must not continue from
    the state it loaded before the other one trained the run further."""
    from minillm.rundir import OutDirError
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    Trainer(tiny_config(out, corpus, max_iters=2, eval_interval=2), log=None).train()
    late = Trainer(tiny_config(out, corpus, max_iters=6, eval_interval=2, resume=True), log=None)
    Trainer(tiny_config(out, corpus, max_iters=4, eval_interval=2, resume=True), log=None).train()
    with pytest.raises(OutDirError, match="changed after this run loaded it"):
        late.train()
    assert load_checkpoint(out / "last.npz").iter_num == 4
