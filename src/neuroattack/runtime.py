"""Process set-up shared by every rule script: logging, threads, determinism."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import torch
import xarray as xr

from neuroattack.io import write_dataset


def configure(log_path: str | os.PathLike[str] | None, threads: int) -> logging.Logger:
    """Log to `log_path` and stderr; pin torch to `threads` threads, deterministic kernels."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(os.fspath(log_path)) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", handlers=handlers, force=True
    )
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    return logging.getLogger("neuroattack")


def device() -> torch.device:
    """The GPU when one is visible and usable, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def named_inputs(inputs: Mapping[str, str], prefix: str) -> dict[str, str]:
    """{name: path} of a rule's inputs named `<prefix><name>` (e.g. one per network), in rule order."""
    return {key.removeprefix(prefix): str(path) for key, path in inputs.items() if key.startswith(prefix)}


class Job(Protocol):
    """What a rule script knows of its job (Snakemake's `snakemake` object)."""

    rule: str
    input: Iterable[str]
    config: Mapping[str, Any]


def write_output(dataset: xr.Dataset, path: str | os.PathLike[str], title: str, job: Job) -> None:
    """Write a job's output with its provenance: the rule, its inputs' checksums, the config's hash."""
    write_dataset(dataset, path, title, f"rule {job.rule}", job.input, job.config)


class ProgressLog:
    """Logs how far a long loop has come, with its rate and time left, at most every
    `every_s` seconds (and when it ends): `progress(done, total)`."""

    def __init__(self, what: str, every_s: float = 5.0, log: logging.Logger | None = None) -> None:
        self.what, self.every_s = what, every_s
        self.log = log or logging.getLogger("neuroattack")
        self.start = self.last = time.monotonic()

    def __call__(self, done: float, total: float) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and done < total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (total - done) / rate if rate > 0 else float("inf")
        self.log.info(
            "%s: %.0f/%.0f (%.0f%%), %.1f/s, about %.0f s left",
            self.what,
            done,
            total,
            100 * done / max(total, 1),
            rate,
            left,
        )
