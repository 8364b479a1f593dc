"""Pure plotting functions: numpy arrays and plain values in, one PNG file out.

Nothing here knows about models or datasets. Every function writes its PNG atomically (rendered
in memory, written to a temporary file beside ``path``, then renamed over it), creates missing
parent folders, and returns ``Path(path)``.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so no
global pyplot state is touched, and each one is drawn inside ``matplotlib.rc_context(STYLE)``
for one consistent look. The class ``"normal"`` (:data:`NORMAL_GROUP`) is always
:data:`NORMAL_COLOR` (blue); anomalous groups take :data:`GROUP_PALETTE` colours in order.

Output sizes are fixed in pixels (at :data:`DPI`), so callers and tests can predict them:

* fixed-size charts use the ``*_SIZE_PX`` constants below;
* image grids use :data:`CELL_PX` per image, plus :data:`LABEL_PX` on the left when rows are
  labelled, :data:`COLORBAR_PX` on the right when there is a colour bar, :data:`CAPTION_PX`
  for captions and :data:`TITLE_PX` for a title, and are at least :data:`MIN_GRID_WIDTH_PX`
  wide. Each function's docstring gives its exact formula.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from PIL import Image

from gonomaly.data import NORMAL_GROUP
from gonomaly.io import atomic_write_bytes
from gonomaly.report.formatting import short

__all__ = [
    "ANOMALY_COLOR",
    "CAPTION_PX",
    "CELL_PX",
    "COLORBAR_PX",
    "CONFUSION_SIZE_PX",
    "DPI",
    "GROUP_PALETTE",
    "HISTOGRAM_SIZE_PX",
    "HIST_GRID_COLS",
    "HIST_GRID_HEADER_PX",
    "HIST_PANEL_PX",
    "LABEL_PX",
    "LOSS_SIZE_PX",
    "MAX_OVERLAID_GROUPS",
    "MIN_GRID_WIDTH_PX",
    "NORMAL_COLOR",
    "ROC_PR_SIZE_PX",
    "STYLE",
    "TITLE_PX",
    "group_bars_size_px",
    "plot_anomaly_overlays",
    "plot_confusion_matrix",
    "plot_group_bars",
    "plot_image_strip",
    "plot_loss_curve",
    "plot_reconstruction_grid",
    "plot_roc_pr",
    "plot_score_histograms",
    "save_heatmap_overlay",
]

# --------------------------------------------------------------------------------------------
# Style and sizes
# --------------------------------------------------------------------------------------------

DPI = 100

NORMAL_COLOR = "tab:blue"
ANOMALY_COLOR = "tab:red"
# Qualitative colours for anomalous groups, in order; blue is kept for the normal class.
GROUP_PALETTE: tuple[str, ...] = (
    "tab:red",
    "tab:orange",
    "tab:green",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
)
_AUROC_COLOR = "tab:purple"
_THRESHOLD_COLOR = "black"
_NEUTRAL_COLOR = "0.45"

STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=[NORMAL_COLOR, *GROUP_PALETTE]),
    "lines.linewidth": 1.5,
    "legend.framealpha": 0.85,
    "image.cmap": "gray",
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}

LOSS_SIZE_PX = (800, 450)
HISTOGRAM_SIZE_PX = (800, 450)
CONFUSION_SIZE_PX = (480, 420)
ROC_PR_SIZE_PX = (1000, 450)

# Score histograms switch from overlaid lines to a grid of panels above this many groups.
MAX_OVERLAID_GROUPS = 6
HIST_GRID_COLS = 4
HIST_PANEL_PX = (250, 210)
HIST_GRID_HEADER_PX = 40

CELL_PX = 100
LABEL_PX = 30
COLORBAR_PX = 60
CAPTION_PX = 28
TITLE_PX = 30
MIN_GRID_WIDTH_PX = 320

_COLORBAR_RATIO = 0.12  # colour-bar column width relative to an image column
_SMOOTH_MIN_STEPS = 50  # a moving average is drawn from this many loss values on


# --------------------------------------------------------------------------------------------
# Public plotting functions
# --------------------------------------------------------------------------------------------


def plot_loss_curve(
    losses: Sequence[float],
    path: str | Path,
    *,
    epochs_at: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """Training loss per step; :data:`LOSS_SIZE_PX` (800 x 450).

    The y axis is logarithmic when every finite loss is positive and they span more than one
    decade. From 50 steps on, the raw curve is drawn faintly under a moving average.
    ``epochs_at`` are step indices (0-based positions in ``losses``, up to ``len(losses)``)
    where epochs begin; each gets a dotted vertical line. Non-finite losses are left out of the
    line and counted in the legend.
    """
    values = np.asarray(losses, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("plot_loss_curve: losses is empty")
    boundaries: list[int] = []
    if epochs_at is not None:
        boundaries = [int(e) for e in epochs_at]
        bad = [e for e in boundaries if not 0 <= e <= values.size]
        if bad:
            raise ValueError(
                f"plot_loss_curve: epochs_at values {bad[:5]} lie outside 0..{values.size} "
                f"(the number of losses)"
            )
    finite = np.isfinite(values)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(*LOSS_SIZE_PX)
        ax = fig.add_subplot()
        _draw_losses(ax, values)
        for i, boundary in enumerate(boundaries):
            ax.axvline(
                boundary, color=_NEUTRAL_COLOR, linestyle=":", linewidth=1.0,
                label="epoch boundary" if i == 0 else None,
            )
        positive = values[finite]
        if positive.size and positive.min() > 0 and positive.max() / positive.min() > 10:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))
        ax.set_xlim(-0.5, max(values.size - 0.5, 0.5))
        ax.set_title(title or "Training loss")
        ax.legend(loc="upper right")
        return _save(fig, path)


def _draw_losses(ax: Any, values: np.ndarray) -> None:
    """The loss per step, faint under its moving average from :data:`_SMOOTH_MIN_STEPS` steps on."""
    steps = np.arange(values.size)
    finite = np.isfinite(values)
    n_bad = int((~finite).sum())
    smooth = values.size >= _SMOOTH_MIN_STEPS and finite.sum() >= _SMOOTH_MIN_STEPS // 2
    raw_label = "loss per step" + (f" ({n_bad} non-finite omitted)" if n_bad else "")
    if values.size == 1 or finite.sum() == 1:
        ax.plot(steps[finite], values[finite], "o", color=NORMAL_COLOR, label=raw_label)
    else:
        ax.plot(steps, values, color=NORMAL_COLOR, linewidth=0.8 if smooth else 1.5,
                alpha=0.35 if smooth else 1.0, label=raw_label)
    if smooth:
        window = max(5, values.size // 25)
        centres, averaged = _moving_average(values, window)
        ax.plot(centres, averaged, color=NORMAL_COLOR, linewidth=2.0, label=f"moving average ({window} steps)")


def plot_reconstruction_grid(
    originals: np.ndarray, reconstructions: np.ndarray, path: str | Path, *, errors: np.ndarray | None = None,
    row_labels: Sequence[str] | None = None, captions: Sequence[str] | None = None, title: str | None = None,
) -> Path:
    """Originals, reconstructions and per-pixel error maps in three rows, one column per image.

    ``originals`` and ``reconstructions`` are (N, H, W) or (N, H, W, 3) floats in [0, 1]
    (shown clipped to that range). The error row shows ``errors`` (N, H, W) when given, else
    ``|x - x_hat|`` averaged over channels, in 'inferno' on one shared scale with a colour
    bar. ``row_labels`` names the three rows; ``captions`` (one per column, e.g. the score)
    head the columns. The caller limits N (about 10 fits a page).

    Size: ``max(MIN_GRID_WIDTH_PX, LABEL_PX + N*CELL_PX + COLORBAR_PX)`` x
    ``3*CELL_PX + (CAPTION_PX if captions) + (TITLE_PX if title)``.
    """
    x = _as_images("originals", originals)
    x_hat = _as_images("reconstructions", reconstructions)
    if x.shape != x_hat.shape:
        raise ValueError(f"plot_reconstruction_grid: originals {x.shape} and reconstructions {x_hat.shape} "
                         "differ in shape")
    n = x.shape[0]
    err = _error_maps(x, x_hat, errors)
    default_labels = ["original", "reconstruction", "|x − x̂|"]
    labels = default_labels if row_labels is None else list(row_labels)
    if len(labels) != 3:
        raise ValueError(f"plot_reconstruction_grid: row_labels needs 3 names, got {len(labels)}")
    caps = _check_captions("plot_reconstruction_grid", captions, n)

    width = max(MIN_GRID_WIDTH_PX, LABEL_PX + n * CELL_PX + COLORBAR_PX)
    height = 3 * CELL_PX + (CAPTION_PX if caps else 0) + (TITLE_PX if title else 0)
    vmax = _finite_max(err, default=1.0)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(width, height)
        grid, c0 = _image_gridspec(fig, 3, n, width)
        err_image = None
        for j in range(n):
            top = fig.add_subplot(grid[0, c0 + j])
            _show_image(top, x[j])
            middle = fig.add_subplot(grid[1, c0 + j])
            _show_image(middle, x_hat[j])
            bottom = fig.add_subplot(grid[2, c0 + j])
            err_image = bottom.imshow(err[j], cmap="inferno", vmin=0.0, vmax=vmax)
            _bare(bottom)
            if caps:
                top.set_title(caps[j], fontsize=7)
            if j == 0:
                for ax, label in zip((top, middle, bottom), labels):
                    ax.set_ylabel(label)
        cbar = fig.colorbar(err_image, cax=fig.add_subplot(grid[2, c0 + n]))
        cbar.ax.tick_params(labelsize=7)
        if title:
            fig.suptitle(title)
        return _save(fig, path)


def _error_maps(x: np.ndarray, x_hat: np.ndarray, errors: np.ndarray | None) -> np.ndarray:
    """``errors`` as (N, H, W), checked; by default ``|x - x_hat|`` averaged over channels."""
    if errors is None:
        diff = np.abs(x - x_hat)
        return diff.mean(axis=-1) if diff.ndim == 4 else diff
    err = _squeeze_last(np.asarray(errors, dtype=np.float64))
    if err.shape != x.shape[:3]:
        raise ValueError(
            f"plot_reconstruction_grid: errors has shape {err.shape}, expected "
            f"{x.shape[:3]} (one H x W map per image)"
        )
    return err


def plot_score_histograms(
    scores_by_group: Mapping[str, np.ndarray],
    threshold: float,
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Score distributions per group on shared bins, with the decision threshold.

    Histograms are density-normalised so groups of different sizes compare. The group named
    :data:`NORMAL_GROUP` is drawn first, blue and lightly filled; other groups are step lines in
    :data:`GROUP_PALETTE` colours; non-finite scores are left out and counted in the legend.

    Up to :data:`MAX_OVERLAID_GROUPS` groups: one axes of :data:`HISTOGRAM_SIZE_PX`
    (800 x 450). More groups: a grid of :data:`HIST_GRID_COLS` panels per row, each showing
    normal against one group, of size ``HIST_GRID_COLS*HIST_PANEL_PX[0]`` x
    ``HIST_GRID_HEADER_PX + rows*HIST_PANEL_PX[1]`` with ``rows = ceil(panels / 4)`` (one panel
    per non-normal group).
    """
    if not scores_by_group:
        raise ValueError("plot_score_histograms: scores_by_group is empty")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"plot_score_histograms: threshold must be finite, got {threshold}")
    hists = _Histograms.of(scores_by_group, threshold)
    with matplotlib.rc_context(STYLE):
        if len(hists.names) <= MAX_OVERLAID_GROUPS:
            fig = _overlaid_histograms(hists, title)
        else:
            fig = _histogram_grid(hists, title)
        return _save(fig, path)


