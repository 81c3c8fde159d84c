"""Process set-up shared by every rule script: logging, threads, determinism."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import xarray as xr
from tqdm import tqdm

from neuroattack.artifacts import Kind
from neuroattack.io import ENGINE, input_sha256, read_dataset, write_dataset

if TYPE_CHECKING:
    import torch


def configure(log_path: str | os.PathLike[str] | None, threads: int) -> logging.Logger:
    """Log to `log_path` and stderr; where the job uses torch (its script imported it before
    this call), pin torch to `threads` threads and deterministic kernels. A job that draws a
    figure never loads torch, which would cost it seconds.

    An exception that ends the script is logged too: its traceback, then one line
    `cause: <type>: <message>` (the last line of the log), so the job's log file says why
    the job failed (Snakemake runs a rule's script in its own process, and points to that file).
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(os.fspath(log_path)) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", handlers=handlers, force=True
    )
    log = logging.getLogger("neuroattack")
    sys.excepthook = log_uncaught(log)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, threads))
        use_deterministic_algorithms(torch)
    return log


def use_deterministic_algorithms(torch: Any) -> None:
    """`torch.use_deterministic_algorithms(True, warn_only=True)` without the second it spends
    importing the compiler's config (torch._inductor.config, to set inductor's flag too) in
    every job. The workflow never compiles, so the kernels' flag is the one that matters.
    Where the compiler is already loaded (a user's network compiled at import), or this torch
    has no such setter, the public call."""
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        set_flag(True, warn_only=True)


ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], None]


def one_line(error: BaseException) -> str:
    """`<type>: <message>` on one line (a KeyError's message without its quotes)."""
    message = str(error.args[0]) if isinstance(error, KeyError) and len(error.args) == 1 else str(error)
    return " ".join(f"{type(error).__name__}: {message}".split())


def log_uncaught(log: logging.Logger) -> ExceptHook:
    """A sys.excepthook that logs the traceback and then the one-line cause to `log`'s handlers."""

    def hook(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, traceback)
            return
        log.error("the job failed:", exc_info=(kind, error, traceback))
        log.error("cause: %s", one_line(error))

    return hook


def device() -> torch.device:
    """The GPU when one is visible and usable, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 convolutions run on native hardware here (elsewhere they are emulated, and slow)."""
    import torch

    if device.type == "cuda":  # Ampere or newer; older GPUs emulate bf16
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type != "cpu":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        # AVX512-BF16 or AMX; plain AVX-512 only emulates bf16. torch has no public query.
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    try:  # other CPUs (e.g. Arm with BF16 instructions): ask oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def named_inputs(inputs: Mapping[str, str], prefix: str) -> dict[str, str]:
    """{name: path} of a rule's inputs named `<prefix><name>` (e.g. one per network), in rule order."""
    return {key.removeprefix(prefix): str(path) for key, path in inputs.items() if key.startswith(prefix)}


def read_named(inputs: Mapping[str, str], prefix: str, kind: Kind) -> dict[str, xr.Dataset]:
    """{name: dataset} of a rule's `kind` inputs named `<prefix><name>`, each checked (io.read_dataset)."""
    return {name: read_dataset(path, kind) for name, path in named_inputs(inputs, prefix).items()}


class Job(Protocol):
    """What a rule script knows of its job (Snakemake's `snakemake` object)."""

    rule: str
    input: Iterable[str]
    config: Mapping[str, Any]


def write_output(dataset: xr.Dataset, path: str | os.PathLike[str], title: str, job: Job) -> None:
    """Write a job's output with its provenance: the rule, its inputs' checksums, the config's hash."""
    write_dataset(dataset, path, title, f"rule {job.rule}", job.input, job.config)


# A long job's finished parts (a round's images) are kept beside its outputs, where Snakemake
# never deletes them: a job killed (preempted, out of memory) loses only the part it was on.
FINISHED = "finished"
RESUME_KEY = "resume_key"


def input_digests(inputs: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """The sha256 of each of a job's input files (read once per job: networks can be large)."""
    return {str(path): input_sha256(path) for path in inputs if Path(path).is_file()}


def resume_key(digests: Mapping[str, str], settings: object) -> str:
    """What determines a part's result: the contents of the job's inputs (`input_digests`) and
    the part's own settings (JSON-serialisable). A finished part is reused only under the same key."""
    text = json.dumps({"inputs": dict(digests), "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def finished_path(output: str | os.PathLike[str]) -> Path:
    """Where the finished copy of `output` is kept: a `finished/` folder beside it."""
    target = Path(output)
    return target.parent / FINISHED / target.name


def reuse_finished(output: str | os.PathLike[str], key: str) -> bool:
    """Put a copy of the finished `output` in place when one made under `key` exists; False
    (nothing done) otherwise."""
    kept = finished_path(output)
    if not kept.is_file():
        return False
    try:
        with xr.open_dataset(kept, engine=ENGINE) as opened:
            if opened.attrs.get(RESUME_KEY) != key:
                return False
    except (OSError, ValueError, RuntimeError):  # a damaged copy is simply redone
        return False
    _place(kept, Path(output))
    return True


def write_finished(dataset: xr.Dataset, output: str | os.PathLike[str], title: str, job: Job, key: str) -> None:
    """Write one finished part of a job: kept under `finished/` with its key, then put at `output`."""
    kept = finished_path(output)
    write_output(dataset.assign_attrs({RESUME_KEY: key}), kept, title, job)
    _place(kept, Path(output))


def _place(kept: Path, output: Path) -> None:
    # a copy, not a hard link: Snakemake touches a job's outputs when it ends, and the kept file
    # keeps its own time
    output.unlink(missing_ok=True)
    shutil.copy2(kept, output)


class ProgressLog:
    """Logs how far a long loop has come, with its rate and time left, at most every
    `every_s` seconds (and when it ends): `progress(done, total)`. Where `bar_to` (default:
    stderr) is a terminal, a tqdm bar there shows the same, updated as often as tqdm redraws."""

    def __init__(
        self, what: str, every_s: float = 5.0, log: logging.Logger | None = None, bar_to: TextIO | None = None
    ) -> None:
        self.what, self.every_s = what, every_s
        self.log = log or logging.getLogger("neuroattack")
        self.start = self.last = time.monotonic()
        stream = bar_to or sys.stderr
        self.bar: tqdm[Any] | None = tqdm(desc=what, unit="row", file=stream) if stream.isatty() else None

    def __call__(self, done: float, total: float) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.bar.close()
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
