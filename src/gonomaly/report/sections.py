"""What each part of the HTML report shows: the saved files in, one context per template out.

:class:`ReportInputs` holds what :func:`gonomaly.report.html.build_report` read. Each
``*_section`` function draws that section's figures (PNG files in the report folder, through a
:class:`FigureDrawer`) and returns the values its template (``templates/<key>.html``) needs.
Nothing here writes HTML: strings from data reach the page only through the templates, which
escape them. Captions that carry markup are built with :class:`markupsafe.Markup`, which escapes
the values put into them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from markupsafe import Markup
from PIL import Image

from gonomaly.data import NORMAL_GROUP, PARTIAL_LABEL
from gonomaly.evaluation import METRICS_FILE, SCORES_FILE, slug
from gonomaly.report import plots
from gonomaly.report.examples import EXAMPLES_FILE
from gonomaly.report.formatting import count, fixed, general, is_missing, lookup, ratio, short
from gonomaly.store import CONFIG_FILE, HISTORY_FILE

__all__ = ["SECTIONS", "Figure", "FigureDrawer", "Note", "ReportInputs", "epoch_starts", "header"]

FLAG_MARK = "▲"  # marks a score above the threshold in image captions
ERROR_ROW_LABELS = ["image", "reconstruction", "(x − x̂)²"]
SCORE_DESCRIPTIONS = {"mse": "reconstruction MSE", "fused": "fused: negative log density among normals"}


@dataclass(frozen=True)
class Figure:
    """A PNG beside index.html: ``src`` is its URL-quoted name."""

    src: str
    width: int
    height: int
    alt: str
    caption: str | Markup


@dataclass(frozen=True)
class Note:
    """A highlighted remark in place of what could not be shown."""

    text: str


class FigureDrawer:
    """Draws figures into the report folder."""

    def __init__(self, report_dir: Path):
        self.dir = report_dir

    def __call__(self, name: str, plot: Callable[..., Path], *args: Any, caption: str | Markup,
                 alt: str, **kwargs: Any) -> Figure | Note:
        """Draw one PNG with ``plot(*args, path=..., **kwargs)``; a note if the plot refuses."""
        path = self.dir / name
        try:
            plot(*args, path=path, **kwargs)
        except ValueError as exc:
            return Note(f"{alt}: not drawn ({exc}).")
        with Image.open(path) as im:
            width, height = im.size
        return Figure(quote(name), width, height, alt, caption)


@dataclass
class ReportInputs:
    """The saved files of one evaluation (and its run folder, when given), as read."""

    metrics: dict
    scores: dict | None = None
    examples: dict | None = None
    config: dict | None = None
    history: dict | None = None
    have_run_dir: bool = False

    @property
    def threshold(self) -> float:
        return float(self.metrics["threshold"])

    @property
    def score_description(self) -> str:
        score = self.metrics.get("score") or lookup(self.config, "scoring", "score") or "mse"
        return SCORE_DESCRIPTIONS.get(score, score)

    @property
    def group_names(self) -> list[str]:
        """Every group of the metrics, scores and examples, normal first."""
        names = [str(g) for g in (self.metrics.get("groups") or {})]
        for source, key in ((self.scores, "groups"), (self.examples, "grid_groups")):
            if source is not None and key in source:
                names += [g for g in dict.fromkeys(str(x) for x in source[key]) if g not in names]
        return sorted(names, key=lambda g: g != NORMAL_GROUP)

    def files_used(self) -> list[str]:
        present = ((SCORES_FILE, self.scores), (EXAMPLES_FILE, self.examples),
                   (CONFIG_FILE, self.config), (HISTORY_FILE, self.history))
        return [METRICS_FILE] + [name for name, content in present if content is not None]

    def caption_scores(self, scores: np.ndarray) -> list[str]:
        return [f"{s:.3g}" + (f" {FLAG_MARK}" if s > self.threshold else "") for s in scores]


def epoch_starts(n_losses: int, config: Mapping[str, Any] | None) -> list[int] | None:
    """Step indices where epochs 2..E begin, from ``training.steps`` and
    ``hyperparameters.epochs``; None when they are missing or do not match the history."""
    steps, epochs = lookup(config, "training", "steps"), lookup(config, "hyperparameters", "epochs")
    if not isinstance(steps, int) or not isinstance(epochs, int) or epochs < 1:
        return None
    if steps != n_losses or steps % epochs:
        return None
    per_epoch = steps // epochs
    return [k * per_epoch for k in range(1, epochs)]


def missing_examples() -> Note:
    return Note(f"{EXAMPLES_FILE} not found in the evaluation folder: example images are "
                "omitted (it is written by gonomaly.report.examples.save_examples).")


# --------------------------------------------------------------------------------------------
# The header
# --------------------------------------------------------------------------------------------


def header(inputs: ReportInputs, version: str) -> dict[str, Any]:
    """Title, the details grid (label, value, wide) and the summary cards (label, value, hint)."""
    m, c = inputs.metrics, inputs.config
    model = m.get("model") or lookup(c, "model") or "?"
    rule = m.get("threshold_rule") or lookup(c, "threshold", "rule") or "?"
    n_normal, n_anomalous = m.get("n_normal"), m.get("n_anomalous")
    versions = f"gonomaly {version}"
    trained_with = lookup(c, "versions", "gonomaly")
    if trained_with and trained_with != version:
        versions += f" (model trained with {trained_with})"
    n_train = lookup(c, "training", "n_train")
    meta = [  # a grid of four columns, wide items span two
        ("Model", model, False),
        ("Test images", f"{(n_normal or 0) + (n_anomalous or 0):,} ({count(n_normal)} normal, "
                        f"{count(n_anomalous)} anomalous)", False),
        ("Dataset", m.get("dataset") or "?", True),
        ("Threshold rule", rule, False),
        ("Threshold", general(inputs.threshold), False),
        ("Data source", m.get("source") or "–", True),
        ("Training images", count(n_train), False),
        ("Version", versions, False),
    ]
    if n_train is None:  # no run folder: the evaluation does not know the training set
        meta = [item for item in meta if item[0] != "Training images"]
    confusion = m.get("confusion") or {}
    false_alarm = ratio(confusion.get("fp"), (confusion.get("fp") or 0) + (confusion.get("tn") or 0))
    cards = [
        ("AUROC", fixed(m.get("image_auroc"), 3), "image level, all groups pooled"),
        ("AUPR", fixed(m.get("image_aupr"), 3), "average precision"),
        ("F1", fixed(m.get("f1"), 3), "at the threshold"),
        ("Threshold", general(inputs.threshold, 4), str(rule)),
        ("Detection rate", fixed(m.get("recall"), 3), "anomalies flagged (recall)"),
        ("False-alarm rate", fixed(false_alarm, 3), "normal images flagged"),
    ]
    return {"model": model, "dataset": m.get("dataset") or "?", "meta": meta, "cards": cards}


# --------------------------------------------------------------------------------------------
# Sections, in page order
# --------------------------------------------------------------------------------------------


def groups_section(inputs: ReportInputs, draw: FigureDrawer) -> dict[str, Any]:
    """The per-group table and bar chart, and the pooled figures."""
    m, c = inputs.metrics, inputs.metrics.get("confusion") or {}
    groups = m.get("groups") or {}
    rows = [{"name": name, "normal": name == NORMAL_GROUP, "n": e.get("n"), "flagged": e.get("flagged"),
             "rate": ratio(e.get("flagged"), e.get("n")), "auroc": e.get("auroc")}
            for name, e in groups.items()]
    bars = None
    if groups:
        values = {name: {"auroc": math.nan if is_missing(e.get("auroc")) else float(e["auroc"]),
                         "flagged": e.get("flagged", 0), "n": e.get("n", 0)}
                  for name, e in groups.items()}
        bars = draw("group_bars.png", plots.plot_group_bars, values, alt="AUROC and detection rate per group",
                    caption="AUROC (purple) and detection rate (red; false-alarm rate in blue for the "
                            "normal group) per group. The dotted line is chance AUROC.")
    pooled = [
        ("threshold", general(inputs.threshold)),
        ("TN / FP / FN / TP", " / ".join(count(c.get(k)) for k in ("tn", "fp", "fn", "tp"))),
        ("accuracy", fixed(m.get("accuracy"))), ("precision", fixed(m.get("precision"))),
        ("recall", fixed(m.get("recall"))), ("F1", fixed(m.get("f1"))),
        ("image AUROC", fixed(m.get("image_auroc"))), ("image AUPR", fixed(m.get("image_aupr"))),
    ]
    return {"rows": rows, "metrics": m, "confusion": c, "threshold": general(inputs.threshold),
            "bars": bars, "pooled": pooled}


def scores_section(inputs: ReportInputs, draw: FigureDrawer) -> dict[str, Any]:
    """Score histograms per group, ROC and PR curves, and the confusion matrix."""
    s, threshold = inputs.scores, general(inputs.threshold)
    items: list[Figure | Note] = []
    if s is None or "scores" not in s:
        items.append(Note(f"{SCORES_FILE} not found: score histograms and ROC/PR curves are omitted."))
    else:
        values = np.asarray(s["scores"], dtype=np.float64)
        if "groups" in s:
            groups = np.asarray(s["groups"]).astype(str)
            by_group = {g: values[groups == g] for g in inputs.group_names if (groups == g).any()}
            items.append(draw(
                "score_histograms.png", plots.plot_score_histograms, by_group, inputs.threshold,
                alt="Anomaly score histograms per group",
                caption=f"Anomaly scores ({inputs.score_description}) per group, density-normalised; "
                        "scores beyond the axis are counted in the edge bins; the dashed line is the "
                        f"threshold {threshold}."))
        if "labels" in s:
            labels = np.asarray(s["labels"])
            pooled = labels != PARTIAL_LABEL  # uncertain defects are reported per group only
            items.append(draw(
                "roc_pr.png", plots.plot_roc_pr, labels[pooled], values[pooled],
                alt="ROC and precision-recall curves",
                caption="ROC and precision–recall curves over all test images (anomalous = positive class)."))
    c = inputs.metrics.get("confusion")
    if c:
        items.append(draw(
            "confusion_matrix.png", plots.plot_confusion_matrix,
            *(int(c.get(k, 0)) for k in ("tn", "fp", "fn", "tp")),
            alt="Confusion matrix at the threshold", caption=f"Confusion matrix at the threshold {threshold}."))
    return {"items": items}


def training_section(inputs: ReportInputs, draw: FigureDrawer) -> dict[str, Any]:
    """The loss curve and the training configuration."""
    if not inputs.have_run_dir:
        return {"items": [Note("No run folder given: the training loss and configuration are omitted.")],
                "settings": []}
    losses = lookup(inputs.history, "loss")
    if isinstance(losses, list) and losses:
        values = [math.nan if v is None else float(v) for v in losses]
        starts = epoch_starts(len(values), inputs.config)
        epochs = lookup(inputs.config, "hyperparameters", "epochs")
        caption = f"Training loss per step ({len(values):,} steps"
        caption += f", {epochs} epochs)" if isinstance(epochs, int) else ")"
        if starts:
            caption += "; dotted lines mark the start of each epoch"
        items = [draw("loss.png", plots.plot_loss_curve, values, epochs_at=starts,
                      alt="Training loss curve", caption=caption + ".")]
    else:
        items = [Note(f"{HISTORY_FILE} not found or empty: no loss curve.")]
    if inputs.config is None:
        items.append(Note(f"{CONFIG_FILE} not found: no training configuration."))
    return {"items": items, "settings": training_settings(inputs.config) if inputs.config else []}


def training_settings(config: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(name, value) rows: hyper-parameters, training figures, the data SPEC, training errors."""
    rows: list[tuple[str, Any]] = list((config.get("hyperparameters") or {}).items())
    training = config.get("training") or {}
    rows += [(key.replace("_", " "), training[key])
             for key in ("n_train", "steps", "seconds", "images_per_s", "final_loss") if key in training]
    spec = lookup(config, "data", "spec")
    if spec is not None:
        rows.append(("training data", spec))
    stats = lookup(config, "threshold", "train_errors")
    if isinstance(stats, Mapping):
        rows.append(("training errors", ", ".join(f"{k} {general(v, 4)}" for k, v in stats.items()
                                                  if isinstance(v, (int, float)))))
    return rows


