"""``gonomaly serve``: the service on a free loopback port, scoring real MNIST digits through
HTTP exactly as the detector scores them, refusing every kind of bad input with a 4xx JSON
error while staying up, enforcing its token, and shutting down gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from gonomaly.errors import GonomalyError
from serve_helpers import ServerThread, corrupted, free_port, nan_tiff_bytes, png_bytes, train_run_folder

MAX_BODY_MB = 0.25
MAX_PIXELS = 100_000
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return train_run_folder(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def detector(run_folder):
    from gonomaly.detector import ReconstructionDetector

    return ReconstructionDetector.load(run_folder[0])


@pytest.fixture(scope="module")
def digits(run_folder):
    return run_folder[1]


@pytest.fixture(scope="module")
def server(run_folder, detector):
    from gonomaly.serve import ServeSettings, create_app

    settings = ServeSettings(run_dir=str(run_folder[0]), max_batch=16, max_wait_ms=20,
                             max_body_mb=MAX_BODY_MB, max_pixels=MAX_PIXELS)
    with ServerThread(create_app(settings, detector)) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as session:
        yield session


def score_one(client, data: bytes, name: str = "digit.png", **params) -> httpx.Response:
    return client.post("/v1/score", content=data, params={"name": name, **params},
                       headers={"Content-Type": "application/octet-stream"})


async def score_concurrently(url: str, bodies: list[bytes]) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as session:
        responses = await asyncio.gather(*(session.post("/v1/score", content=body) for body in bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies)
    return [r.json()["images"][0] for r in responses]


def metric(client, name: str) -> float:
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(name + " ")
             or line.startswith(name + "{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_concurrent_requests_are_batched_and_scored_as_the_detector_scores(server, client, detector, digits):
    expected = detector.score_samples(digits)
    batches_before = metric(client, "gonomaly_batch_size_images_count")
    answers = asyncio.run(score_concurrently(server.url, [png_bytes(d) for d in digits]))
    np.testing.assert_allclose([a["score"] for a in answers], expected, rtol=0, atol=1e-6)
    assert [a["label"] for a in answers] == [int(s > detector.threshold_) for s in expected]
    assert {a["threshold_rule"] for a in answers} == {str(detector.threshold_rule_)}
    batches = metric(client, "gonomaly_batch_size_images_count") - batches_before
    assert batches < len(digits), "40 concurrent requests were never batched together"


def test_multipart_request_scores_every_file_in_order(client, detector, digits):
    files = [("files", (f"d{i}.png", png_bytes(d), "image/png")) for i, d in enumerate(digits[:5])]
    response = client.post("/v1/score", files=files)
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert [i["name"] for i in images] == [f"d{i}.png" for i in range(5)]
    np.testing.assert_allclose([i["score"] for i in images], detector.score_samples(digits[:5]), atol=1e-6)
    assert response.json()["threshold"] == {"rule": str(detector.threshold_rule_),
                                            "value": pytest.approx(detector.threshold_)}


def test_map_is_a_png_overlay_that_does_not_depend_on_batch_mates(client, digits):
    alone = score_one(client, png_bytes(digits[0]), map=1).json()["images"][0]
    files = [("files", (f"d{i}.png", png_bytes(d), "image/png")) for i, d in enumerate(digits[:4])]
    together = client.post("/v1/score", files=files, params={"map": 1}).json()["images"][0]
    overlay = Image.open(io.BytesIO(base64.b64decode(alone["map_png"])))
    assert (overlay.format, overlay.mode, overlay.size) == ("PNG", "RGB", (28, 28))
    assert together["map_png"] == alone["map_png"]
    assert "map_png" not in score_one(client, png_bytes(digits[0])).json()["images"][0]


def test_model_endpoint_describes_the_run(client, detector):
    import gonomaly

    model = client.get("/v1/model").json()
    assert model["model"] == "gon" and model["version"] == gonomaly.__version__
    assert model["image"] == {"channels": 1, "height": 28, "width": 28, "resized": False}
    assert model["threshold"] == {"rule": str(detector.threshold_rule_), "value": pytest.approx(detector.threshold_)}
    assert client.get("/healthz").json() == {"status": "ok"}


def bad_inputs(digit: np.ndarray) -> dict[str, tuple[dict, int, str]]:
    """kind -> (request keyword arguments, expected status, words the error must contain)."""
    png = png_bytes(digit)
    colour = np.stack([digit[0], np.zeros_like(digit[0]), digit[0]])
    raw = {"headers": {"Content-Type": "application/octet-stream"}}
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    field_only = b'--x\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n--x--\r\n'
    return {
        "not an image": ({"content": b"hello, I am not an image", **raw}, 422,
                         "image: cannot read image (cannot identify image file)"),
        "empty body": ({"content": b"", **raw}, 400, "empty request body"),
        "truncated png": ({"content": png[: len(png) // 2], **raw}, 422, "cannot read image"),
        "over the pixel limit": ({"content": png_bytes(np.zeros((1, 400, 400))), **raw}, 422, "above the limit"),
        "body over the size limit": ({"content": b"\0" * int(MAX_BODY_MB * 2**20 + 1), **raw}, 413, "--max-body-mb"),
        "nan tiff": ({"content": nan_tiff_bytes(28, 28), **raw}, 422, "NaN"),
        "wrong channel count": ({"content": png_bytes(colour), **raw}, 422, "colour image"),
        "wrong size": ({"content": png_bytes(np.zeros((1, 32, 32))), **raw}, 422, "expects 28x28"),
        "empty file in multipart": ({"files": [("files", ("e.png", b"", "image/png"))]}, 422, "e.png: empty file"),
        "multipart without files": ({"content": field_only, "headers": multipart}, 400, "no file"),
        "form without files": ({"data": {"note": "x"}}, 400, "without files"),
        "malformed multipart": ({"content": b"--x\r\ngarbage", "headers": multipart}, 400, "multipart"),
    }


@pytest.mark.parametrize("kind", list(bad_inputs(np.zeros((1, 28, 28)))))
def test_bad_input_gets_a_4xx_json_error_and_the_server_keeps_working(client, detector, digits, kind):
    arguments, status, words = bad_inputs(digits[0])[kind]
    errors_before = metric(client, "gonomaly_errors_total")
    response = client.post("/v1/score", **arguments)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert metric(client, "gonomaly_errors_total") == errors_before + 1
    good = score_one(client, png_bytes(digits[1]))
    assert good.status_code == 200
    assert good.json()["images"][0]["score"] == pytest.approx(detector.score_samples(digits[1:2])[0], abs=1e-6)


@pytest.mark.parametrize("variant", ["16-bit", "palette"])
def test_sixteen_bit_and_palette_images_are_scored(client, detector, digits, variant):
    body = png_bytes(digits[2], bits=16) if variant == "16-bit" else png_bytes(digits[2], mode="P")
    assert Image.open(io.BytesIO(body)).mode == ("I;16" if variant == "16-bit" else "P")
    response = score_one(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["score"] == pytest.approx(detector.score_samples(digits[2:3])[0], abs=1e-6)


def test_a_bad_file_among_good_ones_loses_none_of_them(client, detector, digits):
    files = [("files", ("good0.png", png_bytes(digits[0]), "image/png")),
             ("files", ("broken.png", png_bytes(digits[1])[:60], "image/png")),
             ("files", ("good2.png", png_bytes(digits[2]), "image/png"))]
    response = client.post("/v1/score", files=files)
    assert response.status_code == 422
    images = response.json()["images"]
    assert [i["name"] for i in images] == ["good0.png", "broken.png", "good2.png"]
    assert images[1]["error"].startswith("broken.png: cannot read image") and images[1]["kind"] == "unreadable"
    np.testing.assert_allclose([images[0]["score"], images[2]["score"]],
                               detector.score_samples(digits[[0, 2]]), atol=1e-6)
    assert response.json()["error"].startswith("1 of 3 image(s) could not be scored; broken.png")


def test_metrics_are_prometheus_text(client):
    client.get("/v1/model")
    text = client.get("/metrics").text
    for name in ("gonomaly_requests_total", "gonomaly_errors_total", "gonomaly_request_latency_seconds_bucket",
                 "gonomaly_batch_size_images_bucket", "gonomaly_images_scored_total", "gonomaly_queued_images"):
        assert f"\n{name}" in text, name
    assert 'gonomaly_requests_total{endpoint="/v1/model",status="200"}' in text


def test_token_is_required_everywhere_but_the_health_check(run_folder, detector):
    from gonomaly.serve import ServeSettings, create_app

    app = create_app(ServeSettings(run_dir=str(run_folder[0]), token="s3cret"), detector)
    with ServerThread(app) as running, httpx.Client(base_url=running.url, timeout=30) as session:
        assert session.get("/healthz").status_code == 200
        for path in ("/", "/v1/model", "/metrics"):
            refused = session.get(path)
            assert refused.status_code == 401 and "token" in refused.json()["error"]
            assert session.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert session.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert session.post("/v1/score", content=b"x").status_code == 401
        scored = session.post("/v1/score", content=b"x", headers={"Authorization": "Bearer s3cret"})
        assert scored.status_code == 422 and "cannot read image" in scored.json()["error"]
        assert session.get("/").headers["WWW-Authenticate"].startswith("Basic")
        assert session.get("/", auth=("anyone", "s3cret")).status_code == 200  # a browser's answer


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org", "::"])
def test_non_loopback_bind_without_token_is_refused_in_one_line(run_folder, host):
    from gonomaly.serve import serve

    with pytest.raises(GonomalyError, match="not a loopback address; set --token") as refused:
        serve(run_folder[0], host=host)
    assert "\n" not in str(refused.value)


def test_the_serve_command_refuses_bad_settings_in_one_line(run_folder, capsys):

    for args, words in ((["--host", "0.0.0.0"], "--host 0.0.0.0: not a loopback address"),
                        (["--max-batch", "0"], "Invalid value for '--max-batch'"),
                        (["--max-body-mb", "0"], "Invalid value for '--max-body-mb'")):
        code, out, err = run_cli(capsys, "serve", str(run_folder[0]), *args)
        assert code in (1, 2) and out == "" and words in err, (args, err)
    code, _, err = run_cli(capsys, "serve", str(run_folder[0].parent / "missing"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "missing" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_token(host):
    from gonomaly.serve.runner import check_bind, is_loopback

    assert is_loopback(host)
    check_bind(host, None)


def test_workers_serve_and_sigterm_finishes_the_request_in_flight(run_folder, digits):
    """Two uvicorn worker processes; a request waits in the batcher (1.5 s) when SIGTERM comes:
    it is still answered, then every process exits cleanly."""
    port = free_port()
    command = [sys.executable, "-m", "gonomaly", "-q", "serve", str(run_folder[0]), "--port", str(port),
               "--workers", "2", "--max-wait-ms", "1500"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = wait_until_healthy(process, f"http://127.0.0.1:{port}")
        answer: dict = {}
        request = threading.Thread(target=lambda: answer.update(
            response=httpx.post(f"{url}/v1/score", content=png_bytes(digits[0]), timeout=60)))
        request.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        request.join(timeout=60)
        output = process.communicate(timeout=60)[0]
    finally:
        process.kill()
    assert answer["response"].status_code == 200, output
    assert "score" in answer["response"].json()["images"][0]
    assert process.returncode == 0, output


def wait_until_healthy(process: subprocess.Popen, url: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}): {process.stdout.read()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become healthy")


def test_the_detectors_defect_is_visible_through_the_service(client, detector, digits):
    """A real digit and the same digit with a pasted square: the service's decisions are the
    detector's, and the damaged digit scores higher."""
    pair = np.stack([digits[3], corrupted(digits[3])])
    answers = [score_one(client, png_bytes(image)).json()["images"][0] for image in pair]
    assert answers[1]["score"] > answers[0]["score"]
    assert [a["label"] for a in answers] == detector.predict(pair).tolist()


