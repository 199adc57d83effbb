"""``OpProfiler``: where the time of a training step goes, op by op.

    with OpProfiler("cpu") as prof:
        loss = model(x, y)[1]; loss.backward()
    prof.add_step(seconds)
    print(prof.table())

``minillm train --profile`` runs it for a few steps and prints the table.
"""
from __future__ import annotations

import time
from collections import defaultdict

from . import backend
from .tensor import Function

__all__ = ["OpProfiler", "synchronize"]


def synchronize(device: str) -> None:
    """Wait for the GPU (so timings measure the work, not its launch); nothing on the CPU."""
    if device != "cpu":
        backend.xp_of_device(device).cuda.runtime.deviceSynchronize()


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


class OpProfiler:
    """Time every ``Function`` forward (``Function.apply``) and backward, per class name.

    ``with OpProfiler(device) as prof: ...`` patches ``Function.apply`` and every ``backward``
    method for the duration of the block. Only the outermost call is timed: ops run inside a
    backward (backward rules are written with tensor ops) count toward that backward. On a GPU
    every timed call synchronizes, which slows the run but attributes the time correctly.
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.forward_s = defaultdict(float)
        self.backward_s = defaultdict(float)
        self.calls = defaultdict(int)
        self.step_s = 0.0
        self.steps = 0
        self._depth = 0
        self._saved = []

    def _timed(self, name, table, fn, *args, **kwargs):
        if self._depth:
            return fn(*args, **kwargs)
        self._depth += 1
        synchronize(self.device)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            synchronize(self.device)
            table[name] += time.perf_counter() - start
            self._depth -= 1

    def __enter__(self):
        profiler = self
        original_apply = Function.__dict__["apply"]
        apply_func = original_apply.__func__

        def apply(cls, *inputs, **options):
            if not profiler._depth:
                profiler.calls[cls.__name__] += 1
            return profiler._timed(cls.__name__, profiler.forward_s, apply_func, cls, *inputs, **options)

        self._saved.append((Function, "apply", original_apply))
        Function.apply = classmethod(apply)
        for cls in [Function, *_all_subclasses(Function)]:
            if "backward" in cls.__dict__:
                original = cls.__dict__["backward"]

                def backward(self_fn, grad, _original=original):
                    return profiler._timed(type(self_fn).__name__, profiler.backward_s, _original, self_fn, grad)

                self._saved.append((cls, "backward", original))
                cls.backward = backward
        return self

    def __exit__(self, *exc):
        for cls, name, original in reversed(self._saved):
            setattr(cls, name, original)
        self._saved.clear()
        return False

    def add_step(self, seconds: float) -> None:
        self.steps += 1
        self.step_s += seconds

    def table(self) -> str:
        """A table sorted by total time: calls, forward, backward and total ms per step, % of the step."""
        steps = max(self.steps, 1)
        names = set(self.forward_s) | set(self.backward_s)
        rows = sorted(((n, self.calls[n] / steps, 1e3 * self.forward_s[n] / steps, 1e3 * self.backward_s[n] / steps)
                       for n in names), key=lambda r: -(r[2] + r[3]))
        step_ms = 1e3 * self.step_s / steps
        ops_ms = sum(r[2] + r[3] for r in rows)
        lines = [f"per-op time over {self.steps} training step(s) on {self.device}: {step_ms:.1f} ms/step",
                 f"{'op':<28}{'calls':>8}{'fwd ms':>10}{'bwd ms':>10}{'total ms':>10}{'%':>7}"]
        for name, calls, fwd, bwd in rows:
            pct = 100 * (fwd + bwd) / step_ms if step_ms else 0.0
            lines.append(f"{name:<28}{calls:>8.0f}{fwd:>10.2f}{bwd:>10.2f}{fwd + bwd:>10.2f}{pct:>6.1f}%")
        other = step_ms - ops_ms
        lines.append(f"{'(optimizer, data, python)':<28}{'':>8}{'':>10}{'':>10}{other:>10.2f}"
                     f"{(100 * other / step_ms if step_ms else 0.0):>6.1f}%")
        return "\n".join(lines)