def reconstructions_section(inputs: ReportInputs, draw: FigureDrawer) -> dict[str, Any]:
    """A grid of images, reconstructions and error maps per group."""
    ex = inputs.examples
    if ex is None or "grid_images" not in ex:
        return {"note": missing_examples()}
    groups = ex["grid_groups"].astype(str)
    rows = []
    for i, name in enumerate(g for g in inputs.group_names if (groups == g).any()):
        member = groups == name
        n_group = lookup(inputs.metrics, "groups", name, "n")
        title = f"{name}: {int(member.sum())} of {n_group:,}" if isinstance(n_group, int) else name
        rows.append({"name": name, "figure": draw(
            f"reconstructions_{i:02d}_{slug(name, max_length=40)}.png", plots.plot_reconstruction_grid,
            ex["grid_images"][member], ex["grid_reconstructions"][member],
            errors=ex["grid_maps"][member], captions=inputs.caption_scores(ex["grid_scores"][member]),
            row_labels=ERROR_ROW_LABELS, title=short(title, 60), alt=f"Reconstructions of {name} images",
            caption=Markup("{} group <b>{}</b>: image, reconstruction, squared error.").format(
                "Normal" if name == NORMAL_GROUP else "Anomalous", name))})
    return {"seed": int(ex.get("seed", 0)), "flag": FLAG_MARK, "threshold": general(inputs.threshold),
            "groups": rows}


