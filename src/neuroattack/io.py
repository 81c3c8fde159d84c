"""The one place where intermediates are written and read: netCDF through xarray.

Every file gets an explicit engine, float32 data, zlib compression, CF global
attributes (Conventions, title, source, history), provenance (package version,
git commit, config hash, input checksums), no _FillValue on coordinates, and is
written to a temporary name in the target folder and renamed (atomic). The
file's mode follows the process umask, like any file created with open().
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import xarray as xr

from neuroattack import __version__
from neuroattack.download import file_digest

ENGINE: Final = "netcdf4"
COMPRESSION = {"zlib": True, "complevel": 4}


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


def provenance(
    title: str,
    source: str,
    inputs: Iterable[str | os.PathLike[str]] = (),
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Global attributes: CF conventions plus what made the file and from what."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    input_list = [str(p) for p in inputs]
    checksums = {p: file_digest(p, "sha256") for p in input_list if Path(p).is_file()}
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
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        prepared.to_netcdf(tmp_name, engine=ENGINE, format="NETCDF4", encoding=_encoding(prepared))
        # mkstemp creates the file 0600; give it the mode open() would have given it
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def read_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a project netCDF file fully into memory (the file is closed on return)."""
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no such netCDF file; run the rule that makes it first")
    try:
        with xr.open_dataset(target, engine=ENGINE) as ds:
            return ds.load()
    except (OSError, ValueError) as error:
        raise OSError(f"{target}: not a readable netCDF file ({error}); delete it and rerun") from error


def require_variables(ds: xr.Dataset, names: Iterable[str], path: str | os.PathLike[str]) -> None:
    """Fail with a message naming the file when expected variables are missing."""
    missing = [name for name in names if name not in ds.variables]
    if missing:
        raise KeyError(f"{path}: missing variable(s) {missing}; was it written by another version?")