@dataclass(frozen=True)
class _Histograms:
    """Finite and non-finite scores per group (normal first), their colours and shared bins."""

    groups: dict[str, np.ndarray]
    names: list[str]
    colours: dict[str, str]
    edges: np.ndarray
    threshold: float

    @classmethod
    def of(cls, scores_by_group: Mapping[str, np.ndarray], threshold: float) -> _Histograms:
        groups = {str(k): np.asarray(v, dtype=np.float64).ravel() for k, v in scores_by_group.items()}
        names = sorted(groups, key=lambda k: k != NORMAL_GROUP)  # stable: normal first
        return cls(groups, names, _group_colours(names), _histogram_edges(groups, threshold), threshold)

    @property
    def xlim(self) -> tuple[float, float]:
        lo, hi = float(self.edges[0]), float(self.edges[-1])
        pad = 0.02 * (hi - lo)
        return lo - pad, hi + pad

    @property
    def threshold_label(self) -> str:
        return f"threshold = {self.threshold:.4g}"

    def describe(self, name: str) -> str:
        scores = self.groups[name]
        n_finite = int(np.isfinite(scores).sum())
        text = f"{name} (n={n_finite:,}"
        if n_finite < scores.size:
            text += f", {scores.size - n_finite} non-finite"
        return text + ")"

    def draw(self, ax: Any, name: str) -> None:
        scores, colour, edges = self.groups[name], self.colours[name], self.edges
        finite = np.clip(scores[np.isfinite(scores)], edges[0], edges[-1])
        label = self.describe(name)
        if finite.size == 0:
            ax.plot([], [], color=colour, label=label + " — no scores")
            return
        if name == NORMAL_GROUP:
            ax.hist(finite, bins=edges, density=True, histtype="stepfilled", color=colour, alpha=0.25)
        ax.hist(finite, bins=edges, density=True, histtype="step", color=colour, linewidth=1.5, label=label)


