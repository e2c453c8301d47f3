"""Reading and writing IDX files (the MNIST / Fashion-MNIST format), gzipped or raw."""

from __future__ import annotations

import gzip
import math
import os
import struct

import numpy as np

_GZIP_MAGIC = b"\x1f\x8b"


def _idx_dtype(code: int) -> np.dtype:
    """numpy dtype (big-endian, as stored) of an IDX type code."""
    if code == 0x08:
        return np.dtype(np.uint8)
    if code == 0x09:
        return np.dtype(np.int8)
    if code == 0x0B:
        return np.dtype(">i2")
    if code == 0x0C:
        return np.dtype(">i4")
    if code == 0x0D:
        return np.dtype(">f4")
    if code == 0x0E:
        return np.dtype(">f8")
    raise ValueError(f"unknown IDX type code 0x{code:02x}")


def _idx_code(dtype: np.dtype) -> int:
    for code in (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E):
        if _idx_dtype(code).newbyteorder("=") == dtype.newbyteorder("="):
            return code
    raise ValueError(
        f"IDX cannot store dtype {dtype}: use uint8, int8, int16, int32, float32 or float64"
    )


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not, detected from the content) into a numpy array.

    Checks the magic number (two zero bytes, a known type code, the number of dimensions) and that
    the payload holds exactly the product of the dimensions; raises ``ValueError`` naming the file
    otherwise. The result is a writable array in native byte order.

    Args:
        path: the file, e.g. ``.../train-images-idx3-ubyte`` or ``...-ubyte.gz``.

    Returns:
        The array with the file's shape and dtype (uint8 for MNIST images and labels).

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
        >>> write_idx(path, np.array([7, 2, 1], dtype=np.uint8))
        >>> read_idx(path).tolist()
        [7, 2, 1]
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise ValueError(
                f"{path}: corrupt gzip data ({error}); fetch the file again"
            ) from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file: the magic number must start with two zero bytes, got "
            f"{data[:4].hex() or 'an empty file'}"
        )
    try:
        dtype = _idx_dtype(data[2])
    except ValueError as error:
        raise ValueError(f"{path}: {error}; the file is not a valid IDX file") from None
    ndim = data[3]
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes of {dtype.name}) but the "
            f"file holds {len(data) - header} bytes of data; the file is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``compress`` (default: name ends .gz).

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "images-idx3-ubyte")
        >>> write_idx(path, np.zeros((2, 28, 28), dtype=np.uint8))
        >>> read_idx(path).shape
        (2, 28, 28)
    """
    array = np.asarray(array)
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got an array of shape {array.shape}")
    code = _idx_code(array.dtype)
    payload = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, dtype=_idx_dtype(code)).tobytes()
    )
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    with open(path, "wb") as handle:
        handle.write(gzip.compress(payload, mtime=0) if compress else payload)
