"""Reading run files defensively: one clear error per broken file, sha256 digests, and
safetensors headers checked against the file's size before anything is allocated."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from gonomaly.errors import GonomalyError

MAX_JSON_BYTES = 64 << 20
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit
SAFETENSORS_DTYPES = {
    torch.float64: ("F64", 8), torch.float32: ("F32", 4), torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2), torch.int64: ("I64", 8), torch.int32: ("I32", 4),
    torch.int16: ("I16", 2), torch.int8: ("I8", 1), torch.uint8: ("U8", 1), torch.bool: ("BOOL", 1),
}
ITEM_SIZES = {name: size for name, size in SAFETENSORS_DTYPES.values()} | {
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



def read_bytes(path: Path, what: str, limit: int | None = None) -> bytes:
    """A whole file, with one clear error; ``limit`` refuses files larger than that."""
    try:
        with open(path, "rb") as handle:
            if limit is not None and os.fstat(handle.fileno()).st_size > limit:
                raise GonomalyError(f"{path}: {what} is implausibly large (over {limit} bytes)")
            return handle.read()
    except FileNotFoundError:
        raise GonomalyError(f"{path}: {what} missing") from None
    except IsADirectoryError:
        raise GonomalyError(f"{path}: {what} is a folder") from None
    except OSError as exc:
        raise GonomalyError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def parse_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise GonomalyError(f"{path}: not valid JSON ({str(exc).splitlines()[0][:200]})") from None


def safetensors_header(data: bytes, path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Check a safetensors file's header against its size BEFORE anything is allocated;
    return ``{name: (dtype, shape)}``. A header that claims more bytes than the file holds, a
    tensor whose size disagrees with its offsets, or overlapping data is refused."""
    if len(data) < 8:
        raise GonomalyError(f"{path}: not a safetensors file ({len(data)} bytes)")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8 or size > MAX_SAFETENSORS_HEADER:
        raise GonomalyError(f"{path}: safetensors header claims {size} bytes, the file has {len(data)}")
    header = parse_json(data[8:8 + size], path)
    if not isinstance(header, dict):
        raise GonomalyError(f"{path}: safetensors header is not a JSON object")
    body = len(data) - 8 - size
    tensors, spans = {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            valid = (isinstance(dtype, str) and dtype in ITEM_SIZES and isinstance(shape, list)
                     and all(type(d) is int and d >= 0 for d in shape)
                     and type(begin) is int and type(end) is int and 0 <= begin <= end <= body)
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid or math.prod(shape) * ITEM_SIZES[dtype] != end - begin:
            raise GonomalyError(f"{path}: safetensors entry '{name[:80]}' is invalid")
        tensors[name] = (dtype, tuple(shape))
        spans.append((begin, end))
    spans.sort()
    if any(a_end > b_begin for (_, a_end), (b_begin, _) in zip(spans, spans[1:])):
        raise GonomalyError(f"{path}: safetensors tensors overlap")
    return tensors


def load_safetensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    safetensors_header(data, path)
    try:
        return load_tensors(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as exc:
        raise GonomalyError(f"{path}: cannot read safetensors ({exc})") from None


def check_tensors(found: dict[str, tuple[str, tuple[int, ...]]], expected: dict[str, torch.Tensor],
                  path: Path, what: str) -> None:
    """Refuse a file whose tensor names, dtypes or shapes differ from ``expected``."""
    wanted = tensor_signature(expected)
    if wanted != found:
        diff = sorted(set(wanted.items()) ^ set(found.items()), key=str)[:3]
        raise GonomalyError(f"{path}: tensors do not match {what} (e.g. {diff})")




def tensor_signature(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (safetensors dtype, shape)}``: what ``safetensors_header`` returns for them."""
    return {k: (SAFETENSORS_DTYPES.get(v.dtype, ("?", 0))[0], tuple(v.shape)) for k, v in tensors.items()}


def read_float_vector(data: bytes, path: Path, what: str) -> np.ndarray:
    """A finite 1-D float array from .npy bytes; the header is checked against the size first."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(buffer)
        if dtype.hasobject or dtype.kind != "f" or len(shape) != 1 or not 1 <= shape[0]:
            raise ValueError(f"expected a 1-D float array, found {dtype} {shape}")
        if shape[0] * dtype.itemsize != len(data) - buffer.tell():
            raise ValueError(f"header says {shape[0]} values, the file holds {len(data) - buffer.tell()} bytes")
        values = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float64)
    except Exception as exc:  # noqa: BLE001 - numpy's header parser (tokenize, ast) raises many types
        raise GonomalyError(f"{path}: cannot read {what} ({' '.join(str(exc).split())[:200]})") from None
    if not np.isfinite(values).all():
        raise GonomalyError(f"{path}: {what} contain NaN or inf")
    return values
