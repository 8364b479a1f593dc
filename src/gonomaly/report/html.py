"""The self-contained HTML report: saved results in, ``index.html`` plus PNG figures out.

:func:`build_report` reads only files: ``metrics.json`` (required), ``scores.npz`` and
``examples.npz`` from the evaluation folder, and ``config.json`` and ``history.json`` from the
run folder when one is given. It never loads a model, and the same files give the same page.
A missing optional file drops the sections that need it, with a note saying so.

The page opens from disk with no network: inline CSS, no scripts, no web fonts, and figures as
PNG files beside ``index.html``, referenced by relative paths (copy the folder as a whole).
Every string that comes from data is HTML-escaped.

The page is put together from Jinja templates (``templates/``, autoescaping on): ``page.html``
holds the header (``header.html``) and one template per section, named by its id, whose values
:mod:`gonomaly.report.sections` computes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup

from gonomaly import __version__
from gonomaly.errors import GonomalyError
from gonomaly.evaluation import METRICS_FILE, SCORES_FILE
from gonomaly.io import atomic_write_bytes
from gonomaly.report.examples import EXAMPLES_FILE
from gonomaly.report.formatting import count, fixed, general, plain
from gonomaly.report.sections import SECTIONS, FigureDrawer, ReportInputs, epoch_starts, header
from gonomaly.store import CONFIG_FILE, HISTORY_FILE

__all__ = ["REPORT_FILE", "build_report", "epoch_starts", "find_eval_dir", "render_page"]

REPORT_FILE = "index.html"


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
    inputs = ReportInputs(metrics, scores, examples, config if isinstance(config, dict) else None,
                          history if isinstance(history, dict) else None, have_run_dir=run_dir is not None)
    page = render_page(inputs, report_dir)
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
# The page
# --------------------------------------------------------------------------------------------

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("gonomaly.report", "templates"),
    autoescape=True,  # every string from data is escaped; markup comes only from the templates
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_TEMPLATES.filters.update(fixed=fixed, general=general, number=count, plain=plain)


def render_page(inputs: ReportInputs, report_dir: Path) -> str:
    """The HTML of the page; draws its figures into ``report_dir`` on the way."""
    draw = FigureDrawer(report_dir)
    sections = [{"key": key, "title": title,  # each section's HTML, escaped by its own template
                 "html": Markup(_TEMPLATES.get_template(f"{key}.html").render(build(inputs, draw)))}
                for key, title, build in SECTIONS]
    m = inputs.metrics
    return _TEMPLATES.get_template("page.html").render(
        title=f"gonomaly report: {m.get('model', '?')} on {m.get('dataset', '?')}",
        version=__version__, header=header(inputs, __version__), sections=sections,
        files=inputs.files_used())