def _histogram_edges(groups: Mapping[str, np.ndarray], threshold: float) -> np.ndarray:
    """Shared bin edges: 10 to 40 bins over every finite score and the threshold."""
    finite_all = [g[np.isfinite(g)] for g in groups.values()]
    pooled = np.concatenate([*finite_all, [threshold]])
    lo, hi = float(pooled.min()), float(pooled.max())
    normal = groups.get(NORMAL_GROUP, np.empty(0))
    normal = normal[np.isfinite(normal)]
    if len(normal) > 20:
        # Anomaly scores can run far into a long tail (the density score of a far-off image):
        # show the decision region, the normal scores and the threshold with as much room again
        # to the right; scores beyond the axis are counted in the edge bins.
        lo = min(float(normal.min()), threshold)
        right = max(float(normal.max()), threshold)
        hi = min(hi, right + (right - lo))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    total = sum(f.size for f in finite_all)
    n_bins = int(np.clip(round(math.sqrt(max(total, 1))), 10, 40))
    return np.linspace(lo, hi, n_bins + 1)


def _overlaid_histograms(hists: _Histograms, title: str | None) -> Figure:
    fig = _new_figure(*HISTOGRAM_SIZE_PX)
    ax = fig.add_subplot()
    for name in hists.names:
        hists.draw(ax, name)
    ax.axvline(hists.threshold, color=_THRESHOLD_COLOR, linestyle="--", linewidth=1.2,
               label=hists.threshold_label)
    ax.set_xlim(*hists.xlim)
    ax.set_ylim(0.0, ax.get_ylim()[1] * (1.1 + 0.06 * len(hists.names)))  # room for the legend
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("density")
    ax.set_title(title or "Anomaly scores by group")
    ax.legend(loc="upper right")
    return fig


