"""``python -m lightning_prunelimit``: the ``prunelimit`` job (see ``lightning_prunelimit.app``)."""

from __future__ import annotations

from lightning_prunelimit.app.command_line.main import main

if __name__ == "__main__":
    main()
