"""Where the Hydra configuration files of the ``prunelimit`` app live."""

from __future__ import annotations

from pathlib import Path

__all__ = ["config_dir"]


def config_dir() -> Path:
    """The absolute path of the app's ``conf/`` directory (the one holding ``config.yaml``).

    An installed wheel carries the configs inside the package (``lightning_prunelimit/conf``);
    a source checkout or an editable install has them next to the package (``<repo>/conf``).
    The packaged copy wins when both exist.

    Example:
        >>> (config_dir() / "config.yaml").is_file()
        True
    """
    package_dir = Path(__file__).resolve().parents[2]
    candidates = (package_dir / "conf", package_dir.parent / "conf")
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        "the prunelimit configs were not found (looked for config.yaml in "
        f"{', '.join(str(c) for c in candidates)}): reinstall lightning-prunelimit"
    )