def test_a_run_trained_on_folder_data_resizes_as_gonomaly_score_does(tmp_path, digits, capsys):
    """Training resized folder images to 28x28: a 56x56 upload is resized the same way, and its
    score is the one ``gonomaly score`` prints for the same file (the same reader, chosen from the
    run's config)."""
    from gonomaly.data.decode import read_resized
    from gonomaly.detector import ReconstructionDetector
    from gonomaly.serve import ServeSettings, create_app

    normal = tmp_path / "normal"
    normal.mkdir()
    for i, digit in enumerate(digits[:24]):
        Image.fromarray((digit[0] * 255).round().astype(np.uint8)).resize((56, 56)).save(normal / f"{i:02d}.png")
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "-q", "train", "--model", "gon", "--data", f"folder:normal={normal}",
                           "--image-size", "28", "--epochs", "1", "--batch-size", "8", "--out", str(run_dir))
    assert code == 0, err
    detector = ReconstructionDetector.load(run_dir)
    upload = normal / "03.png"
    code, printed, err = run_cli(capsys, "score", str(run_dir), str(upload), "--json")
    assert code == 0, err
    expected = detector.score_samples(read_resized(upload, detector.image_shape_)[None])[0]
    with ServerThread(create_app(ServeSettings(run_dir=str(run_dir)), detector)) as running:
        with httpx.Client(base_url=running.url, timeout=30) as session:
            assert session.get("/v1/model").json()["image"]["resized"] is True
            answer = score_one(session, upload.read_bytes(), name="03.png").json()["images"][0]
    assert answer["score"] == pytest.approx(expected, abs=1e-6)
    assert answer["score"] == pytest.approx(json.loads(printed)["score"], abs=1e-6)