def _histogram_grid(hists: _Histograms, title: str | None) -> Figure:
    others = [k for k in hists.names if k != NORMAL_GROUP]
    rows = math.ceil(len(others) / HIST_GRID_COLS)
    fig = _new_figure(HIST_GRID_COLS * HIST_PANEL_PX[0], HIST_GRID_HEADER_PX + rows * HIST_PANEL_PX[1])
    axes = fig.subplots(rows, HIST_GRID_COLS, squeeze=False, sharex=True)
    for i, ax in enumerate(axes.flat):
        if i >= len(others):
            ax.set_visible(False)
            continue
        if NORMAL_GROUP in hists.groups:
            hists.draw(ax, NORMAL_GROUP)
        hists.draw(ax, others[i])
        ax.axvline(hists.threshold, color=_THRESHOLD_COLOR, linestyle="--", linewidth=1.0)
        ax.set_xlim(*hists.xlim)
        ax.set_title(hists.describe(others[i]).replace(others[i], short(others[i], 24), 1),
                     fontsize=8, color=hists.colours[others[i]])
        ax.tick_params(labelsize=7)
        if i % HIST_GRID_COLS == 0:
            ax.set_ylabel("density")
        if i + HIST_GRID_COLS >= len(others):
            ax.set_xlabel("anomaly score")
            ax.xaxis.set_tick_params(labelbottom=True)
    head = title or "Anomaly scores by group"
    if NORMAL_GROUP in hists.groups:
        head += f" — filled blue: {hists.describe(NORMAL_GROUP)}"
    fig.suptitle(f"{head}; dashed line: {hists.threshold_label}")
    return fig


