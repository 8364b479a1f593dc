"""gonomaly: visual anomaly detection with Gradient Origin Networks."""

__version__ = "0.1.0"

from gonomaly.detector import CAEDetector, GONDetector, ReconstructionDetector  # noqa: E402
from gonomaly.errors import GonomalyError  # noqa: E402

__all__ = ["CAEDetector", "GONDetector", "GonomalyError", "ReconstructionDetector", "__version__"]
