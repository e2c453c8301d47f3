"""The app's one atomic write: reports, summaries and checkpoints never half written."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_prunelimit.app.run_dir.atomic_write import write_atomic, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "report.json", "old")

    def fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
