"""JSON for Plotly: numpy arrays become Plotly's typed-array form ``{dtype, bdata, shape}``.

Plotly.js (>= 2.28) reads ``{"dtype": "f8", "bdata": <base64 little-endian>, "shape": "r,c"}``
wherever it reads a data array, and so does plotly.py >= 6, so a run's figures replay in any
Plotly client. Base64 of float64 is ~11 bytes per number against ~20 for JSON text, and costs
no float formatting on the server.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

# Small arrays stay plain lists: the typed-array header would cost more than it saves.
TYPED_ARRAY_MIN_SIZE = 16

# The dtypes Plotly.js decodes; anything else is cast to the nearest of these.
_PLOTLY_DTYPES = {"f8", "f4", "i4", "u4", "i2", "u2", "i1", "u1"}


def typed_array(array: np.ndarray) -> dict[str, str]:
    """Encode a 1-D or 2-D numeric array in Plotly's typed-array form."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype.kind == "i" and array.dtype.itemsize == 8:
        fits = array.size == 0 or (array.min() >= -(2**31) and array.max() < 2**31)
        array = array.astype(np.int32 if fits else np.float64)
    elif array.dtype.kind == "u" and array.dtype.itemsize == 8:
        array = array.astype(np.float64)
    elif array.dtype.kind == "f" and array.dtype.itemsize == 2:
        array = array.astype(np.float32)
    code = f"{array.dtype.kind}{array.dtype.itemsize}"
    if code not in _PLOTLY_DTYPES:
        raise ValueError(f"cannot send dtype {array.dtype} as a Plotly typed array")
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    bdata = base64.b64encode(np.ascontiguousarray(little).tobytes()).decode()
    spec = {"dtype": code, "bdata": bdata}
    if array.ndim == 2:
        spec["shape"] = f"{array.shape[0]},{array.shape[1]}"
    elif array.ndim != 1:
        raise ValueError(f"typed arrays are 1-D or 2-D, got shape {array.shape}")
    return spec


def jsonable(value: Any) -> Any:
    """Turn frames, figures and metrics into JSON-ready values (numbers, lists, typed arrays)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_plotly_json"):  # a plotly.graph_objects Figure or trace
        return jsonable(value.to_plotly_json())
    if isinstance(value, np.ndarray):
        numeric = value.dtype.kind in "biuf" and value.ndim in (1, 2)
        if numeric and value.size >= TYPED_ARRAY_MIN_SIZE:
            return typed_array(value)
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; Plotly draws null as a gap
    return value


def dumps(value: Any) -> str:
    """Compact JSON of :func:`jsonable` (no NaN, which browsers' JSON.parse rejects)."""
    return json.dumps(jsonable(value), separators=(",", ":"), allow_nan=False)


def decode_typed_array(spec: dict[str, str]) -> np.ndarray:
    """Inverse of :func:`typed_array` (used by tests and by clients that replay runs)."""
    dtype = np.dtype(spec["dtype"]).newbyteorder("<")
    array = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=dtype)
    if "shape" in spec:
        array = array.reshape(tuple(int(n) for n in spec["shape"].split(",")))
    return array


def decode(value: Any) -> Any:
    """Replace every typed-array spec inside a JSON value with a numpy array."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            return decode_typed_array(value)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