def maps_section(inputs: ReportInputs, draw: FigureDrawer) -> dict[str, Any]:
    """Anomaly maps over the images beside the ground-truth masks, when there are masks."""
    ex = inputs.examples
    if ex is None:
        return {"item": missing_examples()}
    if "overlay_images" not in ex:
        return {"item": Note("The test set has no ground-truth masks: no anomaly-map overlays.")}
    if len(ex["overlay_images"]) == 0:
        return {"item": Note("No anomalous test image has a non-empty ground-truth mask.")}
    captions = [f"{short(g)}\n{s:.3g}" for g, s in zip(ex["overlay_groups"].astype(str), ex["overlay_scores"])]
    return {"item": draw(
        "anomaly_overlays.png", plots.plot_anomaly_overlays, ex["overlay_images"],
        ex["overlay_maps"], masks=ex["overlay_masks"], captions=captions,
        alt="Anomaly maps over the images, beside the ground-truth masks",
        caption="Anomalous test images (top), their anomaly maps over them with the "
                "ground-truth outline in white (middle), and the ground-truth masks (bottom).")}


MISTAKES = (  # (key in examples.npz, title, when there are none, what the images are)
    ("misses", "Missed anomalies", "No misses: every anomalous image scored above the threshold.",
     "Anomalous images with the lowest scores, all at or below the threshold"),
    ("false_alarms", "False alarms", "No false alarms: every normal image scored at or below the threshold.",
     "Normal images with the highest scores, all above the threshold"),
)


