"""Process set-up of the rule scripts: what a failing script leaves in its log file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FAILING_SCRIPT = """
import sys
from neuroattack.runtime import configure

log = configure(sys.argv[1], 1)
log.info("working")
{}["stimuli.nc"]
"""


def test_an_uncaught_exception_ends_up_in_the_log_file(tmp_path: Path) -> None:
    script, log = tmp_path / "job.py", tmp_path / "logs" / "job.log"
    script.write_text(FAILING_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, env=env)
    assert run.returncode == 1
    lines = log.read_text().splitlines()
    assert "Traceback (most recent call last):" in lines
    assert any('{}["stimuli.nc"]' in line for line in lines)  # the failing line, from the traceback
    assert lines[-1].endswith("cause: KeyError: stimuli.nc")
    assert run.stderr.count("Traceback") == 1  # on the console too, once
