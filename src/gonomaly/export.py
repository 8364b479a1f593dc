"""Export a fitted detector's whole scorer (image -> score, anomaly map) to ONNX.

With the closed-form gradient-origin encoder, z = 2 J^T (x - F(0)), a GON's scorer is a plain
feed-forward graph: a matrix product, the decoder, and the score. A GON that encodes by autograd
at inference could not be exported. The graph is the detector's own scoring module
(``gonomaly.scores.graph.ScoringGraph``, features and densities included) cast to float32, so
the exported graph computes what scoring computes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from gonomaly.errors import GonomalyError
from gonomaly.io import atomic_write_bytes

EXPORTABLE = ("gon", "implicit-gon", "cae")  # feed-forward scoring graphs (closed-form encoder)


def export_onnx(detector, path: str | Path) -> Path:
    """Write the scorer as an ONNX graph with a dynamic batch dimension."""
    if detector.model_name not in EXPORTABLE:
        raise GonomalyError(f"ONNX export supports the {', '.join(EXPORTABLE)} models, "
                            f"not {detector.model_name}")
    scorer = copy.deepcopy(detector.scoring_graph()).float().eval()  # float32 throughout
    example = torch.rand(2, *detector.image_shape_)
    import io
    import logging
    import warnings

    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it notes every torchvision operator it cannot find
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                scorer, (example,), input_names=["images"],
                output_names=["scores", "anomaly_maps"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, dynamo=True,
                verbose=False)
    except ImportError as exc:
        raise GonomalyError(f"ONNX export needs the 'onnx' extra: pip install 'gonomaly[onnx]' "
                            f"({exc})") from None
    finally:
        exporter_log.setLevel(level)
    buffer = io.BytesIO()
    program.save(buffer)
    return atomic_write_bytes(path, buffer.getvalue())
