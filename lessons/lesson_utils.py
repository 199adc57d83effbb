"""Shared code for the regularization lessons (04 dropout, 05 weight decay, 06 normalization,
09 early stopping): one small, controlled experiment that they all reuse.

The experiment: classify scikit-learn's bundled ``load_digits`` images (8×8 grey-scale pixels,
10 classes, 1,797 images) with a multilayer perceptron (MLP). With only a couple of hundred
training images and a wide MLP, the network memorizes the training set within a few dozen
epochs: the training loss goes to zero while the validation loss turns around and climbs. That
is *overfitting*, and it is exactly what a regularizer is supposed to fix, so every lesson
compares a baseline with a regularized run on the same data, the same initial weights and the
same batches.

    data = load_digits_split(n_train=200)              # standardized numpy arrays
    model = make_mlp(hidden=256, depth=2, dropout=0.5)  # a minillm nn.Sequential
    opt = minillm.optim.Adam(model.parameters(), lr=1e-3)
    hist = train_classifier(model, data, opt, epochs=100)
    plot_histories({"dropout 0.5": hist})

Everything here is plain minillm + NumPy (no PyTorch).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional

import numpy as np

import minillm
from minillm import nn
from minillm.nn import functional as F


# --------------------------------------------------------------------------- data
def load_digits_split(n_train: int = 200, n_val: Optional[int] = None, seed: int = 0,
                      standardize: bool = True) -> dict:
    """Split ``sklearn.datasets.load_digits`` into a small training set and a validation set.

    Args:
        n_train: training images (a random, class-balanced-ish subset; small on purpose, so a
            wide MLP can memorize it and overfit).
        n_val: validation images (default: all the images not used for training, ~1,600).
        seed: which random split.
        standardize: subtract the per-pixel mean and divide by the per-pixel standard deviation,
            both measured on the TRAINING images only (using validation statistics would leak
            information from the validation set). Pixels that are constant in the training set
            (the image border is always 0) are only centred.

    Returns a dict with float32 ``X_train (n_train, 64)``, ``X_val``, int64 ``y_train``, ``y_val``.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    tr = order[:n_train]
    va = order[n_train:] if n_val is None else order[n_train:n_train + n_val]
    X_train, X_val = X[tr], X[va]
    if standardize:
        mean = X_train.mean(axis=0)
        std = X_train.std(axis=0)
        std[std < 1e-3] = 1.0          # a constant pixel: nothing to scale
        X_train = (X_train - mean) / std
        X_val = (X_val - mean) / std
    return {"X_train": X_train.astype(np.float32), "y_train": y[tr].astype(np.int64),
            "X_val": X_val.astype(np.float32), "y_val": y[va].astype(np.int64)}


