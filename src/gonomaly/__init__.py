"""gonomaly: visual anomaly detection with Gradient Origin Networks."""

__version__ = "0.1.0"

from gonomaly.detector import (  # noqa: E402
    CAEDetector,
    GONDetector,
    ImplicitGONDetector,
    ReconstructionDetector,
    VAEDetector,
    VariationalGONDetector,
)
from gonomaly.errors import GonomalyError  # noqa: E402

__all__ = ["CAEDetector", "GONDetector", "GonomalyError", "ImplicitGONDetector", "ReconstructionDetector",
           "VAEDetector", "VariationalGONDetector", "__version__"]
