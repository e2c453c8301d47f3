"""The lowest torch and lightning pyproject.toml declares, as pins; --check: installed == pins."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "lightning")


def floors() -> dict[str, str]:
    """The declared lower bounds of torch and lightning, as full versions."""
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    found = {}
    for name in PACKAGES:
        match = re.search(rf'"{name}>=([0-9][0-9.]*)"', text)
        if match is None:
            raise SystemExit(f"pyproject.toml declares no lower bound for {name}")
        version = match.group(1)
        found[name] = version if version.count(".") >= 2 else version + ".0"
    return found


def main() -> None:
    """Print the pins, or with --check compare them with the installed versions."""
    pins = floors()
    if sys.argv[1:] != ["--check"]:
        print(" ".join(f"{name}=={version}" for name, version in pins.items()))
        return
    wrong = []
    for name, version in pins.items():
        installed = metadata.version(name).split("+")[0]
        if installed != version:
            wrong.append(f"{name} {installed} installed, floor {version}")
        else:
            print(f"{name} {installed}: the declared floor")
    if wrong:
        raise SystemExit("pip did not keep the floor versions: " + "; ".join(wrong))


if __name__ == "__main__":
    main()
