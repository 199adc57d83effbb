"""Early stopping: stop training when the validation metric has stopped improving, and go back
to the weights of its best evaluation (Morgan & Bourlard 1990; Prechelt, "Early Stopping — But
When?", 1998). It regularizes by limiting how far the weights can travel from their
initialization: for a quadratic loss, stopping after t steps of size η acts like an L2 penalty
of strength ≈ 1/(η·t) (Goodfellow, Bengio & Courville, *Deep Learning*, §7.8).
"""
from __future__ import annotations

import math
from collections import OrderedDict


def copy_state_dict(model) -> "OrderedDict[str, object]":
    """A snapshot of ``model.state_dict()``: *copies* of its arrays (on their device).

    ``state_dict()`` returns tensors that share memory with the model, so keeping it does not
    keep the values: the next optimizer step changes them in place. ``load_state_dict`` accepts
    this dict directly.
    """
    return OrderedDict((name, t.data.copy()) for name, t in model.state_dict().items())


class EarlyStopping:
    """Call ``step(value, model)`` after every evaluation; it returns True when training
    should stop.

    A value *improves* when it beats the best so far by more than ``min_delta``
    (``value < best − min_delta`` in mode "min", ``value > best + min_delta`` in mode "max");
    the first value always improves. After ``patience`` evaluations in a row without an
    improvement, ``step`` returns True (``patience=0``: stop at the first one). A NaN value
    never improves.

    With ``restore_best`` and a ``model`` passed to ``step``, every improvement snapshots the
    model's weights (``copy_state_dict``: copies, not views), and when ``step`` decides to stop
    it loads the best weights back into the model. ``restore(model)`` does the same at any
    time (e.g. when the epoch budget ran out before patience did).

    Attributes:
        best: the best value seen (±inf before the first step).
        best_step: the 1-based number of the ``step`` call that gave ``best`` (0 before any).
        num_bad_steps: evaluations since the last improvement.
        num_steps: ``step`` calls so far.
        should_stop: whether the last ``step`` returned True.
        best_state: the snapshot of the best weights (None without a model or restore_best).
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, mode: str = "min", restore_best: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        if min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.mode, self.restore_best = mode, restore_best
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (a new run)."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step = 0
        self.num_bad_steps = 0
        self.num_steps = 0
        self.should_stop = False
        self.best_state = None

    def is_improvement(self, value: float) -> bool:
        """Whether ``value`` would count as an improvement over ``best``."""
        if math.isnan(value):
            return False
        if self.best_step == 0:  # the first (non-NaN) value
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value, model=None) -> bool:
        """Record one evaluation; True when training should stop (see the class docstring)."""
        value = float(value.item() if hasattr(value, "item") else value)
        self.num_steps += 1
        if self.is_improvement(value):
            self.best, self.best_step, self.num_bad_steps = value, self.num_steps, 0
            if self.restore_best and model is not None:
                self.best_state = copy_state_dict(model)
        else:
            self.num_bad_steps += 1
        self.should_stop = self.num_bad_steps > 0 and self.num_bad_steps >= self.patience
        if self.should_stop and self.restore_best and model is not None and self.best_state is not None:
            self.restore(model)
        return self.should_stop

    __call__ = step

    def restore(self, model) -> None:
        """Load the best weights seen back into ``model`` (in place)."""
        if self.best_state is None:
            raise RuntimeError("EarlyStopping.restore: no snapshot of the best weights; pass the model to "
                               "step(value, model) with restore_best=True")
        model.load_state_dict(self.best_state)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The counters as plain JSON-able numbers (for a training checkpoint). The weight
        snapshot is not included: a trainer keeps the best weights in its own checkpoint."""
        return {"best": float(self.best), "best_step": self.best_step, "num_bad_steps": self.num_bad_steps,
                "num_steps": self.num_steps, "should_stop": self.should_stop}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_step = int(state["best_step"])
        self.num_bad_steps = int(state["num_bad_steps"])
        self.num_steps = int(state.get("num_steps", self.best_step + self.num_bad_steps))
        self.should_stop = bool(state.get("should_stop", False))

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, mode={self.mode!r}, "
                f"best={self.best:.6g}, best_step={self.best_step}, num_bad_steps={self.num_bad_steps})")
