"""Data: IDX parsing, dataset sources, SPEC strings and image files."""

from gonomaly.data.arrays import as_image_array
from gonomaly.data.specs import NORMAL_GROUP, DataBundle, DataSpec, ImageSet, load_data, parse_spec

__all__ = ["NORMAL_GROUP", "DataBundle", "DataSpec", "ImageSet", "as_image_array", "load_data",
           "parse_spec"]