# --------------------------------------------------------------------------- model
def make_mlp(in_dim: int = 64, hidden: int = 256, depth: int = 2, out_dim: int = 10, dropout: float = 0.0,
             norm: Optional[str] = None, input_dropout: float = 0.0) -> nn.Sequential:
    """A multilayer perceptron: ``depth`` hidden layers of width ``hidden``.

    Each hidden layer is ``Linear → [BatchNorm1d | LayerNorm] → ReLU → [Dropout(dropout)]``;
    the output layer is a plain ``Linear(hidden, out_dim)`` giving the 10 class logits.
    ``norm`` is None, ``"batch"`` or ``"layer"``; ``input_dropout`` drops input pixels (Srivastava
    et al. used p = 0.2 on inputs and 0.5 on hidden units).
    """
    if norm not in (None, "batch", "layer"):
        raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}")
    layers = []
    if input_dropout > 0:
        layers.append(nn.Dropout(input_dropout))
    width = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(hidden))
        elif norm == "layer":
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- training
def evaluate(model, X: np.ndarray, y: np.ndarray, batch_size: int = 1024):
    """Mean cross-entropy loss and accuracy of ``model`` on (X, y), in eval mode (dropout off,
    batch norm on its running statistics), without building a graph. Restores the mode after."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    with minillm.no_grad():
        for i in range(0, len(X), batch_size):
            xb, yb = X[i:i + batch_size], y[i:i + batch_size]
            logits = model(minillm.tensor(xb))
            total_loss += F.cross_entropy(logits, minillm.tensor(yb), reduction="sum").item()
            correct += int((logits.numpy().argmax(-1) == yb).sum())
    model.train(was_training)
    return total_loss / len(X), correct / len(X)


def train_classifier(model, data: dict, optimizer, epochs: int, batch_size: int = 32, seed: int = 0,
                     penalty: Optional[Callable] = None, early_stopping=None,
                     on_epoch_end: Optional[Callable] = None, verbose: bool = False) -> dict:
    """Mini-batch training of a classifier on ``data`` (from :func:`load_digits_split`).

    Each epoch shuffles the training set (with a generator seeded by ``seed``, so two runs with
    the same seed see the same batches in the same order: a fair comparison), takes one
    optimizer step per batch, then measures loss and accuracy on the whole training set and the
    whole validation set in eval mode.

    Args:
        penalty: optional ``penalty(model) -> scalar Tensor`` added to every batch loss (an L1 or
            L2 regularizer). The recorded losses are the plain cross-entropy, without it, so
            curves with and without a penalty compare like with like.
        early_stopping: optional object with ``step(val_loss, model) -> bool`` (True = stop),
            e.g. ``minillm.regularizers.EarlyStopping``; called after every epoch.
        on_epoch_end: optional ``on_epoch_end(epoch, history, model)`` (returning True stops).

    Returns a history dict: lists ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc`` (one
    entry per epoch, epoch 1 first), ``epochs_run`` and ``seconds``.
    """
    X, y = data["X_train"], data["y_train"]
    rng = np.random.default_rng(seed)
    hist = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": []}
    start = time.perf_counter()
    model.train()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X))
        for i in range(0, len(X), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2 and any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
                continue  # batch norm cannot normalize a batch of one
            logits = model(minillm.tensor(X[idx]))
            loss = F.cross_entropy(logits, minillm.tensor(y[idx]))
            if penalty is not None:
                loss = loss + penalty(model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        tl, ta = evaluate(model, X, y)
        vl, va = evaluate(model, data["X_val"], data["y_val"])
        for key, value in zip(("train_loss", "train_acc", "val_loss", "val_acc"), (tl, ta, vl, va)):
            hist[key].append(value)
        if verbose:
            print(f"epoch {epoch:3d}  train loss {tl:.4f} acc {ta:.3f}  val loss {vl:.4f} acc {va:.3f}")
        stop = False
        if on_epoch_end is not None:
            stop = bool(on_epoch_end(epoch, hist, model))
        if early_stopping is not None and early_stopping.step(vl, model):
            stop = True
        if stop:
            break
    model.train()
    hist["epochs_run"] = len(hist["val_loss"])
    hist["seconds"] = time.perf_counter() - start
    return hist


def summarize(hist: dict, last: int = 1) -> dict:
    """The numbers a lesson quotes, from a history: final (mean of the ``last`` epochs) train and
    val loss and accuracy, the generalization gaps (val − train loss, train − val accuracy), and
    the best val loss / accuracy seen and when."""
    def tail(key):
        return float(np.mean(hist[key][-last:]))
    out = {k: tail(k) for k in ("train_loss", "val_loss", "train_acc", "val_acc")}
    out["loss_gap"] = out["val_loss"] - out["train_loss"]
    out["acc_gap"] = out["train_acc"] - out["val_acc"]
    best = int(np.argmin(hist["val_loss"]))
    out["best_val_loss"], out["best_epoch"] = float(hist["val_loss"][best]), best + 1
    out["best_val_acc"] = float(np.max(hist["val_acc"]))
    return out


def mean_histories(hists) -> dict:
    """Average several runs' histories (e.g. several seeds), epoch by epoch (truncated to the
    shortest run)."""
    hists = list(hists)
    n = min(len(h["val_loss"]) for h in hists)
    out = {k: list(np.mean([h[k][:n] for h in hists], axis=0))
           for k in ("train_loss", "val_loss", "train_acc", "val_acc")}
    out["epochs_run"] = n
    out["seconds"] = float(sum(h.get("seconds", 0.0) for h in hists))
    return out


def print_table(results: Dict[str, dict], keys=("train_loss", "val_loss", "loss_gap", "train_acc", "val_acc",
                                                   "acc_gap")) -> None:
    """Print one row per run (label → :func:`summarize` dict), one column per key."""
    width = max(len(label) for label in results) + 2
    cols = [max(11, len(k) + 2) for k in keys]          # a column fits its header
    print("".ljust(width) + "".join(f"{k:>{w}}" for k, w in zip(keys, cols)))
    for label, s in results.items():
        print(label.ljust(width) + "".join(f"{s[k]:>{w}.4f}" if isinstance(s[k], float) else f"{s[k]:>{w}}"
                                           for k, w in zip(keys, cols)))


# --------------------------------------------------------------------------- plots
def plot_histories(histories: Dict[str, dict], title: str = "", markers: Optional[Dict[str, int]] = None,
                   accuracy: bool = True, logy: bool = False, zoom_val: bool = False):
    """Training curves of several runs side by side: loss (left) and accuracy (right), one colour
    per run, training dashed and validation solid. ``markers`` maps a run's label to an epoch to
    mark with a vertical dotted line (e.g. where early stopping stopped); the line is in the legend.
    ``zoom_val`` adds a panel with the validation losses alone on a linear axis, zoomed to the
    range from their lowest point to their highest one after it: where the overfitting rise and
    differences of a few hundredths live, which a log axis spanning the training loss's decades hides. One legend, below the panels, off the data.
    Returns the figure."""
    import matplotlib.pyplot as plt

    panels = [("loss", "cross-entropy loss", False)]
    if zoom_val:
        panels.append(("loss", "validation loss (zoomed)", True))
    if accuracy:
        panels.append(("acc", "accuracy", False))
    ncols = len(panels)
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.2), squeeze=False)
    axes = axes[0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, ylabel, zoomed) in zip(axes, panels):
        for k, (label, h) in enumerate(histories.items()):
            c = colors[k % len(colors)]
            epochs = np.arange(1, len(h[f"val_{metric}"]) + 1)
            if not zoomed:
                ax.plot(epochs, h[f"train_{metric}"], "--", color=c, alpha=0.8, label=f"{label} (train)")
            ax.plot(epochs, h[f"val_{metric}"], "-", color=c, label=f"{label} (val)")
            if markers and label in markers:
                ax.axvline(markers[label], color=c, linestyle=":", linewidth=2,
                           label=f"{label}: stopped after epoch {markers[label]}")
        if zoomed:   # from the lowest validation loss to the highest one after each curve's minimum
            curves = [np.asarray(h["val_loss"], dtype=float) for h in histories.values()]
            lo = min(float(c.min()) for c in curves)
            hi = max(float(c[int(np.argmin(c)):].max()) for c in curves)
            pad = 0.35 * (hi - lo) + 1e-6
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if metric == "loss" and logy and not zoomed:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    ncol_legend = min(len(labels), 4)
    rows = -(-len(labels) // ncol_legend) if labels else 0
    fig.subplots_adjust(bottom=0.14 + 0.06 * rows)
    fig.legend(handles, labels, loc="lower center", ncol=ncol_legend, fontsize=8, frameon=False)
    return fig