def mistakes_section(inputs: ReportInputs, draw: FigureDrawer) -> dict[str, Any]:
    """The most confident misses and false alarms: a grid and a table each."""
    ex = inputs.examples
    if ex is None or "misses_images" not in ex:
        return {"note": missing_examples()}
    kinds = []
    for key, title, empty, explain in MISTAKES:
        if len(ex[f"{key}_images"]) == 0:
            kinds.append({"title": title, "empty": empty})
            continue
        groups, scores = ex[f"{key}_groups"].astype(str), ex[f"{key}_scores"]
        table = [(d, g, general(s, 5)) for d, g, s in zip(ex[f"{key}_ids"].astype(str), groups, scores)]
        kinds.append({"title": title, "table": table, "figure": draw(
            f"{key}.png", plots.plot_reconstruction_grid, ex[f"{key}_images"], ex[f"{key}_reconstructions"],
            errors=ex[f"{key}_maps"], captions=[f"{short(g)}\n{s:.3g}" for g, s in zip(groups, scores)],
            row_labels=ERROR_ROW_LABELS, alt=title,
            caption=f"{explain} ({general(inputs.threshold)}); captions give the group and the score.")})
    return {"kinds": kinds}


def generative_section(inputs: ReportInputs, draw: FigureDrawer) -> dict[str, Any]:
    """Samples and latent interpolations, for detectors that make them."""
    ex = inputs.examples
    if ex is None:
        return {"note": missing_examples()}
    samples = interpolations = None
    if "samples" in ex and len(ex["samples"]):
        n = len(ex["samples"])
        samples = draw("samples.png", plots.plot_image_strip, ex["samples"], nrow=2 if n >= 2 else 1,
                       alt="Samples from the model", caption=f"{n} images decoded from random latents.")
    if "interpolations" in ex and len(ex["interpolations"]):
        rows = ex["interpolations"]
        pairs = ex.get("interpolation_ids")
        caption = Markup("Latent interpolations, one row per pair of normal test images, "
                         "{} steps from the first to the second").format(rows.shape[1])
        if pairs is not None:
            caption += Markup(": ") + Markup("; ").join(
                Markup("<code>{}</code> → <code>{}</code>").format(a, b) for a, b in pairs.astype(str))
        interpolations = draw(
            "interpolations.png", plots.plot_image_strip, rows.reshape((-1, *rows.shape[2:])), nrow=len(rows),
            alt="Latent interpolations between normal test images", caption=caption + Markup("."))
    if samples is None and interpolations is None:
        return {"note": Note("The detector has no sample() or interpolate(): no samples or interpolations.")}
    return {"samples": samples, "interpolations": interpolations}


