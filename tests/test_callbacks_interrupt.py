"""SIGTERM and SIGINT during any fit-end stage stop a user's script as they stop training.

Each case starts ``_interrupt_script.py`` (a real training script whose named stage would run
for minutes), sends a real signal once that stage has begun, and expects the process to end
with Lightning's status within a generous deadline: 143 (SIGTERM, Lightning's
``SIGTERMException``) or 1 (SIGINT, Lightning's ``KeyboardInterrupt`` handling).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_interrupt_script.py")
STAGES = ("spectrum", "top_eigenvalues", "trace", "zero_rows", "sweep", "refit")
DEADLINE_S = 90  # generous: a stopped stage ends within one product; the load here varies


def _interrupt(stage: str, signum: int, tmp_path: Path) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), stage],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if line.strip() == f"STAGE {stage}":
                time.sleep(1.0)  # well inside the stage
                process.send_signal(signum)
                break
        rest, _ = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, "".join(seen) + rest


@pytest.mark.slow  # one training subprocess per stage: about 10 s each
@pytest.mark.parametrize("stage", STAGES)
def test_sigterm_in_any_fit_end_stage_ends_the_script(stage: str, tmp_path: Path) -> None:
    status, output = _interrupt(stage, signal.SIGTERM, tmp_path)
    assert f"STAGE {stage}" in output, output[-3000:]
    assert status == 128 + signal.SIGTERM, output[-3000:]
    assert "FIT DONE" not in output


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["spectrum", "refit"])
def test_sigint_in_a_fit_end_stage_ends_the_script(stage: str, tmp_path: Path) -> None:
    status, output = _interrupt(stage, signal.SIGINT, tmp_path)
    assert f"STAGE {stage}" in output, output[-3000:]
    assert status == 1, output[-3000:]
    assert "Detected KeyboardInterrupt" in output and "FIT DONE" not in output
