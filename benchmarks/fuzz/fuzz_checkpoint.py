"""atheris target: gonomaly.ReconstructionDetector.load on damaged run folders.

At start-up a small GON (latent 8, width 8, fused score: every file kind) is trained for one
epoch on 256 MNIST digits and saved. Each input replaces one of its files: the first byte picks
the file (config.json, model.safetensors, scoring.safetensors, train_errors.npy, history.json)
and whether config.json is then updated with the new file's sha256 (so that the parser behind
the hash check is reached); the rest is the file's new content (the seeds are the real files,
so libFuzzer mutates real JSON, safetensors headers and .npy headers). Every input must give a
GonomalyError, or a detector that scores two blank images.

    python benchmarks/fuzz/fuzz_checkpoint.py -runs=20000
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fuzz_argv, mnist_digits, scratch_dir  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
with atheris.instrument_imports(include=["gonomaly"]):
    import numpy as np
    import torch

    from gonomaly import GONDetector, GonomalyError, ReconstructionDetector

torch.set_num_threads(1)
FILES = ["config.json", "model.safetensors", "scoring.safetensors", "train_errors.npy", "history.json"]
HASH_KEYS = {"model.safetensors": ("weights_sha256",), "scoring.safetensors": ("scoring", "sha256"),
             "train_errors.npy": ("train_errors_sha256",), "history.json": ("history_sha256",)}
WORK = scratch_dir("gonomaly-fuzz-checkpoint-")
ORIGINAL = {}


def _original() -> dict[str, bytes]:
    if not ORIGINAL:
        digits = mnist_digits(256)
        detector = GONDetector(latent_dim=8, width=8, epochs=1, batch_size=64, score="fused", seed=0)
        folder = detector.fit(digits).save(WORK / "original")
        ORIGINAL.update({name: (folder / name).read_bytes() for name in FILES})
    return ORIGINAL


def test_one_input(data: bytes) -> None:
    if not data:
        return
    files = dict(_original())
    target = FILES[(data[0] & 0x7F) % len(FILES)]
    files[target] = data[1:]
    if data[0] & 0x80 and target in HASH_KEYS:
        config = json.loads(files["config.json"])
        node = config
        for key in HASH_KEYS[target][:-1]:
            node = node[key]
        node[HASH_KEYS[target][-1]] = hashlib.sha256(files[target]).hexdigest()
        files["config.json"] = json.dumps(config).encode()
    folder = WORK / "case"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    try:
        detector = ReconstructionDetector.load(folder)
    except GonomalyError:
        return
    try:
        scores = detector.score_samples(np.zeros((2, *detector.image_shape_), np.float32))
    except GonomalyError:
        return
    assert scores.shape == (2,)


def seeds() -> list[bytes]:
    original = _original()
    out = []
    for index, name in enumerate(FILES):
        out.append(bytes([index]) + original[name])
        if name in HASH_KEYS:
            out.append(bytes([index | 0x80]) + original[name])
    return out


if __name__ == "__main__":
    atheris.Setup(fuzz_argv("checkpoint", seeds()), test_one_input)
    atheris.Fuzz()
