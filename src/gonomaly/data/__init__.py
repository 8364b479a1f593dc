"""Data: SPEC strings and the datasets they name (MNIST, Fashion-MNIST, MNIST-C, MVTec AD,
image folders, ELPV solar cells), image files, and the checks on the arrays that detectors take."""

from gonomaly.data.arrays import as_image_array
from gonomaly.data.base import NORMAL_GROUP, PARTIAL_LABEL, DataBundle, DataSpec, ImageSet
from gonomaly.data.specs import load_bundles, load_data, parse_spec

__all__ = ["NORMAL_GROUP", "PARTIAL_LABEL", "DataBundle", "DataSpec", "ImageSet", "as_image_array",
           "load_bundles", "load_data", "parse_spec"]
