"""``gonomaly score`` over a folder where some files are bad: every readable image is scored as
the detector scores it, each unreadable one is reported on its own line (the per-image error
path ``gonomaly serve`` uses too), a summary ends the output, and the exit code is 1;
``--on-error fail`` stops at the first bad file as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import run_cli
from serve_helpers import nan_tiff_bytes, png_bytes, train_run_folder

MAX_PIXELS = 28 * 28  # the digits are exactly at the limit; a 32x32 image is over it
GOOD = {"a_digit0.png": 0, "c_digit1.png": 1, "f_sixteen_bit.png": 2, "h_palette.png": 3, "k_digit4.png": 4}
BAD = {  # file -> words of its error
    "b_notes.png": "cannot read image",
    "d_empty.png": "empty file",
    "e_truncated.png": "cannot read image",
    "g_too_big.png": "above the limit of 784 pixels",
    "i_nan.tiff": "image contains NaN or inf values",
    "j_colour.png": "colour image",
}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return train_run_folder(tmp_path_factory.mktemp("batch") / "run")


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, run_folder):
    """Five good digits (two of them 16-bit and palette PNGs) among one file of each bad kind."""
    digits = run_folder[1]
    folder = tmp_path_factory.mktemp("mixed")
    for name, index in GOOD.items():
        variant = {"f_sixteen_bit.png": {"bits": 16}, "h_palette.png": {"mode": "P"}}.get(name, {})
        (folder / name).write_bytes(png_bytes(digits[index], **variant))
    full = png_bytes(digits[5])
    colour = np.stack([digits[6][0], np.zeros_like(digits[6][0]), digits[6][0]])
    contents = {"b_notes.png": b"hello, I am not an image", "d_empty.png": b"",
                "e_truncated.png": full[: len(full) // 2], "g_too_big.png": png_bytes(np.zeros((1, 32, 32))),
                "i_nan.tiff": nan_tiff_bytes(28, 28), "j_colour.png": png_bytes(colour)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return folder


def expected_scores(run_folder) -> dict[str, float]:
    from gonomaly.detector import ReconstructionDetector

    run_dir, digits = run_folder
    scores = ReconstructionDetector.load(run_dir).score_samples(digits[list(GOOD.values())])
    return dict(zip(GOOD, scores.tolist()))


@pytest.mark.parametrize("workers", [0, 2])
def test_every_readable_file_is_scored_and_every_bad_one_reported(run_folder, mixed_folder, capsys, workers):
    """Batches of 3 mix good and bad files (and one batch holds only bad ones); with workers
    the errors travel back from the DataLoader's processes per file."""
    code, out, err = run_cli(capsys, "score", str(run_folder[0]), str(mixed_folder), "--json",
                             "--max-pixels", str(MAX_PIXELS), "--batch-size", "3", "--workers", str(workers))
    assert code == 1, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["path"] for line in lines] == [str(mixed_folder / name) for name in sorted({**GOOD, **BAD})]
    expected = expected_scores(run_folder)
    for line in lines:
        name = line["path"].rsplit("/", 1)[1]
        if name in GOOD:
            assert set(line) == {"path", "score", "label"}
            assert line["score"] == pytest.approx(expected[name], abs=1e-6)
        else:
            assert set(line) == {"path", "error"} and line["error"].startswith(line["path"] + ": ")
            assert BAD[name] in line["error"], line
    assert err.strip().splitlines() == ["gonomaly: 5 image(s) scored, 6 could not be read"]


def test_text_output_keeps_scores_on_stdout_and_errors_on_stderr(run_folder, mixed_folder, capsys):
    code, out, err = run_cli(capsys, "score", str(run_folder[0]), str(mixed_folder),
                             "--max-pixels", str(MAX_PIXELS))
    assert code == 1
    expected = expected_scores(run_folder)
    rows = [line.split("\t") for line in out.splitlines()]
    assert [row[0] for row in rows] == [str(mixed_folder / name) for name in GOOD]
    for path, value, decision in rows:
        assert float(value) == pytest.approx(expected[path.rsplit("/", 1)[1]], rel=1e-5)
        assert decision in ("normal", "anomalous")
    errors = err.strip().splitlines()
    assert errors[:-1] == [f"gonomaly: error: {mixed_folder / name}: " + errors[i].split(": ", 3)[3]
                           for i, name in enumerate(BAD)]
    assert all(words in line for words, line in zip(BAD.values(), errors))
    assert errors[-1] == "gonomaly: 5 image(s) scored, 6 could not be read" and "Traceback" not in err


def test_a_clean_folder_exits_0_with_its_summary(run_folder, mixed_folder, tmp_path, capsys):
    for name in ("a_digit0.png", "c_digit1.png"):
        (tmp_path / name).write_bytes((mixed_folder / name).read_bytes())
    code, out, err = run_cli(capsys, "score", str(run_folder[0]), str(tmp_path))
    assert code == 0 and len(out.splitlines()) == 2
    assert err.strip() == "gonomaly: 2 image(s) scored, 0 could not be read"


def test_on_error_fail_stops_at_the_first_bad_file_in_one_line(run_folder, mixed_folder, capsys):
    code, out, err = run_cli(capsys, "score", str(run_folder[0]), str(mixed_folder), "--on-error", "fail",
                             "--max-pixels", str(MAX_PIXELS), "--batch-size", "3")
    assert code == 1 and out == ""  # the first batch holds the first bad file
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"gonomaly: error: {mixed_folder / 'b_notes.png'}: cannot read image ")


def test_a_single_bad_file_fails_in_one_line_by_default(run_folder, mixed_folder, capsys):
    code, out, err = run_cli(capsys, "score", str(run_folder[0]), str(mixed_folder / "d_empty.png"))
    assert (code, out) == (1, "")
    assert err.strip() == f"gonomaly: error: {mixed_folder / 'd_empty.png'}: empty file"