def rendered_section(inputs: ReportInputs, draw: FigureDrawer) -> dict[str, Any]:
    """The implicit GON's reconstructions and anomaly maps at several times the resolution."""
    ex = inputs.examples
    if ex is None:
        return {"note": missing_examples()}
    if "rendered_reconstructions" not in ex:
        return {"note": Note("This model renders only at its training size; the implicit GON "
                             "renders reconstructions and anomaly maps at any resolution.")}
    images, rendered = ex["rendered_images"], ex["rendered_reconstructions"]
    scale = rendered.shape[1] // max(1, ex["grid_images"].shape[1])
    captions = [f"{short(g)}\n{s:.3g}" for g, s in zip(ex["rendered_groups"].astype(str),
                                                       ex["rendered_scores"])]
    return {"scale": scale, "rendering": draw(
        "rendered.png", plots.plot_reconstruction_grid, images, rendered, errors=ex["rendered_maps"],
        captions=captions, row_labels=["image (pixels repeated)", f"rendered {scale}x", "error map"],
        alt=f"Reconstructions and anomaly maps at {scale}x the training resolution",
        caption=Markup("Test images (each pixel repeated {0}x{0}), their latents rendered by the "
                       "SIREN on a grid {0} times finer, and the anomaly map there.").format(scale))}


# (key: the section's id and template name, title, the function that builds its context)
SECTIONS: tuple[tuple[str, str, Callable[[ReportInputs, FigureDrawer], dict[str, Any]]], ...] = (
    ("groups", "Results by group", groups_section),
    ("scores", "Score distributions", scores_section),
    ("training", "Training", training_section),
    ("reconstructions", "Reconstructions", reconstructions_section),
    ("maps", "Anomaly maps and ground truth", maps_section),
    ("mistakes", "Most confident mistakes", mistakes_section),
    ("generative", "Samples and interpolations", generative_section),
    ("rendered", "Rendering at a finer resolution", rendered_section),
)
