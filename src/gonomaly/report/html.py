"""The self-contained HTML report: saved results in, ``index.html`` plus PNG figures out.

:func:`build_report` reads only files: ``metrics.json`` (required), ``scores.npz`` and
``examples.npz`` from the evaluation folder, and ``config.json`` and ``history.json`` from the
run folder when one is given. It never loads a model, and the same files give the same page.
A missing optional file drops the sections that need it, with a note saying so.

The page opens from disk with no network: inline CSS, no scripts, no web fonts, and figures as
PNG files beside ``index.html``, referenced by relative paths (copy the folder as a whole).
Every string that comes from data is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from gonomaly import __version__
from gonomaly.data.specs import NORMAL_GROUP
from gonomaly.errors import GonomalyError
from gonomaly.evaluation import METRICS_FILE, SCORES_FILE
from gonomaly.io import atomic_write_bytes
from gonomaly.report import plots
from gonomaly.report.examples import EXAMPLES_FILE

__all__ = ["REPORT_FILE", "build_report", "find_eval_dir"]

REPORT_FILE = "index.html"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
FLAG_MARK = "▲"  # marks a score above the threshold in image captions


def build_report(eval_dir: str | Path, report_dir: str | Path,
                 run_dir: str | Path | None = None) -> Path:
    """Write ``report_dir/index.html`` and its PNG figures; return the path of index.html.

    ``eval_dir`` holds ``metrics.json`` (required), ``scores.npz`` and ``examples.npz``
    (optional); ``run_dir`` (optional) holds ``config.json`` and ``history.json``. PNGs are
    written beside index.html under fixed names; index.html is written last, atomically.
    """
    eval_dir, report_dir = Path(eval_dir), Path(report_dir)
    metrics = _read_json(eval_dir / METRICS_FILE, required=True)
    if not isinstance(metrics, dict) or "threshold" not in metrics:
        raise GonomalyError(f"{eval_dir / METRICS_FILE}: not a gonomaly metrics file")
    scores = _read_npz(eval_dir / SCORES_FILE)
    examples = _read_npz(eval_dir / EXAMPLES_FILE)
    config = history = None
    if run_dir is not None:
        config = _read_json(Path(run_dir) / CONFIG_FILE)
        history = _read_json(Path(run_dir) / HISTORY_FILE)
    report = _Report(report_dir, metrics, scores, examples, config, history, run_dir is not None)
    page = report.render()
    return atomic_write_bytes(report_dir / REPORT_FILE, page.encode("utf-8"))


def find_eval_dir(run_dir: str | Path) -> Path:
    """The evaluation folder of a run: ``RUN_DIR/eval`` (what ``gonomaly run`` writes), else the
    only ``RUN_DIR/eval-*`` folder with a metrics.json (what ``gonomaly evaluate`` writes)."""
    run_dir = Path(run_dir)
    if (run_dir / "eval" / METRICS_FILE).is_file():
        return run_dir / "eval"
    found = sorted(p.parent for p in run_dir.glob(f"eval-*/{METRICS_FILE}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise GonomalyError(f"{run_dir}: no evaluation found (no eval/{METRICS_FILE} or "
                            f"eval-*/{METRICS_FILE}); run 'gonomaly evaluate' first or pass --eval")
    names = ", ".join(p.name for p in found)
    raise GonomalyError(f"{run_dir}: several evaluations ({names}); choose one with --eval")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _read_json(path: Path, *, required: bool = False) -> Any:
    if not path.is_file():
        if required:
            raise GonomalyError(f"{path}: not found (is this a gonomaly evaluation folder?)")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GonomalyError(f"{path}: not valid JSON ({exc})") from None


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise GonomalyError(f"{path}: cannot read ({exc})") from None


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fixed(value: Any, digits: int = 4) -> str:
    return "–" if _is_missing(value) else f"{float(value):.{digits}f}"


def _general(value: Any, digits: int = 6) -> str:
    return "–" if _is_missing(value) else f"{float(value):.{digits}g}"


def _count(value: Any) -> str:
    return "–" if _is_missing(value) else f"{int(value):,}"


def _ratio(a: Any, b: Any) -> float | None:
    try:
        return float(a) / float(b) if b else None
    except (TypeError, ValueError):
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "group"


def _short(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def epoch_starts(n_losses: int, config: Mapping[str, Any] | None) -> list[int] | None:
    """Step indices where epochs 2..E begin, from ``training.steps`` and
    ``hyperparameters.epochs``; None when they are missing or do not match the history."""
    steps, epochs = _get(config, "training", "steps"), _get(config, "hyperparameters", "epochs")
    if not isinstance(steps, int) or not isinstance(epochs, int) or epochs < 1:
        return None
    if steps != n_losses or steps % epochs:
        return None
    per_epoch = steps // epochs
    return [k * per_epoch for k in range(1, epochs)]


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


class _Report:
    def __init__(self, report_dir: Path, metrics: dict, scores: dict | None,
                 examples: dict | None, config: Any, history: Any, have_run_dir: bool):
        self.dir = report_dir
        self.metrics = metrics
        self.scores = scores
        self.examples = examples
        self.config = config if isinstance(config, dict) else None
        self.history = history if isinstance(history, dict) else None
        self.have_run_dir = have_run_dir
        self.threshold = float(metrics["threshold"])
        score = metrics.get("score") or _get(self.config, "scoring", "score") or "mse"
        self.score_description = {"mse": "reconstruction MSE",
                                  "fused": "fused: negative log density among normals"}.get(score, score)
        self.group_names = self._group_names()

    # -- helpers -------------------------------------------------------------------------------
    def _group_names(self) -> list[str]:
        names = [str(g) for g in (self.metrics.get("groups") or {})]
        for source, key in ((self.scores, "groups"), (self.examples, "grid_groups")):
            if source is not None and key in source:
                for g in dict.fromkeys(str(x) for x in source[key]):
                    if g not in names:
                        names.append(g)
        return sorted(names, key=lambda g: g != NORMAL_GROUP)

    def figure(self, name: str, plot: Callable[..., Path], *args: Any, caption: str,
               alt: str, **kwargs: Any) -> str:
        """Draw one PNG into the report folder and return its <figure>, or a note on failure."""
        path = self.dir / name
        try:
            plot(*args, path=path, **kwargs)
        except ValueError as exc:
            return _note(f"{alt}: not drawn ({exc}).")
        with Image.open(path) as im:
            width, height = im.size
        return (f'<figure><img src="{_e(quote(name))}" width="{width}" height="{height}" '
                f'alt="{_e(alt)}"><figcaption>{caption}</figcaption></figure>')

    def caption_scores(self, scores: np.ndarray) -> list[str]:
        return [f"{s:.3g}" + (f" {FLAG_MARK}" if s > self.threshold else "") for s in scores]

    # -- sections ------------------------------------------------------------------------------
    def render(self) -> str:
        sections = [
            ("groups", "Results by group", self.section_groups()),
            ("scores", "Score distributions", self.section_scores()),
            ("training", "Training", self.section_training()),
            ("reconstructions", "Reconstructions", self.section_reconstructions()),
            ("maps", "Anomaly maps and ground truth", self.section_maps()),
            ("mistakes", "Most confident mistakes", self.section_mistakes()),
            ("generative", "Samples and interpolations", self.section_generative()),
        ]
        toc = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections)
        body = [self.header(), f'<nav class="toc">{toc}</nav>']
        for key, title, content in sections:
            body.append(f'<section id="{key}"><h2>{_e(title)}</h2>\n{content}\n</section>')
        body.append(self.footer())
        title = f"gonomaly report: {self.metrics.get('model', '?')} on {self.metrics.get('dataset', '?')}"
        return _PAGE.format(title=_e(title), css=_CSS, version=_e(__version__),
                            body="\n".join(body))

    def header(self) -> str:
        m, c = self.metrics, self.config
        model = m.get("model") or _get(c, "model") or "?"
        dataset = m.get("dataset") or "?"
        n_normal, n_anomalous = m.get("n_normal"), m.get("n_anomalous")
        n_total = (n_normal or 0) + (n_anomalous or 0)
        rule = m.get("threshold_rule") or _get(c, "threshold", "rule") or "?"
        versions = f"gonomaly {__version__}"
        trained_with = _get(c, "versions", "gonomaly")
        if trained_with and trained_with != __version__:
            versions += f" (model trained with {trained_with})"
        n_train = _get(c, "training", "n_train")
        meta = [  # (label, value, wide): a grid of four columns, wide items span two
            ("Model", model, False),
            ("Test images", f"{n_total:,} ({_count(n_normal)} normal, "
                            f"{_count(n_anomalous)} anomalous)", False),
            ("Dataset", dataset, True),
            ("Threshold rule", rule, False),
            ("Threshold", _general(self.threshold), False),
            ("Data source", m.get("source") or "–", True),
            ("Training images", _count(n_train), False),
            ("Version", versions, False),
        ]
        if n_train is None:  # no run folder: the evaluation does not know the training set
            meta = [item for item in meta if item[0] != "Training images"]
        items = "".join(
            f'<div class="item{" wide" if wide else ""}"><div class="k">{_e(k)}</div>'
            f'<div class="v">{_e(v)}</div></div>'
            for k, v, wide in meta
        )
        confusion = m.get("confusion") or {}
        false_alarm = _ratio(confusion.get("fp"), (confusion.get("fp") or 0) + (confusion.get("tn") or 0))
        cards = [
            ("AUROC", _fixed(m.get("image_auroc"), 3), "image level, all groups pooled"),
            ("AUPR", _fixed(m.get("image_aupr"), 3), "average precision"),
            ("F1", _fixed(m.get("f1"), 3), "at the threshold"),
            ("Threshold", _general(self.threshold, 4), str(rule)),
            ("Detection rate", _fixed(m.get("recall"), 3), "anomalies flagged (recall)"),
            ("False-alarm rate", _fixed(false_alarm, 3), "normal images flagged"),
        ]
        card_html = "".join(
            f'<div class="card"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(value)}</div><div class="hint">{_e(hint)}</div></div>'
            for label, value, hint in cards
        )
        return (f'<header class="top"><h1>Anomaly detection report</h1>'
                f'<p class="subtitle">{_e(model)} on <code>{_e(dataset)}</code></p>'
                f'<div class="meta">{items}</div></header>\n<div class="cards">{card_html}</div>')

    def section_groups(self) -> str:
        m = self.metrics
        groups = m.get("groups") or {}
        parts = []
        if groups:
            rows = []
            for name, entry in groups.items():
                rate = _ratio(entry.get("flagged"), entry.get("n"))
                normal = name == NORMAL_GROUP
                bar = ""
                if rate is not None:
                    bar = (f'<span class="ratebar{" normal" if normal else ""}">'
                           f'<span style="width:{100 * rate:.1f}%"></span></span>')
                rows.append(
                    f'<tr><td>{_e(name)}</td><td class="t">{"normal" if normal else "anomalous"}</td>'
                    f"<td>{_count(entry.get('n'))}</td><td>{_count(entry.get('flagged'))}</td>"
                    f"<td>{_fixed(rate, 3)}{bar}</td><td>{_fixed(entry.get('auroc'))}</td></tr>"
                )
            c = m.get("confusion") or {}
            if m.get("n_anomalous"):
                rows.append(
                    f'<tr class="pooled"><td>all anomalous</td><td class="t">pooled</td>'
                    f"<td>{_count(m.get('n_anomalous'))}</td><td>{_count(c.get('tp'))}</td>"
                    f"<td>{_fixed(m.get('recall'), 3)}</td><td>{_fixed(m.get('image_auroc'))}</td></tr>"
                )
            parts.append(
                '<table class="groups"><thead><tr><th>group</th><th class="t">class</th><th>n</th>'
                "<th>flagged</th><th>rate</th><th>AUROC vs normal</th></tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>"
                '<p class="small">rate = flagged / n: the detection rate of an anomaly group, '
                f"the false-alarm rate of the normal group; flagged means score &gt; "
                f"{_e(_general(self.threshold))}. Each group's AUROC is measured against the "
                "normal images.</p>"
            )
            bars = {name: {"auroc": math.nan if _is_missing(e.get("auroc")) else float(e["auroc"]),
                           "flagged": e.get("flagged", 0), "n": e.get("n", 0)}
                    for name, e in groups.items()}
            parts.append(self.figure(
                "group_bars.png", plots.plot_group_bars, bars, alt="AUROC and detection rate per group",
                caption="AUROC (purple) and detection rate (red; false-alarm rate in blue for the "
                        "normal group) per group. The dotted line is chance AUROC."))
        else:
            parts.append(_note("metrics.json has no per-group results."))
        c = m.get("confusion") or {}
        pooled = [
            ("threshold", _general(self.threshold)),
            ("TN / FP / FN / TP", " / ".join(_count(c.get(k)) for k in ("tn", "fp", "fn", "tp"))),
            ("accuracy", _fixed(m.get("accuracy"))), ("precision", _fixed(m.get("precision"))),
            ("recall", _fixed(m.get("recall"))), ("F1", _fixed(m.get("f1"))),
            ("image AUROC", _fixed(m.get("image_auroc"))), ("image AUPR", _fixed(m.get("image_aupr"))),
        ]
        parts.append('<h3>Pooled figures</h3><table class="pooled-table"><tbody>'
                     + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pooled)
                     + "</tbody></table>")
        return "\n".join(parts)

    def section_scores(self) -> str:
        parts = []
        s = self.scores
        if s is None or "scores" not in s:
            parts.append(_note(f"{SCORES_FILE} not found: score histograms and ROC/PR curves "
                               "are omitted."))
        else:
            values = np.asarray(s["scores"], dtype=np.float64)
            if "groups" in s:
                groups = np.asarray(s["groups"]).astype(str)
                by_group = {g: values[groups == g] for g in self.group_names if (groups == g).any()}
                parts.append(self.figure(
                    "score_histograms.png", plots.plot_score_histograms, by_group, self.threshold,
                    alt="Anomaly score histograms per group",
                    caption=f"Anomaly scores ({_e(self.score_description)}) per group, "
                            "density-normalised; scores beyond the axis are counted in the edge "
                            f"bins; the dashed line is the threshold {_e(_general(self.threshold))}."))
            if "labels" in s:
                parts.append(self.figure(
                    "roc_pr.png", plots.plot_roc_pr, np.asarray(s["labels"]), values,
                    alt="ROC and precision-recall curves",
                    caption="ROC and precision–recall curves over all test images "
                            "(anomalous = positive class)."))
        c = self.metrics.get("confusion")
        if c:
            parts.append(self.figure(
                "confusion_matrix.png", plots.plot_confusion_matrix,
                *(int(c.get(k, 0)) for k in ("tn", "fp", "fn", "tp")),
                alt="Confusion matrix at the threshold",
                caption=f"Confusion matrix at the threshold {_e(_general(self.threshold))}."))
        return "\n".join(parts)

    def section_training(self) -> str:
        if not self.have_run_dir:
            return _note("No run folder given: the training loss and configuration are omitted.")
        parts = []
        losses = _get(self.history, "loss")
        if isinstance(losses, list) and losses:
            values = [math.nan if v is None else float(v) for v in losses]
            starts = epoch_starts(len(values), self.config)
            epochs = _get(self.config, "hyperparameters", "epochs")
            caption = f"Training loss per step ({len(values):,} steps"
            caption += f", {epochs} epochs)" if isinstance(epochs, int) else ")"
            if starts:
                caption += "; dotted lines mark the start of each epoch"
            parts.append(self.figure("loss.png", plots.plot_loss_curve, values, epochs_at=starts,
                                     alt="Training loss curve", caption=_e(caption) + "."))
        else:
            parts.append(_note(f"{HISTORY_FILE} not found or empty: no loss curve."))
        if self.config is None:
            parts.append(_note(f"{CONFIG_FILE} not found: no training configuration."))
            return "\n".join(parts)
        rows: list[tuple[str, Any]] = []
        for key, value in (self.config.get("hyperparameters") or {}).items():
            rows.append((key, value))
        training = self.config.get("training") or {}
        for key in ("n_train", "steps", "seconds", "images_per_s", "final_loss"):
            if key in training:
                rows.append((key.replace("_", " "), training[key]))
        spec = _get(self.config, "data", "spec")
        if spec is not None:
            rows.append(("training data", spec))
        stats = _get(self.config, "threshold", "train_errors")
        if isinstance(stats, Mapping):
            summary = ", ".join(f"{k} {_general(v, 4)}" for k, v in stats.items()
                                if isinstance(v, (int, float)))
            rows.append(("training errors", summary))
        if rows:
            parts.append('<table class="kv"><tbody>' + "".join(
                f"<tr><th>{_e(k)}</th><td>{_e(_plain(v))}</td></tr>" for k, v in rows
            ) + "</tbody></table>")
        return "\n".join(parts)

    def _missing_examples(self) -> str:
        return _note(f"{EXAMPLES_FILE} not found in the evaluation folder: example images are "
                     "omitted (it is written by gonomaly.report.examples.save_examples).")

    def section_reconstructions(self) -> str:
        ex = self.examples
        if ex is None or "grid_images" not in ex:
            return self._missing_examples()
        groups = ex["grid_groups"].astype(str)
        parts = [f'<p class="small">Columns are test images chosen at random (seed '
                 f'{_e(int(ex.get("seed", 0)))}). Rows: the image, its reconstruction and the '
                 f"per-pixel squared error (the anomaly map). Above each column: the score, "
                 f"{FLAG_MARK} when it is above the threshold {_e(_general(self.threshold))}.</p>"]
        names = [g for g in self.group_names if (groups == g).any()]
        for i, name in enumerate(names):
            member = groups == name
            n_group = _get(self.metrics, "groups", name, "n")
            title = f"{name}: {int(member.sum())} of {n_group:,}" if isinstance(n_group, int) else name
            parts.append(f"<h3>{_e(name)}</h3>")
            parts.append(self.figure(
                f"reconstructions_{i:02d}_{_slug(name)}.png", plots.plot_reconstruction_grid,
                ex["grid_images"][member], ex["grid_reconstructions"][member],
                errors=ex["grid_maps"][member], captions=self.caption_scores(ex["grid_scores"][member]),
                row_labels=["image", "reconstruction", "(x − x̂)²"], title=_short(title, 60),
                alt=f"Reconstructions of {name} images",
                caption=f"{'Normal' if name == NORMAL_GROUP else 'Anomalous'} group "
                        f"<b>{_e(name)}</b>: image, reconstruction, squared error."))
        return "\n".join(parts)

    def section_maps(self) -> str:
        ex = self.examples
        if ex is None:
            return self._missing_examples()
        if "overlay_images" not in ex:
            return _note("The test set has no ground-truth masks: no anomaly-map overlays.")
        if len(ex["overlay_images"]) == 0:
            return _note("No anomalous test image has a non-empty ground-truth mask.")
        captions = [f"{_short(g)}\n{s:.3g}" for g, s in
                    zip(ex["overlay_groups"].astype(str), ex["overlay_scores"])]
        return self.figure(
            "anomaly_overlays.png", plots.plot_anomaly_overlays, ex["overlay_images"],
            ex["overlay_maps"], masks=ex["overlay_masks"], captions=captions,
            alt="Anomaly maps over the images, beside the ground-truth masks",
            caption="Anomalous test images (top), their anomaly maps over them with the "
                    "ground-truth outline in white (middle), and the ground-truth masks (bottom).")

    def section_mistakes(self) -> str:
        ex = self.examples
        if ex is None or "misses_images" not in ex:
            return self._missing_examples()
        parts = []
        for key, title, empty, explain in (
            ("misses", "Missed anomalies", "No misses: every anomalous image scored above the "
             "threshold.", "Anomalous images with the lowest scores, all at or below the threshold"),
            ("false_alarms", "False alarms", "No false alarms: every normal image scored at or "
             "below the threshold.", "Normal images with the highest scores, all above the threshold"),
        ):
            parts.append(f"<h3>{_e(title)}</h3>")
            images = ex[f"{key}_images"]
            if len(images) == 0:
                parts.append(f'<p class="small">{_e(empty)}</p>')
                continue
            groups = ex[f"{key}_groups"].astype(str)
            scores = ex[f"{key}_scores"]
            ids = ex[f"{key}_ids"].astype(str)
            captions = [f"{_short(g)}\n{s:.3g}" for g, s in zip(groups, scores)]
            parts.append(self.figure(
                f"{key}.png", plots.plot_reconstruction_grid, images, ex[f"{key}_reconstructions"],
                errors=ex[f"{key}_maps"], captions=captions,
                row_labels=["image", "reconstruction", "(x − x̂)²"],
                alt=title, caption=f"{_e(explain)} ({_e(_general(self.threshold))}); "
                                   "captions give the group and the score."))
            rows = "".join(f'<tr><td>{i + 1}</td><td class="t"><code>{_e(d)}</code></td>'
                           f'<td class="t">{_e(g)}</td><td>{_general(s, 5)}</td></tr>'
                           for i, (d, g, s) in enumerate(zip(ids, groups, scores)))
            parts.append('<table class="mistakes"><thead><tr><th>#</th><th class="t">image</th>'
                         f'<th class="t">group</th><th>score</th></tr></thead><tbody>{rows}</tbody></table>')
        return "\n".join(parts)

    def section_generative(self) -> str:
        ex = self.examples
        if ex is None:
            return self._missing_examples()
        parts = []
        if "samples" in ex and len(ex["samples"]):
            samples = ex["samples"]
            nrow = 2 if len(samples) >= 2 else 1
            parts.append("<h3>Samples</h3>")
            parts.append(self.figure(
                "samples.png", plots.plot_image_strip, samples, nrow=nrow,
                alt="Samples from the model",
                caption=f"{len(samples)} images decoded from random latents."))
        if "interpolations" in ex and len(ex["interpolations"]):
            rows = ex["interpolations"]
            pairs = ex.get("interpolation_ids")
            flat = rows.reshape((-1, *rows.shape[2:]))
            caption = (f"Latent interpolations, one row per pair of normal test images, "
                       f"{rows.shape[1]} steps from the first to the second")
            if pairs is not None:
                caption += ": " + "; ".join(f"<code>{_e(a)}</code> → <code>{_e(b)}</code>"
                                            for a, b in pairs.astype(str))
            parts.append("<h3>Interpolations</h3>")
            parts.append(self.figure(
                "interpolations.png", plots.plot_image_strip, flat, nrow=len(rows),
                alt="Latent interpolations between normal test images", caption=caption + "."))
        if not parts:
            return _note("The detector has no sample() or interpolate(): no samples or "
                         "interpolations.")
        return "\n".join(parts)

    def footer(self) -> str:
        used = [METRICS_FILE]
        used += [SCORES_FILE] if self.scores is not None else []
        used += [EXAMPLES_FILE] if self.examples is not None else []
        used += [CONFIG_FILE] if self.config is not None else []
        used += [HISTORY_FILE] if self.history is not None else []
        files = ", ".join(f"<code>{_e(f)}</code>" for f in used)
        return (f"<footer>Built by gonomaly {_e(__version__)} from {files}. The page is "
                "self-contained: keep the PNG files beside index.html.</footer>")


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return _general(value, 6)
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return str(value)


_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d8dee4; --soft: #f6f8fa; --accent: #0969da;
        --bad: #cf222e; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
             "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; line-height: 1.25; margin: 0 0 2px; }
h2 { font-size: 20px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
       font-size: 0.9em; background: var(--soft); padding: 0 4px; border-radius: 4px;
       overflow-wrap: anywhere; }
header.top { padding-bottom: 16px; border-bottom: 1px solid var(--line); }
.subtitle { margin: 0 0 14px; color: var(--muted); font-size: 16px; }
.meta { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 10px 20px; font-size: 14px; }
.meta .wide { grid-column: span 2; }
.meta .k { font-size: 12px; color: var(--muted); }
.meta .v { overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px;
         margin: 20px 0 8px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--soft); }
.card .label { font-size: 12px; letter-spacing: 0.04em; text-transform: uppercase; color: var(--muted); }
.card .value { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .hint { font-size: 12px; color: var(--muted); }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 16px 0 4px; font-size: 14px; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
section { margin-top: 36px; }
figure { margin: 14px 0 18px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
             border-radius: 4px; }
figcaption { margin-top: 6px; font-size: 13px; color: var(--muted); max-width: 900px; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; margin: 6px 0; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; }
th:first-child, td:first-child, th.t, td.t { text-align: left; }
thead th { background: var(--soft); font-weight: 600; }
table.kv th, table.pooled-table th { text-align: left; font-weight: normal; color: var(--muted); }
table.kv td, table.pooled-table td { text-align: left; }
tr.pooled td { font-weight: 600; border-top: 2px solid var(--line); }
.ratebar { display: inline-block; width: 70px; height: 8px; margin-left: 8px; vertical-align: middle;
           background: #eaeef2; border-radius: 4px; overflow: hidden; }
.ratebar span { display: block; height: 100%; background: var(--bad); }
.ratebar.normal span { background: var(--accent); }
.small { font-size: 13px; color: var(--muted); max-width: 900px; }
.note { padding: 8px 12px; font-size: 14px; background: #fff8c5; border: 1px solid #eac54f;
        border-radius: 6px; }
footer { margin-top: 40px; padding-top: 12px; border-top: 1px solid var(--line); font-size: 13px;
         color: var(--muted); }
@media (max-width: 700px) { .meta { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
""".strip()

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'">
<meta name="generator" content="gonomaly {version}">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
{css}
</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""
