"""Process set-up of the rule scripts: what a failing script leaves in its log file, and progress reports."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuroattack.runtime import ProgressLog

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


TORCH_JOB = """
import sys
import torch
from neuroattack.runtime import configure

configure(None, 1)
print(torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
      torch.is_deterministic_algorithms_warn_only_enabled(), "torch._inductor.config" in sys.modules)
"""


def test_a_torch_job_gets_one_thread_and_deterministic_kernels_without_loading_the_compiler() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", TORCH_JOB], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.split() == ["1", "True", "True", "False"]


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal, as a user's console is."""

    def isatty(self) -> bool:
        return True


def test_progress_logs_rows_done_with_rate_and_time_left(caplog: pytest.LogCaptureFixture) -> None:
    progress = ProgressLog("attack on img", every_s=0.0, bar_to=io.StringIO())
    assert progress.bar is None  # not a terminal: log lines only
    with caplog.at_level(logging.INFO, logger="neuroattack"):
        progress(3, 12)
        progress(12, 12)
    first, last = (record.getMessage() for record in caplog.records)
    assert first.startswith("attack on img: 3/12 (25%)") and "/s, about" in first and "s left" in first
    assert last.startswith("attack on img: 12/12 (100%)") and "about 0 s left" in last


def test_progress_logs_at_most_every_few_seconds_but_always_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    progress = ProgressLog("job", every_s=3600.0, bar_to=io.StringIO())
    with caplog.at_level(logging.INFO, logger="neuroattack"):
        for done in range(1, 101):
            progress(done, 100)
    assert [record.getMessage().split(" (")[0] for record in caplog.records] == ["job: 100/100"]


def test_progress_draws_a_bar_on_a_terminal() -> None:
    terminal = _Terminal()
    progress = ProgressLog("attack on img", every_s=3600.0, bar_to=terminal)
    for done in (5, 10, 20):
        progress(done, 20)
    drawn = terminal.getvalue()
    assert "attack on img" in drawn and "20/20" in drawn and "row/s" in drawn
