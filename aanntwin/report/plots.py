"""Report figures (matplotlib). Each function returns a new ``Figure`` with every axis labelled
with its unit; nothing touches pyplot's global state (figures are built with
``matplotlib.figure.Figure``, so none stays open). Inputs are plain numbers, arrays, dicts and
the tidy DataFrames of the studies; the computing is done by the library before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

TAP_LABELS = {
    "input": "input voltage (V)",
    "conv_out": "conv MAC output (V)",
    "relu_out": "ReLU output (V)",
    "features": "pooled features (V)",
    "linear_in": "final stage input (V)",
    "linear_out": "class score / final MAC output (V)",
}
_MARK_STYLE = ["--", ":", "-.", (0, (5, 1, 1, 1))]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _grid(fig: Figure, n: int, cols: int | None = None) -> list[Axes]:
    cols = cols or n
    rows = -(-n // cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    return list(axes[:n])


def learning_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Test accuracy and training loss per epoch for each model (histories as in
    ``metrics.json``: dicts with ``epoch``, ``test_accuracy``, ``train_loss``)."""
    fig = _figure(10, 3.8)
    acc, loss = _grid(fig, 2)
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist]
        test = [100 * h["test_accuracy"] if h.get("test_accuracy") is not None else np.nan
                for h in hist]  # fmt: skip
        acc.plot(ep, test, marker="o", label=name)
        loss.plot(ep, [h["train_loss"] for h in hist], marker="o", label=name)
    acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy after each epoch")
    loss.set(xlabel="epoch", ylabel="training loss (cross-entropy, nats)", title="training loss")
    for ax in (acc, loss):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def draw_confusion(ax: Axes, confusion: Any, title: str | None = None) -> Any:
    """Draw a confusion matrix (rows true class, columns predicted) as % of each true class."""
    cm = np.asarray(confusion, dtype=float)
    share = 100 * cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    n = len(cm)
    if n <= 12:
        for t in range(n):
            for p in range(n):
                if cm[t, p]:
                    color = "white" if share[t, p] > 60 else "black"
                    ax.text(p, t, f"{share[t, p]:.0f}", ha="center", va="center", fontsize=7,
                            color=color)  # fmt: skip
    ax.set(xlabel="predicted class", ylabel="true class", xticks=range(n), yticks=range(n))
    if title:
        ax.set_title(title)
    return im


def confusion_matrix(confusions: Any | Mapping[str, Any]) -> Figure:
    """One panel per confusion matrix (a matrix, or a dict title -> matrix); cells in % of the
    true class."""
    items = dict(confusions) if isinstance(confusions, Mapping) else {"": confusions}
    fig = _figure(4.6 * len(items), 4.2)
    axes = _grid(fig, len(items))
    for ax, (title, cm) in zip(axes, items.items(), strict=True):
        im = draw_confusion(ax, cm, title or None)
    fig.colorbar(im, ax=axes, shrink=0.8).set_label("share of the true class (%)")
    return fig


def draw_histogram(
    ax: Axes,
    series: Mapping[str, Any],
    markers: Sequence[tuple[str, float]] = (),
    xlabel: str = "signal (V)",
    bins: int = 60,
) -> None:
    """Histograms (log counts) of one signal for several series, with vertical range markers."""
    values = [np.asarray(v, dtype=float).ravel() for v in series.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(1)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    for name, v in zip(series, values, strict=True):
        ax.hist(v, bins=edges, histtype="step", linewidth=1.3, label=name or None)
    styles: dict[str, Any] = {}
    for label, x in markers:
        style = styles.setdefault(label, _MARK_STYLE[len(styles) % len(_MARK_STYLE)])
        seen = sum(1 for line in ax.lines if line.get_label() == label)
        ax.axvline(x, color="crimson", linestyle=style, linewidth=1.2,
                   label=label if not seen else "_nolegend_")  # fmt: skip
    ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel="count (log scale)")
    if any(series) or markers:
        ax.legend(fontsize=7)


