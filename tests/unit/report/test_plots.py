"""Tests for gonomaly.report.plots: each function writes a readable, non-blank PNG of known size."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from gonomaly.data import NORMAL_GROUP
from gonomaly.report import plots
from gonomaly.report.plots import (
    plot_anomaly_overlays,
    plot_confusion_matrix,
    plot_group_bars,
    plot_image_strip,
    plot_loss_curve,
    plot_reconstruction_grid,
    plot_roc_pr,
    plot_score_histograms,
    save_heatmap_overlay,
)

# A layout that collapses or a colour map misused shows up as a UserWarning: fail on it.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

MAX_PNG_BYTES = 200_000


def check_png(path: Path, size: tuple[int, int], *, min_colours: int = 8) -> Image.Image:
    """The file is a non-empty, small PNG of ``size`` (W, H) that is not blank."""
    assert path.is_file()
    n_bytes = path.stat().st_size
    assert 0 < n_bytes < MAX_PNG_BYTES, f"{path.name}: {n_bytes} bytes"
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == size
        rgb = im.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 24)
    assert colours is not None and len(colours) > min_colours, f"{path.name} looks blank"
    return rgb


def no_leftovers(folder: Path, expected: set[str]) -> None:
    """The atomic write left no temporary files behind."""
    assert {p.name for p in folder.iterdir()} == expected


@pytest.fixture()
def blurred(digits: np.ndarray) -> np.ndarray:
    """A stand-in 'reconstruction': the digits, blurred."""
    return np.stack([gaussian_filter(d, 1.0) for d in digits]).astype(np.float32)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_digits_fixture_is_real_mnist(digits: np.ndarray) -> None:
    assert digits.shape == (20, 28, 28) and digits.dtype == np.float32
    assert 0.0 <= digits.min() and digits.max() <= 1.0
    # Real digits: mostly black background, a bright stroke, about 10-20 % ink.
    ink = (digits > 0.5).mean(axis=(1, 2))
    assert np.all((ink > 0.03) & (ink < 0.4))
    assert digits[:, 0, :].max() == 0.0  # the top row of an MNIST digit is empty


# --- loss curve ---------------------------------------------------------------------------------


def test_loss_curve(tmp_path: Path, rng: np.random.Generator) -> None:
    steps = 600
    losses = 2.0 * np.exp(-np.arange(steps) / 120) + 0.02 + 0.05 * rng.random(steps)
    target = tmp_path / "loss.png"
    out = plot_loss_curve(list(losses), str(target), epochs_at=range(0, steps + 1, 100),
                          title="training")
    assert out == target and isinstance(out, Path)
    check_png(target, (800, 450))
    no_leftovers(tmp_path, {"loss.png"})


def test_loss_curve_short_and_with_nan(tmp_path: Path) -> None:
    check_png(plot_loss_curve([0.7], tmp_path / "one.png"), (800, 450))
    check_png(plot_loss_curve([1.0, np.nan, 0.5, -0.1], tmp_path / "nan.png"), (800, 450))


def test_loss_curve_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_loss_curve([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="epochs_at"):
        plot_loss_curve([1.0, 0.5, 0.2], tmp_path / "x.png", epochs_at=[0, 4])
    assert not (tmp_path / "x.png").exists()


# --- reconstruction grid ------------------------------------------------------------------------


def test_reconstruction_grid(tmp_path: Path, digits: np.ndarray, blurred: np.ndarray) -> None:
    x, x_hat = digits[:10], blurred[:10]
    scores = np.abs(x - x_hat).mean(axis=(1, 2))
    target = tmp_path / "nested" / "recon.png"  # missing folders are created
    out = plot_reconstruction_grid(
        x, x_hat, target, captions=[f"score {s:.3f}" for s in scores], title="reconstructions"
    )
    assert out == target
    # width: 30 (row labels) + 10 * 100 + 60 (colour bar); height: 3 * 100 + 28 + 30
    check_png(target, (1090, 358))
    no_leftovers(target.parent, {"recon.png"})


def test_reconstruction_grid_rgb_with_errors_and_labels(
    tmp_path: Path, digits: np.ndarray, blurred: np.ndarray
) -> None:
    rgb = np.stack([digits[:4], digits[4:8], digits[8:12]], axis=-1)
    rgb_hat = np.stack([blurred[:4], blurred[4:8], blurred[8:12]], axis=-1)
    errors = ((rgb - rgb_hat) ** 2).sum(axis=-1)
    out = plot_reconstruction_grid(rgb, rgb_hat, tmp_path / "rgb.png", errors=errors,
                                   row_labels=["x", "x_hat", "squared error"])
    # width: 30 + 4 * 100 + 60; height: 3 * 100
    check_png(out, (490, 300))


def test_reconstruction_grid_single_column_has_minimum_width(
    tmp_path: Path, digits: np.ndarray, blurred: np.ndarray
) -> None:
    out = plot_reconstruction_grid(digits[:1], blurred[:1], tmp_path / "one.png")
    check_png(out, (320, 300))  # 30 + 100 + 60 = 190 is widened to 320


def test_reconstruction_grid_rejects_mismatches(
    tmp_path: Path, digits: np.ndarray, blurred: np.ndarray
) -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        plot_reconstruction_grid(digits[:10], blurred[:9], tmp_path / "x.png")
    with pytest.raises(ValueError, match="captions"):
        plot_reconstruction_grid(digits[:3], blurred[:3], tmp_path / "x.png", captions=["a"])
    with pytest.raises(ValueError, match="errors"):
        plot_reconstruction_grid(digits[:3], blurred[:3], tmp_path / "x.png",
                                 errors=np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="row_labels"):
        plot_reconstruction_grid(digits[:3], blurred[:3], tmp_path / "x.png", row_labels=["a"])
    with pytest.raises(ValueError, match="images"):
        plot_reconstruction_grid(digits[0], blurred[0], tmp_path / "x.png")  # no N axis
    assert not (tmp_path / "x.png").exists()


# --- score histograms ---------------------------------------------------------------------------


def test_score_histograms_overlaid(tmp_path: Path, digits: np.ndarray, blurred: np.ndarray,
                                   rng: np.random.Generator) -> None:
    normal = np.abs(digits - blurred).mean(axis=(1, 2))
    groups = {
        "noise": normal + 0.05 + 0.01 * rng.random(20),
        NORMAL_GROUP: normal,
        "inverted": normal + 0.2 * rng.random(20),
    }
    threshold = float(np.quantile(normal, 0.95))
    out = plot_score_histograms(groups, threshold, tmp_path / "hist.png")
    assert out == tmp_path / "hist.png"
    rgb = np.asarray(check_png(out, (800, 450)))
    # The normal group is drawn in tab:blue (31, 119, 180).
    assert np.any(np.all(rgb == (31, 119, 180), axis=-1))


def test_score_histograms_single_group(tmp_path: Path, rng: np.random.Generator) -> None:
    out = plot_score_histograms({NORMAL_GROUP: rng.normal(0.1, 0.03, 500)}, 0.16,
                                tmp_path / "single.png")
    check_png(out, (800, 450))


def test_score_histograms_degenerate_groups(tmp_path: Path) -> None:
    groups = {NORMAL_GROUP: np.full(10, 0.3), "empty": np.array([]), "odd": [np.nan, 0.3, np.inf]}
    check_png(plot_score_histograms(groups, 0.3, tmp_path / "flat.png"), (800, 450))


def test_score_histograms_many_groups_use_panels(tmp_path: Path,
                                                 rng: np.random.Generator) -> None:
    groups = {NORMAL_GROUP: rng.normal(0.1, 0.03, 1000)}
    groups |= {f"class {k}": rng.normal(0.1 + 0.02 * k, 0.04, 200) for k in range(9)}
    out = plot_score_histograms(groups, 0.16, tmp_path / "many.png", title="per class")
    # 9 panels in rows of 4 -> 3 rows: 4 * 250 wide, 40 + 3 * 210 high.
    check_png(out, (1000, 670))
    # Without a normal group every group gets a panel: 7 panels -> 2 rows.
    no_normal = {f"class {k}": rng.normal(0.1 * k, 0.05, 100) for k in range(7)}
    check_png(plot_score_histograms(no_normal, 0.3, tmp_path / "seven.png"), (1000, 460))


def test_score_histograms_reject_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_score_histograms({}, 0.5, tmp_path / "x.png")
    with pytest.raises(ValueError, match="threshold"):
        plot_score_histograms({NORMAL_GROUP: [0.1, 0.2]}, float("nan"), tmp_path / "x.png")


# --- confusion matrix ---------------------------------------------------------------------------


def test_confusion_matrix(tmp_path: Path) -> None:
    out = plot_confusion_matrix(1820, 180, 95, 805, tmp_path / "cm.png", title="test set")
    assert out == tmp_path / "cm.png"
    check_png(out, (480, 420))


def test_confusion_matrix_with_empty_row(tmp_path: Path) -> None:
    check_png(plot_confusion_matrix(0, 0, 3, 7, tmp_path / "cm.png"), (480, 420))


def test_confusion_matrix_rejects_negative_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp"):
        plot_confusion_matrix(10, -1, 2, 3, tmp_path / "cm.png")
    with pytest.raises(ValueError, match="tp"):
        plot_confusion_matrix(10, 1, 2, 2.5, tmp_path / "cm.png")


# --- ROC / PR -----------------------------------------------------------------------------------


def test_roc_pr(tmp_path: Path, digits: np.ndarray, blurred: np.ndarray) -> None:
    # Digits vs the same digits with salt noise, scored by reconstruction error against a blur.
    rng = np.random.default_rng(0)
    noisy = np.clip(digits + (rng.random(digits.shape) < 0.05), 0, 1)
    scores = np.r_[np.abs(digits - blurred).mean(axis=(1, 2)),
                   np.abs(noisy - blurred).mean(axis=(1, 2))]
    labels = np.r_[np.zeros(20, dtype=int), np.ones(20, dtype=int)]
    out = plot_roc_pr(labels, scores, tmp_path / "roc.png", title="digits vs noisy digits")
    assert out == tmp_path / "roc.png"
    check_png(out, (1000, 450))


@pytest.mark.parametrize("labels", [np.zeros(30, dtype=int), np.ones(30, dtype=bool)])
def test_roc_pr_single_class_does_not_crash(tmp_path: Path, labels: np.ndarray) -> None:
    scores = np.linspace(0, 1, 30)
    check_png(plot_roc_pr(labels, scores, tmp_path / "single.png"), (1000, 450))


def test_roc_pr_empty_does_not_crash(tmp_path: Path) -> None:
    check_png(plot_roc_pr([], [], tmp_path / "empty.png"), (1000, 450))


def test_roc_pr_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        plot_roc_pr([0, 1, 1], [0.1, 0.2], tmp_path / "x.png")
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        plot_roc_pr([0, 2, 1], [0.1, 0.2, 0.3], tmp_path / "x.png")
    with pytest.raises(ValueError, match="not finite"):
        plot_roc_pr([0, 1], [0.1, np.nan], tmp_path / "x.png")


# --- group bars ---------------------------------------------------------------------------------


def test_group_bars(tmp_path: Path) -> None:
    groups = {
        NORMAL_GROUP: {"auroc": float("nan"), "flagged": 50, "n": 1000},
        "rotated": {"auroc": 0.91, "flagged": 270, "n": 300},
        "gaussian noise": {"auroc": 0.99, "detection_rate": 0.97},
        "digit 7 (unseen class)": {"auroc": 0.62, "flagged": 40, "n": 200},
        "inverted": {"auroc": 0.43, "detection_rate": 0.1, "n": 100},
    }
    out = plot_group_bars(groups, tmp_path / "bars.png", title="per group")
    assert out == tmp_path / "bars.png"
    check_png(out, (640, 480))  # max(640, 200 + 70 * 5) x 480
    assert plots.group_bars_size_px(5) == (640, 480)


def test_group_bars_many_groups_widen(tmp_path: Path, rng: np.random.Generator) -> None:
    groups = {f"contamination/type_{i}": {"auroc": float(rng.random()), "flagged": i, "n": 20}
              for i in range(12)}
    check_png(plot_group_bars(groups, tmp_path / "bars.png"), (1040, 480))  # 200 + 70 * 12


def test_group_bars_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_group_bars({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'auroc'"):
        plot_group_bars({"a": {"detection_rate": 0.5}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="detection_rate"):
        plot_group_bars({"a": {"auroc": 0.5}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        plot_group_bars({"a": {"auroc": 1.5, "detection_rate": 0.5}}, tmp_path / "x.png")


# --- image strip --------------------------------------------------------------------------------


def test_image_strip_with_captions(tmp_path: Path, digits: np.ndarray) -> None:
    captions = [f"#{i}\nscore {i / 20:.2f}" for i in range(20)]
    out = plot_image_strip(digits, tmp_path / "strip.png", captions=captions, nrow=2,
                           title="most confident misses")
    assert out == tmp_path / "strip.png"
    # 10 columns of 100; 2 rows of 100 + 28 caption, + 30 title.
    check_png(out, (1000, 286))


def test_image_strip_interpolation_rows(tmp_path: Path, digits: np.ndarray) -> None:
    t = np.linspace(0, 1, 8)[None, :, None, None]
    starts, ends = digits[0:3, None], digits[3:6, None]
    rows = ((1 - t) * starts + t * ends).reshape(-1, 28, 28)  # 3 interpolations of 8 steps
    check_png(plot_image_strip(rows, tmp_path / "interp.png", nrow=3), (800, 300))


def test_image_strip_small_and_rgb(tmp_path: Path, digits: np.ndarray) -> None:
    check_png(plot_image_strip(digits[:2], tmp_path / "two.png"), (320, 100))
    rgb = (np.stack([digits[:3]] * 3, axis=-1) * 255).astype(np.uint8)  # uint8 is accepted
    check_png(plot_image_strip(rgb, tmp_path / "rgb.png"), (320, 100))


def test_image_strip_rejects_bad_input(tmp_path: Path, digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="captions"):
        plot_image_strip(digits[:4], tmp_path / "x.png", captions=["a", "b"])
    with pytest.raises(ValueError, match="nrow"):
        plot_image_strip(digits[:4], tmp_path / "x.png", nrow=5)
    with pytest.raises(ValueError, match="nrow"):
        plot_image_strip(digits[:4], tmp_path / "x.png", nrow=0)


# --- anomaly overlays ---------------------------------------------------------------------------


def test_anomaly_overlays_with_masks(tmp_path: Path, digits: np.ndarray,
                                     blurred: np.ndarray) -> None:
    images = digits[:6].copy()
    masks = np.zeros_like(images, dtype=bool)
    masks[:, 4:10, 4:10] = True  # a synthetic defect: a bright square in the corner
    images[masks] = 1.0
    maps = np.abs(images - blurred[:6])
    out = plot_anomaly_overlays(images, maps, tmp_path / "overlay.png", masks=masks,
                                captions=[f"max {m.max():.2f}" for m in maps], title="maps")
    assert out == tmp_path / "overlay.png"
    # width: 30 + 6 * 100 + 60; height: 3 * 100 + 28 + 30
    check_png(out, (690, 358))


def test_anomaly_overlays_without_masks_and_coarse_maps(tmp_path: Path,
                                                        digits: np.ndarray) -> None:
    maps = digits[:4, ::4, ::4]  # 7 x 7 maps, stretched over 28 x 28 images
    check_png(plot_anomaly_overlays(digits[:4], maps, tmp_path / "o.png"), (490, 200))
    check_png(plot_anomaly_overlays(digits[:1], np.zeros((1, 28, 28)), tmp_path / "zero.png",
                                    vmax=1.0), (320, 200))


def test_anomaly_overlays_reject_mismatches(tmp_path: Path, digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="one map per image"):
        plot_anomaly_overlays(digits[:4], digits[:3], tmp_path / "x.png")
    with pytest.raises(ValueError, match="masks"):
        plot_anomaly_overlays(digits[:4], digits[:4], tmp_path / "x.png",
                              masks=np.zeros((4, 14, 14)))
    with pytest.raises(ValueError, match="captions"):
        plot_anomaly_overlays(digits[:4], digits[:4], tmp_path / "x.png", captions=["a"])


# --- heat-map overlay ---------------------------------------------------------------------------


def test_save_heatmap_overlay_keeps_image_size(tmp_path: Path, digits: np.ndarray) -> None:
    amap = np.zeros((28, 28))
    amap[20:26, 2:8] = 1.0  # hot corner
    out = save_heatmap_overlay(digits[0], amap, tmp_path / "heat.png")
    assert out == tmp_path / "heat.png"
    rgb = np.asarray(check_png(out, (28, 28))).astype(int)
    hot, cold = rgb[23, 5], rgb[2, 2]
    assert hot[0] > hot[2] + 50  # red where the map peaks ('jet' top)
    assert cold[2] > cold[0] + 50  # blue where it is zero ('jet' bottom)
    no_leftovers(tmp_path, {"heat.png"})


def test_save_heatmap_overlay_rgb_resized_map_and_vmax(tmp_path: Path,
                                                       digits: np.ndarray) -> None:
    image = np.zeros((40, 60, 3))
    image[6:34, 16:44, 1] = digits[1]
    small = gaussian_filter(np.random.default_rng(3).random((10, 15)), 1.0)
    out = save_heatmap_overlay(image, small, str(tmp_path / "rgb.png"), vmax=2 * small.max())
    assert isinstance(out, Path)
    check_png(out, (60, 40))  # PIL reports (W, H)


def test_save_heatmap_overlay_rejects_bad_map(tmp_path: Path, digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="anomaly_map"):
        save_heatmap_overlay(digits[0], np.zeros((2, 28, 28)), tmp_path / "x.png")


# --- shared behaviour ---------------------------------------------------------------------------


def test_overwrites_existing_file_atomically(tmp_path: Path, digits: np.ndarray) -> None:
    target = tmp_path / "strip.png"
    target.write_bytes(b"old")
    plot_image_strip(digits[:4], target)
    check_png(target, (400, 100))
    no_leftovers(tmp_path, {"strip.png"})


def test_sizes_follow_documented_constants() -> None:
    assert plots.DPI == 100
    assert plots.CELL_PX == 100 and plots.LABEL_PX == 30 and plots.COLORBAR_PX == 60
    assert plots.CAPTION_PX == 28 and plots.TITLE_PX == 30 and plots.MIN_GRID_WIDTH_PX == 320
    assert plots.HIST_GRID_COLS * plots.HIST_PANEL_PX[0] == 1000
    assert math.isclose(plots.HIST_GRID_HEADER_PX + 3 * plots.HIST_PANEL_PX[1], 670)