def plot_confusion_matrix(
    tn: int, fp: int, fn: int, tp: int, path: str | Path, *, title: str | None = None
) -> Path:
    """2 x 2 confusion matrix: true class on rows, predicted on columns; :data:`CONFUSION_SIZE_PX`.

    Cells show the count and its percentage of the row (shaded by that percentage); a footer
    gives detection rate (recall), false-alarm rate, precision and accuracy.
    """
    counts = {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    for key, value in counts.items():
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(
                f"plot_confusion_matrix: {key} must be a non-negative integer, got {value!r}"
            )
    matrix = np.array([[tn, fp], [fn, tp]], dtype=np.int64)
    row_totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(row_totals > 0, matrix / np.maximum(row_totals, 1), np.nan)

    def ratio(a: int, b: int) -> str:
        return f"{a / b:.3f}" if b else "n/a"

    summary = (
        f"detection rate {ratio(tp, tp + fn)}   false-alarm rate {ratio(fp, fp + tn)}   "
        f"precision {ratio(tp, tp + fp)}   accuracy {ratio(tp + tn, int(matrix.sum()))}"
    )
    names = ["normal", "anomalous"]
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(*CONFUSION_SIZE_PX)
        ax = fig.add_subplot()
        ax.imshow(np.nan_to_num(fractions, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        for r in range(2):
            for c in range(2):
                frac = fractions[r, c]
                pct = "—" if np.isnan(frac) else f"{100 * frac:.1f}%"
                ax.text(c, r, f"{matrix[r, c]:,}\n({pct} of row)", ha="center", va="center",
                        fontsize=10, color="white" if frac > 0.55 else "black")
        ax.set_xticks([0, 1], [f"predicted\n{k}" for k in names])
        ax.set_yticks([0, 1], [f"true\n{k}" for k in names])
        ax.tick_params(length=0)
        ax.set_title(title or "Confusion matrix")
        fig.supxlabel(summary, fontsize=8)
        return _save(fig, path)


def plot_roc_pr(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """ROC (with AUROC and the chance diagonal) beside precision-recall (with AUPR and the
    prevalence baseline); :data:`ROC_PR_SIZE_PX` (1000 x 450).

    ``labels`` are 0 (normal) / 1 (anomalous, the positive class); higher scores mean more
    anomalous. With only one class present each panel says so instead of drawing a curve.
    """
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ValueError(f"plot_roc_pr: {y.size} labels but {s.size} scores")
    if y.size and not np.isin(y, [0, 1]).all():
        raise ValueError("plot_roc_pr: labels must be 0 (normal) or 1 (anomalous)")
    if not np.isfinite(s).all():
        raise ValueError(f"plot_roc_pr: {int((~np.isfinite(s)).sum())} scores are not finite")
    y = y.astype(np.int64)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)

    with matplotlib.rc_context(STYLE):
        fig = _new_figure(*ROC_PR_SIZE_PX)
        roc_ax, pr_ax = fig.subplots(1, 2)
        roc_ax.set_title("ROC")
        pr_ax.set_title("Precision–recall")
        if n_pos == 0 or n_neg == 0:
            note = f"needs both classes\n({n_neg} normal, {n_pos} anomalous)"
            for ax in (roc_ax, pr_ax):
                _say_instead(ax, note)
        else:
            _draw_roc(roc_ax, y, s)
            _draw_pr(pr_ax, y, s)
        fig.suptitle(
            (title + " — " if title else "") + f"{n_neg:,} normal, {n_pos:,} anomalous"
        )
        return _save(fig, path)


def _say_instead(ax: Any, note: str) -> None:
    """A framed panel with ``note`` in place of a curve."""
    ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=11, color=_NEUTRAL_COLOR, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("0.8")


def _draw_roc(ax: Any, y: np.ndarray, s: np.ndarray) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    auroc = roc_auc_score(y, s)
    ax.plot(fpr, tpr, color=ANOMALY_COLOR, label=f"AUROC = {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color=_NEUTRAL_COLOR, linestyle="--", linewidth=1.0, label="chance (0.5)")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(loc="lower right")
    _unit_square(ax)


def _draw_pr(ax: Any, y: np.ndarray, s: np.ndarray) -> None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, s)
    aupr = average_precision_score(y, s)
    prevalence = int(y.sum()) / y.size
    ax.step(recall, precision, where="post", color=ANOMALY_COLOR, label=f"AUPR (AP) = {aupr:.3f}")
    ax.axhline(prevalence, color=_NEUTRAL_COLOR, linestyle="--", linewidth=1.0,
               label=f"prevalence baseline = {prevalence:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="lower left")
    _unit_square(ax)


def _unit_square(ax: Any) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.02)
    ax.set_aspect("equal")


def group_bars_size_px(n_groups: int) -> tuple[int, int]:
    """Pixel size of :func:`plot_group_bars` for ``n_groups`` groups."""
    return max(640, 200 + 70 * n_groups), 480


def plot_group_bars(
    groups: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Two bars per group: AUROC and detection rate, in [0, 1], with a line at AUROC 0.5.

    Each group maps to ``{"auroc": ..., "detection_rate": ...}`` or to ``{"auroc": ...,
    "flagged": k, "n": n}`` (detection rate ``k / n``); an ``"n"`` entry is shown under the
    group name. A NaN AUROC (e.g. a group with one class only) is drawn as an empty hatched bar
    marked "n/a". For :data:`NORMAL_GROUP` the second bar is its false-alarm rate, in blue.
    Size: :func:`group_bars_size_px` — ``max(640, 200 + 70*groups)`` x 480.
    """
    if not groups:
        raise ValueError("plot_group_bars: groups is empty")
    bars = [_group_bar(str(name), metrics) for name, metrics in groups.items()]
    names = [bar[0] for bar in bars]
    x = np.arange(len(bars))
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(*group_bars_size_px(len(bars)))
        ax = fig.add_subplot()
        ax.axhline(0.5, color=_NEUTRAL_COLOR, linestyle=":", linewidth=1.2)
        for i, (name, auroc, rate, _) in enumerate(bars):
            _draw_auroc_bar(ax, x[i] - _GROUP_BAR_WIDTH / 2, auroc)
            _draw_rate_bar(ax, x[i] + _GROUP_BAR_WIDTH / 2, rate, name == NORMAL_GROUP)
        ticks = [short(name, 28) + ("" if size is None else f" (n={size:,})") for name, _, _, size in bars]
        ax.set_xticks(x, ticks, rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylim(0.0, 1.12)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("value")
        ax.grid(axis="x", visible=False)
        handles = _group_bar_legend(NORMAL_GROUP in names, any(math.isnan(bar[1]) for bar in bars))
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncols=min(len(handles), 3), frameon=False)
        if title:
            fig.suptitle(title)
        return _save(fig, path)


_GROUP_BAR_WIDTH = 0.38


def _group_bar(name: str, metrics: Mapping[str, float]) -> tuple[str, float, float, int | None]:
    """(name, AUROC, detection rate, n) of one group, checked."""
    if "auroc" not in metrics:
        raise ValueError(f"plot_group_bars: group {name!r} has no 'auroc'")
    n = metrics.get("n")
    if "detection_rate" in metrics:
        rate = float(metrics["detection_rate"])
    elif "flagged" in metrics and n is not None:
        rate = float(metrics["flagged"]) / float(n) if n else float("nan")
    else:
        raise ValueError(f"plot_group_bars: group {name!r} needs 'detection_rate' or 'flagged' and 'n'")
    auroc = float(metrics["auroc"])
    for key, value in (("auroc", auroc), ("detection rate", rate)):
        if not (math.isnan(value) or -1e-9 <= value <= 1 + 1e-9):
            raise ValueError(f"plot_group_bars: group {name!r} {key} {value} is outside [0, 1]")
    return name, auroc, rate, None if n is None else int(n)


def _draw_auroc_bar(ax: Any, x: float, auroc: float) -> None:
    if math.isnan(auroc):
        ax.bar(x, 1.0, _GROUP_BAR_WIDTH, fill=False, hatch="///", edgecolor=_AUROC_COLOR, alpha=0.5,
               linewidth=0.8)
        ax.text(x, 0.5, "n/a", ha="center", va="center", fontsize=7, rotation=90, color=_AUROC_COLOR,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    else:
        ax.bar(x, auroc, _GROUP_BAR_WIDTH, color=_AUROC_COLOR)
        ax.text(x, auroc + 0.01, f"{auroc:.2f}", ha="center", va="bottom", fontsize=7)


def _draw_rate_bar(ax: Any, x: float, rate: float, normal: bool) -> None:
    if math.isnan(rate):
        ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7)
    else:
        ax.bar(x, rate, _GROUP_BAR_WIDTH, color=NORMAL_COLOR if normal else ANOMALY_COLOR)
        ax.text(x, rate + 0.01, f"{rate:.2f}", ha="center", va="bottom", fontsize=7)


def _group_bar_legend(with_normal: bool, any_nan: bool) -> list[Any]:
    handles: list[Any] = [
        Patch(color=_AUROC_COLOR, label="AUROC"),
        Patch(color=ANOMALY_COLOR, label="detection rate (flagged / n)"),
    ]
    if with_normal:
        handles.append(Patch(color=NORMAL_COLOR, label="false-alarm rate (normal)"))
    if any_nan:
        handles.append(Patch(fill=False, hatch="///", edgecolor=_AUROC_COLOR, label="AUROC n/a (one class only)"))
    handles.append(Line2D([], [], color=_NEUTRAL_COLOR, linestyle=":", label="AUROC chance (0.5)"))
    return handles


def plot_image_strip(
    images: np.ndarray,
    path: str | Path,
    *,
    captions: Sequence[str] | None = None,
    nrow: int = 1,
    title: str | None = None,
) -> Path:
    """A plain grid of images: ``nrow`` rows of ``ceil(N / nrow)`` columns, filled row by row.

    ``images`` are (N, H, W) or (N, H, W, 3) floats in [0, 1]. Use it for samples,
    interpolations (one row each), or the most confident misses with ``captions`` (one per
    image, shown under it; put a newline in for a second line).

    Size: ``max(MIN_GRID_WIDTH_PX, ceil(N/nrow)*CELL_PX)`` x
    ``nrow*(CELL_PX + (CAPTION_PX if captions)) + (TITLE_PX if title)``.
    """
    x = _as_images("images", images)
    n = x.shape[0]
    if isinstance(nrow, bool) or int(nrow) != nrow or not 1 <= nrow <= n:
        raise ValueError(f"plot_image_strip: nrow must be between 1 and {n} (images), got {nrow}")
    nrow = int(nrow)
    caps = _check_captions("plot_image_strip", captions, n)
    ncol = math.ceil(n / nrow)
    width = max(MIN_GRID_WIDTH_PX, ncol * CELL_PX)
    height = nrow * (CELL_PX + (CAPTION_PX if caps else 0)) + (TITLE_PX if title else 0)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(width, height)
        axes = fig.subplots(nrow, ncol, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i >= n:
                ax.set_visible(False)
                continue
            _show_image(ax, x[i])
            if caps:
                ax.set_xlabel(caps[i], fontsize=7, labelpad=2)
        if title:
            fig.suptitle(title)
        return _save(fig, path)


def plot_anomaly_overlays(
    images: np.ndarray, maps: np.ndarray, path: str | Path, *, masks: np.ndarray | None = None,
    captions: Sequence[str] | None = None, vmax: float | None = None, title: str | None = None,
) -> Path:
    """Per image (one column each): the image; its anomaly map as a half-transparent 'jet' heat
    map over it; and, when ``masks`` are given, the ground-truth mask outlined in white on the
    overlay and shown on its own in a third row.

    ``images`` (N, H, W) or (N, H, W, 3) in [0, 1]; ``maps`` (N, h, w), stretched over the
    image when h, w differ; ``masks`` (N, H, W), nonzero = anomalous. All maps share one colour
    scale from ``min(0, min)`` to ``vmax`` (default: their largest value), shown in a colour bar.

    Size: ``max(MIN_GRID_WIDTH_PX, LABEL_PX + N*CELL_PX + COLORBAR_PX)`` x
    ``rows*CELL_PX + (CAPTION_PX if captions) + (TITLE_PX if title)``, rows = 3 with masks else 2.
    """
    x = _as_images("images", images)
    n = x.shape[0]
    m = _squeeze_last(np.asarray(maps, dtype=np.float64))
    if m.ndim != 3 or m.shape[0] != n:
        raise ValueError(f"plot_anomaly_overlays: maps has shape {m.shape}, expected ({n}, H, W) (one map per image)")
    gt = None if masks is None else _overlay_masks(masks, x.shape[:3])
    caps = _check_captions("plot_anomaly_overlays", captions, n)
    hi = _finite_max(m, default=1.0) if vmax is None else float(vmax)
    lo = min(0.0, float(np.nanmin(m))) if np.isfinite(m).any() else 0.0
    if hi <= lo:
        hi = lo + 1.0
    rows = 3 if gt is not None else 2
    width = max(MIN_GRID_WIDTH_PX, LABEL_PX + n * CELL_PX + COLORBAR_PX)
    height = rows * CELL_PX + (CAPTION_PX if caps else 0) + (TITLE_PX if title else 0)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(width, height)
        grid, c0 = _image_gridspec(fig, rows, n, width)
        for j in range(n):
            column = [fig.add_subplot(grid[row, c0 + j]) for row in range(rows)]
            heat = _draw_overlay_column(column, x[j], m[j], None if gt is None else gt[j], (lo, hi))
            if caps:
                column[0].set_title(caps[j], fontsize=7)
            if j == 0:
                for ax, label in zip(column, ("image", "anomaly map", "ground truth")):
                    ax.set_ylabel(label)
        cbar = fig.colorbar(heat, cax=fig.add_subplot(grid[1, c0 + n]))
        cbar.ax.tick_params(labelsize=7)
        cbar.solids.set_alpha(1.0)
        if title:
            fig.suptitle(title)
        return _save(fig, path)


def _squeeze_last(arr: np.ndarray) -> np.ndarray:
    """(N, H, W, 1) -> (N, H, W); other shapes unchanged."""
    return arr[..., 0] if arr.ndim == 4 and arr.shape[-1] == 1 else arr


def _overlay_masks(masks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    gt = _squeeze_last(np.asarray(masks))
    if gt.shape != shape:
        raise ValueError(f"plot_anomaly_overlays: masks has shape {gt.shape}, expected {shape}")
    return (gt > 0).astype(np.float64)


def _draw_overlay_column(column: list[Any], image: np.ndarray, anomaly_map: np.ndarray,
                         mask: np.ndarray | None, limits: tuple[float, float]) -> Any:
    """The image, the map over it (with the mask's outline) and the mask, top to bottom; returns
    the heat map's image for the colour bar."""
    top, over = column[0], column[1]
    h, w = image.shape[:2]
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    _show_image(top, image)
    _show_image(over, image)
    heat = over.imshow(anomaly_map, cmap="jet", alpha=0.5, vmin=limits[0], vmax=limits[1], extent=extent,
                       interpolation="bilinear")
    over.set_xlim(extent[0], extent[1])
    over.set_ylim(extent[2], extent[3])
    if mask is not None:
        if mask.any() and not mask.all():
            over.contour(mask, levels=[0.5], colors="white", linewidths=1.2)
        _show_image(column[2], mask)
    return heat


def save_heatmap_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    path: str | Path,
    *,
    vmax: float | None = None,
    alpha: float = 0.5,
) -> Path:
    """Write ``image`` with ``anomaly_map`` blended over it in 'jet', at the image's pixel size.

    ``image`` is (H, W) or (H, W, 3) in [0, 1]; ``anomaly_map`` is (h, w) and is resized
    (bilinear) to (H, W) when it differs. The map is scaled to [0, 1] by ``vmax`` (default: its
    own maximum; values below 0 count as 0). Output: an RGB PNG of exactly W x H pixels, drawn
    with PIL, no axes.
    """
    img = _as_images("image", np.asarray(image)[None])[0]
    amap = np.asarray(anomaly_map, dtype=np.float64)
    if amap.ndim == 3 and amap.shape[-1] == 1:
        amap = amap[..., 0]
    if amap.ndim != 2:
        raise ValueError(f"save_heatmap_overlay: anomaly_map must be (H, W), got {amap.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"save_heatmap_overlay: alpha must lie in [0, 1], got {alpha}")
    h, w = img.shape[:2]
    amap = np.nan_to_num(amap, nan=0.0, posinf=0.0, neginf=0.0)
    if amap.shape != (h, w):
        resized = Image.fromarray(amap.astype(np.float32), mode="F").resize(
            (w, h), Image.Resampling.BILINEAR
        )
        amap = np.asarray(resized, dtype=np.float64)
    top = float(amap.max()) if vmax is None else float(vmax)
    scaled = np.clip(amap / top, 0.0, 1.0) if top > 0 else np.zeros_like(amap)
    heat = matplotlib.colormaps["jet"](scaled)[..., :3]
    rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)
    blended = (1.0 - alpha) * rgb + alpha * heat
    pixels = np.round(np.clip(blended, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", optimize=True)
    return atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _new_figure(width_px: int, height_px: int) -> Figure:
    # Agg truncates width*dpi to an int, and e.g. 0.29 * 100 == 28.999...; half a pixel of slack
    # makes the saved size exactly width_px x height_px.
    fig = Figure(
        figsize=((width_px + 0.5) / DPI, (height_px + 0.5) / DPI), dpi=DPI, layout="constrained"
    )
    FigureCanvasAgg(fig)
    return fig


def _image_gridspec(fig: Figure, rows: int, n: int, width_px: int) -> tuple[Any, int]:
    """Gridspec of ``n`` image columns and a narrow colour-bar column, centred in the figure
    when it was widened to ``MIN_GRID_WIDTH_PX``; returns it and the first image column."""
    ratios = [1.0] * n + [_COLORBAR_RATIO]
    spare = width_px - (LABEL_PX + n * CELL_PX + COLORBAR_PX)
    if spare <= 0:
        return fig.add_gridspec(rows, len(ratios), width_ratios=ratios), 0
    pad = spare / 2 / CELL_PX
    return fig.add_gridspec(rows, len(ratios) + 2, width_ratios=[pad, *ratios, pad]), 1


def _save(fig: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return atomic_write_bytes(path, buffer.getvalue())


def _as_images(name: str, images: Any) -> np.ndarray:
    """(N, H, W) or (N, H, W, 3) float64 in [0, 1], clipped for display.

    (N, H, W, 1) is squeezed; uint8 is divided by 255.
    """
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
        raise ValueError(
            f"{name}: expected (N, H, W) or (N, H, W, 3) images, got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{name}: no images (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return np.clip(arr.astype(np.float64), 0.0, 1.0)


def _check_captions(func: str, captions: Sequence[str] | None, n: int) -> list[str] | None:
    if captions is None:
        return None
    caps = [str(c) for c in captions]
    if len(caps) != n:
        raise ValueError(f"{func}: {len(caps)} captions for {n} images")
    return caps


def _show_image(ax: Any, image: np.ndarray) -> None:
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(image)
    _bare(ax)


def _bare(ax: Any) -> None:
    """No ticks or grid, but keep axis labels usable for row labels and captions."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _finite_max(values: np.ndarray, *, default: float) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.max() <= 0:
        return default
    return float(finite.max())


def _moving_average(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred moving average that ignores non-finite values."""
    finite = np.isfinite(values)
    kernel = np.ones(window)
    sums = np.convolve(np.where(finite, values, 0.0), kernel, mode="valid")
    counts = np.convolve(finite.astype(np.float64), kernel, mode="valid")
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged = np.where(counts > 0, sums / counts, np.nan)
    centres = np.arange(averaged.size) + (window - 1) / 2
    return centres, averaged


def _group_colours(names: Sequence[str]) -> dict[str, str]:
    colours: dict[str, str] = {}
    k = 0
    for name in names:
        if name == NORMAL_GROUP:
            colours[name] = NORMAL_COLOR
        else:
            colours[name] = GROUP_PALETTE[k % len(GROUP_PALETTE)]
            k += 1
    return colours