def activation_histograms(
    acts: Mapping[str, Any],
    markers: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per stage: histograms of its signal (V) against the voltage limits there.

    ``acts``: tap -> array, or series name -> (tap -> array) to overlay several models;
    ``markers``: tap -> [(label, V)] (see :func:`aanntwin.report.notebook.range_markers`).
    """
    first = next(iter(acts.values()))
    series = dict(acts) if isinstance(first, Mapping) else {"": acts}
    taps = list(next(iter(series.values())))
    cols = min(len(taps), 2)
    fig = _figure(5.0 * cols, 3.4 * -(-len(taps) // cols))
    for ax, tap in zip(_grid(fig, len(taps), cols), taps, strict=True):
        draw_histogram(ax, {k: v[tap] for k, v in series.items()}, (markers or {}).get(tap, ()),
                       TAP_LABELS.get(tap, f"{tap} (V)"))  # fmt: skip
        ax.set_title(tap)
    if title:
        fig.suptitle(title)
    return fig


def weight_histograms(
    weights: Mapping[str, Any], refs: Mapping[str, float | None] | None = None
) -> Figure:
    """Histogram of each layer's weights (dimensionless multiplier gains), with its mean +- std
    and, if given, the recommended quantization reference +-ref."""
    fig = _figure(4.2 * len(weights), 3.4)
    for ax, (name, w) in zip(_grid(fig, len(weights)), weights.items(), strict=True):
        w = np.asarray(w, dtype=float).ravel()
        ax.hist(w, bins=min(60, max(10, w.size // 4)), color="steelblue", alpha=0.8)
        std = w.std()
        for x in (-std, std):
            ax.axvline(x, color="black", linestyle=":", label="+-1 std" if x > 0 else None)
        ref = (refs or {}).get(name)
        if ref:
            for x in (-ref, ref):
                ax.axvline(x, color="crimson", linestyle="--",
                           label="recommended ref" if x > 0 else None)  # fmt: skip
        ax.set(xlabel="weight (multiplier gain, dimensionless)", ylabel="count",
               title=f"{name}: {w.size} weights, std {std:.3g}")  # fmt: skip
        ax.legend(fontsize=7)
    return fig


def quantization_heatmap(df: Any, zero_level: bool = True) -> Figure:
    """Per layer, accuracy (%) over reference (in weight stds) x bits, quantized points of the
    quantization study with the given zero-level mode."""
    q = df[(df["mode"] == "quantized") & (df["zero_level"].astype(str) == str(zero_level))]
    layers = list(dict.fromkeys(q["layer"]))
    fig = _figure(5.2 * max(1, len(layers)), 3.8)
    axes = _grid(fig, max(1, len(layers)))
    im = None
    for ax, layer in zip(axes, layers, strict=False):
        t = q[q["layer"] == layer].pivot_table(index="bits", columns="ref_sigma",
                                               values="accuracy")  # fmt: skip
        im = ax.imshow(100 * t.to_numpy(), aspect="auto", origin="lower", cmap="viridis",
                       vmin=0, vmax=100)  # fmt: skip
        cols = list(t.columns)
        step = max(1, len(cols) // 8)
        ax.set_xticks(range(0, len(cols), step), [f"{c:g}" for c in cols[::step]])
        ax.set_yticks(range(len(t.index)), [str(int(b)) for b in t.index])
        ax.set(xlabel="reference ref (weight stds)", ylabel="weight bits (not counting sign)",
               title=f"{layer} (zero level {'on' if zero_level else 'off'})")  # fmt: skip
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.85).set_label("test accuracy (%)")
    else:
        axes[0].set(xlabel="reference ref (weight stds)", ylabel="weight bits")
    return fig


def clipped_curves(df: Any) -> Figure:
    """Accuracy (%) vs reference (weight stds) with the weights only clipped, per layer."""
    c = df[df["mode"] == "clipped"]
    fig = _figure(6, 3.6)
    (ax,) = _grid(fig, 1)
    for layer, g in c.groupby("layer", sort=False):
        g = g.sort_values("ref_sigma")
        ax.plot(g["ref_sigma"], 100 * g["accuracy"], marker="o", markersize=3, label=str(layer))
    ax.set(xlabel="clip reference ref (weight stds)", ylabel="test accuracy (%)",
           title="weights clipped to +-ref, not quantized")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def tolerance_curves(df: Any, reference: float | None = None, max_drop: float = 0.01) -> Figure:
    """Accuracy (%) vs test noise level (V) per kind, one line per training level with a
    +-std band over runs; ``reference`` (fraction) draws the ``reference - max_drop`` line."""
    kinds = list(dict.fromkeys(df["kind"]))
    cols = min(len(kinds), 2)
    fig = _figure(5.0 * cols, 3.6 * -(-len(kinds) // cols))
    for ax, kind in zip(_grid(fig, len(kinds), cols), kinds, strict=True):
        g = df[df["kind"] == kind].copy()
        g["level"] = g["test_level"].fillna(0.0)
        g["train"] = g["train_level"].map(lambda v: "none" if v != v or v is None else f"{v:g} V")
        for train, t in g.groupby("train", sort=False):
            t = t.sort_values("level")
            m, s = 100 * t["accuracy_mean"].to_numpy(), 100 * t["accuracy_std"].to_numpy()
            (line,) = ax.plot(t["level"], m, label=f"trained at {train}")
            ax.fill_between(t["level"], m - s, m + s, color=line.get_color(), alpha=0.2)
        if reference is not None:
            ax.axhline(100 * (reference - max_drop), color="black", linestyle=":",
                       label=f"ideal - {100 * max_drop:g} point")  # fmt: skip
        ax.set(xlabel=f"{kind} noise std (V)", ylabel="test accuracy (%)", title=kind)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def explorer_figure(
    confusion: Any,
    acts: Mapping[str, Any],
    markers: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    title: str = "",
) -> Figure:
    """The explorer's view: confusion matrix beside per-stage activation histograms."""
    taps = list(acts)
    fig = _figure(4.0 + 3.0 * len(taps), 3.6)
    axes = _grid(fig, 1 + len(taps))
    im = draw_confusion(axes[0], confusion, "confusion (% of true class)")
    fig.colorbar(im, ax=axes[0], shrink=0.7).set_label("share of the true class (%)")
    for ax, tap in zip(axes[1:], taps, strict=True):
        draw_histogram(ax, {"": acts[tap]}, (markers or {}).get(tap, ()),
                       TAP_LABELS.get(tap, f"{tap} (V)"), bins=40)  # fmt: skip
        ax.set_title(tap)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def yield_histogram(
    accuracies: Sequence[float], threshold: float, yield_result: Any = None
) -> Figure:
    """Histogram of the per-chip test accuracy (%), the pass threshold (fraction) as a vertical
    line; ``yield_result`` (a :class:`aanntwin.studies.specs.YieldResult`) puts the yield and its
    confidence interval in the title."""
    acc = 100 * np.asarray(accuracies, dtype=float)
    thr = 100 * float(threshold)
    lo, hi = min(float(acc.min(initial=thr)), thr), max(float(acc.max(initial=thr)), thr)
    width = max((hi - lo) / int(np.clip(np.sqrt(acc.size) * 2, 5, 40)), 1e-3)
    below, above = int(np.ceil((thr - lo) / width)), int(np.floor((hi - thr) / width)) + 1
    edges = thr + width * np.arange(-below, above + 1)  # the threshold is a bin edge
    fig = _figure(6.0, 3.6)
    (ax,) = _grid(fig, 1)
    passing = np.asarray(accuracies, dtype=float) >= threshold  # as the yield counts them
    ax.hist([acc[passing], acc[~passing]], bins=edges, stacked=True, color=["tab:blue", "tab:red"],
            label=[f"pass ({passing.sum()})", f"fail ({(~passing).sum()})"])  # fmt: skip
    ax.axvline(thr, color="black", linestyle="--", label=f"threshold {thr:.2f} %")
    title = f"{acc.size} chip instances"
    if yield_result is not None:
        r = yield_result
        title = (f"yield {100 * r.yield_:.1f} % ({r.passing}/{r.instances} chips), "
                 f"{100 * r.confidence:g} % interval {100 * r.low:.1f}..{100 * r.high:.1f} %")  # fmt: skip
    ax.set(xlabel="test accuracy of the chip instance (%)", ylabel="chip instances (count)",
           title=title)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def transfer_curves(curves: Sequence[Any], cols: int = 4) -> Figure:
    """Each stage's transfer curve (a :class:`aanntwin.report.transfer.Curve`: the twin, solid)
    against the ideal (dashed), one panel per curve, signal order."""
    fig = _figure(3.2 * min(cols, len(curves)), 2.8 * -(-len(curves) // cols))
    for ax, c in zip(_grid(fig, len(curves), cols), curves, strict=True):
        ax.plot(c.x, c.ideal, "--", color="0.6", label="ideal")
        ax.plot(c.x, c.y, color="tab:red", label="twin")
        ax.set(xlabel=c.xlabel, ylabel=c.ylabel)
        ax.set_title(f"{c.stage}: {c.title}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig
