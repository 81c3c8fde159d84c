"""The one place where intermediates are written and read: netCDF through xarray.

Every file gets an explicit engine, float32 data, zlib compression, CF global
attributes (Conventions, title, source, history), provenance (package version,
git commit, config hash, input checksums), no _FillValue on coordinates, and is
written to a temporary name in the target folder and renamed (atomic). The
file's mode follows the process umask, like any file created with open().
Temporaries that a killed write left behind are removed by the next write of the
same file; a write that fails because the disk is full says so.

`artifacts.INTERMEDIATES` lists every kind of intermediate: the rule that makes it and the
variables, dimensions and attributes its readers rely on. `read_dataset(path, kind)`
checks them, so a file of the wrong kind or from another version fails with its path,
what is missing, and the command that remakes it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import xarray as xr

from neuroattack import __version__
from neuroattack.artifacts import INTERMEDIATES, Intermediate, Kind
from neuroattack.remote import file_digest

ENGINE: Final = "netcdf4"
COMPRESSION = {"zlib": True, "complevel": 4}
# A write that fails with less free space than this in the target folder failed for want of space.
DISK_FULL_MARGIN_BYTES: Final = 16 << 20


def remake_advice(path: str | os.PathLike[str]) -> str:
    """How to remake an intermediate and everything made from it (tested in test_workflow.py)."""
    return f"run your snakemake command again with --forcerun {os.fspath(path)}"


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable short hash of a config mapping (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit() -> str:
    """Commit of the checkout this package runs from, or 'unknown' outside git."""
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _netcdf_attr(value: Any) -> Any:
    """netCDF attributes hold strings, numbers and 1-d numeric arrays only."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, list | tuple):
        if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in value):
            return np.asarray(value)
        return json.dumps(list(value), default=str)
    return value


def _prepare(ds: xr.Dataset) -> xr.Dataset:
    """Reset MultiIndexes, cast floats to float32, bools to int8, clean attrs."""
    index_names = [name for name, index in ds.indexes.items() if isinstance(index, pd.MultiIndex)]
    if index_names:
        ds = ds.reset_index(index_names)
    ds = ds.copy()
    for name in list(ds.variables):
        var = ds.variables[name]
        if var.dtype.kind == "f" and var.dtype != np.float32:
            ds[name] = var.astype(np.float32)
        elif var.dtype.kind == "b":
            ds[name] = var.astype(np.int8)
        ds[name].attrs = {k: _netcdf_attr(v) for k, v in ds[name].attrs.items()}
    ds.attrs = {k: _netcdf_attr(v) for k, v in ds.attrs.items()}
    return ds


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        enc: dict[str, Any] = {}
        if var.dtype.kind in "fiub" and var.ndim > 0:
            enc.update(COMPRESSION)
        if name in ds.coords or var.dtype.kind != "f":
            enc["_FillValue"] = None
        if var.dtype.kind in "OU":
            enc["dtype"] = str
        encoding[str(name)] = enc
    return encoding


