"""Writing a file so that readers never see it half written: the app's one atomic write."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic", "write_text_atomic"]


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary)`` on a temporary file beside ``path``, then rename it over ``path``.

    A rename is atomic, so ``path`` holds either the previous complete file or the new complete
    one: jobs of a sweep that rebuild the same summary at the same time, or a write cut short
    (full disk, a signal), never leave half a file. A failed write removes the temporary file
    (``.<name>.<pid>.tmp``) and re-raises.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     target = write_atomic(Path(d) / "a.bin", lambda p: p.write_bytes(b"abc"))
        ...     target.read_bytes(), sorted(p.name for p in Path(d).iterdir())
        (b'abc', ['a.bin'])
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_atomic`).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_text_atomic(Path(d) / "a.txt", "hello").read_text()
        'hello'
    """
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