def input_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of an input file, read once per process while the file stays the same (a job
    that writes many outputs, such as a round's attack, records its inputs' checksums in each)."""
    stat = os.stat(path)
    return _sha256_of(os.fspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    return file_digest(path, "sha256")


def provenance(
    title: str,
    source: str,
    inputs: Iterable[str | os.PathLike[str]] = (),
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Global attributes: CF conventions plus what made the file and from what."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    input_list = [str(p) for p in inputs]
    checksums = {p: input_sha256(p) for p in input_list if Path(p).is_file()}
    return {
        "Conventions": "CF-1.11",
        "title": title,
        "source": source,
        "history": f"{now}: written by neuroattack {__version__} ({source})",
        "neuroattack_version": __version__,
        "git_commit": git_commit(),
        "config_hash": config_hash(config or {}),
        "input_checksums_sha256": json.dumps(checksums, sort_keys=True),
    }


def _current_umask() -> int:
    """The process umask. It can only be read by setting it, so set a throwaway value and
    put the old one straight back; the throwaway is the strictest, so that a file another
    thread creates in between is too private rather than too open."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_dataset(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    title: str,
    source: str,
    inputs: Iterable[str | os.PathLike[str]] = (),
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write `ds` to `path` atomically with the project's conventions."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prepared = _prepare(ds)
    prepared.attrs = {**prepared.attrs, **provenance(title, source, inputs, config)}
    remove_stale_temporaries(target)
    handle, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        prepared.to_netcdf(tmp_name, engine=ENGINE, format="NETCDF4", encoding=_encoding(prepared))
        # mkstemp creates the file 0600; give it the mode open() would have given it
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, target)
    except Exception as error:
        full = _disk_full(error, target.parent, prepared.nbytes)
        Path(tmp_name).unlink(missing_ok=True)
        if full is not None:
            raise OSError(
                errno.ENOSPC,
                f"{target}: cannot be written, the disk is full ({full}); free some space (or set the config key "
                "results to a folder on a larger disk), then run the same command again",
            ) from error
        raise
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}."


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries of `target` that an earlier, killed write left in its folder
    (hidden `.<name>.<random>.tmp` files); returns what was removed. Snakemake never runs two
    jobs that write one file, so a temporary of `target` found here belongs to no live write."""
    target = Path(target)
    stale = sorted(target.parent.glob(f"{glob.escape(_temporary_prefix(target))}*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _disk_full(error: BaseException, folder: Path, needed: int) -> str | None:
    """What is known of the lack of space when `error` came from a full disk, else None.
    netCDF reports a full disk as 'NetCDF: HDF error', so the free space (measured while
    the partial temporary still holds what it took) decides."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{error.strerror}; the data take up to {needed} bytes"
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free < DISK_FULL_MARGIN_BYTES:
        return f"{free} bytes free in {folder}; the data take up to {needed} bytes"
    return None


def read_dataset(path: str | os.PathLike[str], kind: Kind | None = None) -> xr.Dataset:
    """Open a netCDF file fully into memory (the file is closed on return).

    `kind` names the intermediate the caller expects (a key of INTERMEDIATES): its
    variables, dimensions and attributes are checked, and every error names the file,
    what is wrong, the rule that makes it and how to remake it. Without `kind` (a file
    from outside the workflow) only readability is checked.
    """
    expected = _intermediate(kind)
    target = Path(path)
    if not target.is_file():
        if expected is None:
            raise FileNotFoundError(f"{target}: no such netCDF file")
        raise FileNotFoundError(f"{target}: no such file; it is made by {expected.made_by}: {remake_advice(target)}")
    try:
        with xr.open_dataset(target, engine=ENGINE) as opened:
            ds = opened.load()
    except (OSError, ValueError, RuntimeError) as error:
        if expected is None:
            raise OSError(f"{target}: not a readable netCDF file ({error}); replace it with a good copy") from error
        raise OSError(
            f"{target}: not a readable netCDF file ({error}); it is made by {expected.made_by}: {remake_advice(target)}"
        ) from error
    if kind is not None:
        require(ds, kind, target)
    return ds


def _intermediate(kind: str | None) -> Intermediate | None:
    if kind is None:
        return None
    if kind not in INTERMEDIATES:
        raise ValueError(f"unknown kind of intermediate {kind!r}; one of {', '.join(INTERMEDIATES)}")
    return INTERMEDIATES[kind]


def require(ds: xr.Dataset, kind: Kind, path: str | os.PathLike[str]) -> None:
    """Fail, naming the file, what is missing, the rule that makes it and the command that
    remakes it, when `ds` lacks a variable, dimension or attribute that a `kind` file has."""
    expected = _intermediate(kind)
    assert expected is not None
    missing = {
        "variable": [name for name in expected.variables if name not in ds.variables],
        "dimension": [name for name in expected.dims if name not in ds.dims],
        "attribute": [name for name in expected.attrs if name not in ds.attrs],
    }
    found = [f"{what}(s) {', '.join(names)}" for what, names in missing.items() if names]
    if found:
        raise ValueError(
            f"{path}: not a {kind} file of this version of neuroattack: missing {'; '.join(found)}. "
            f"It is made by {expected.made_by}: {remake_advice(path)}"
        )
