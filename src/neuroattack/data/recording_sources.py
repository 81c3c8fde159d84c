"""Recordings from outside: Brain-Score assemblies and labs' tables of single trials, converted to
the recordings format (`data.recordings`).

Brain-Score assemblies as the served MajajHong2015.public was written by brainio (one data
variable named after the assembly, dims neuroid x presentation x time_bin, MultiIndex levels
stored as plain coordinates) and as brainscore-core 2.5's `write_netcdf` writes them (one
variable named 'data', zlib-compressed, the assembly's attrs on the file too); tidy tables
(CSV/TSV or netCDF) of single-trial responses.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from neuroattack.config import (
    TIME_WINDOW_MS,
)
from neuroattack.data.recordings import make_recordings
from neuroattack.io import read_dataset
from neuroattack.remote import refetch_advice

UNKNOWN = "unknown"


def _assembly_array(assembly: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """The one data variable of a Brain-Score assembly, with MultiIndexes reset."""
    if isinstance(assembly, xr.Dataset):
        names = [str(name) for name in assembly.data_vars]
        if len(names) != 1:
            raise ValueError(
                f"a Brain-Score assembly file holds exactly one data variable, this one has {names}; "
                "pass the DataArray to convert"
            )
        array = assembly[names[0]]
    else:
        array = assembly
    multi = [str(name) for name, index in array.indexes.items() if isinstance(index, pd.MultiIndex)]
    return array.reset_index(multi) if multi else array


def _coord(array: xr.DataArray, names: Sequence[str], dim: str) -> np.ndarray:
    """Values of the first of `names` that is a coordinate along `dim` alone."""
    for name in names:
        if name in array.coords and array.coords[name].dims == (dim,):
            return np.asarray(array.coords[name].values)
    along = sorted(str(n) for n, c in array.coords.items() if c.dims == (dim,))
    raise KeyError(
        f"assembly {array.name!r} has no {' or '.join(repr(n) for n in names)} coordinate along "
        f"'{dim}' (coordinates along it: {along}); is this a Brain-Score NeuroidAssembly?"
    )


def _whole_numbers(values: np.ndarray, name: Any, coordinate: str) -> list[int]:
    """`values` as integers; an error (not a silent truncation) where one is not whole."""
    numbers = np.asarray(values, dtype=np.float64) if values.dtype.kind in "iuf" else None
    if numbers is None or not np.all(np.isfinite(numbers)) or not np.all(np.mod(numbers, 1) == 0):
        examples = [
            value for value in values.tolist() if not (isinstance(value, int | float) and float(value).is_integer())
        ]
        raise ValueError(
            f"assembly {name!r}: coordinate {coordinate!r} must hold whole numbers, found e.g. {examples[:3]}"
        )
    return [int(number) for number in numbers]


def _select_time_bin(array: xr.DataArray, time_bin: tuple[int, int]) -> xr.DataArray:
    start, end = time_bin
    if "time_bin" in array.dims:
        starts = _coord(array, ("time_bin_start",), "time_bin")
        ends = _coord(array, ("time_bin_end",), "time_bin")
        match = np.flatnonzero((starts == start) & (ends == end))
        if match.size != 1:
            available = ", ".join(f"[{s}, {e}]" for s, e in zip(starts.tolist(), ends.tolist(), strict=True))
            raise ValueError(
                f"assembly {array.name!r} has no time bin {start}-{end} ms; its bins (ms): {available}. "
                "Set recordings.time_window_ms in the config to one of them"
            )
        return array.isel(time_bin=int(match[0]))
    if "time_bin_start" in array.coords and "time_bin_end" in array.coords:
        found = (int(array.coords["time_bin_start"].values), int(array.coords["time_bin_end"].values))
        if found != (start, end):
            raise ValueError(
                f"assembly {array.name!r} covers {found[0]}-{found[1]} ms, not {start}-{end} ms; to use it, set "
                f"recordings.time_window_ms in the config to [{found[0]}, {found[1]}]"
            )
        return array
    raise KeyError(
        f"assembly {array.name!r} has neither a 'time_bin' dimension nor time_bin_start/time_bin_end "
        "coordinates; cannot tell which time window it holds"
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def brainscore_assembly_to_recordings(
    assembly: xr.Dataset | xr.DataArray,
    region: str,
    time_bin: tuple[int, int] = TIME_WINDOW_MS,
    source_name: str | None = None,
) -> xr.Dataset:
    """One region and one time bin of a Brain-Score neural assembly as recordings.

    Accepts the assembly as read from its netCDF file (a Dataset with one data
    variable, e.g. 'dicarlo.MajajHong2015.public', dims neuroid x presentation x
    time_bin, MultiIndex levels as plain coordinates) or as a brainio
    DataAssembly, or as brainscore-core 2.5 writes it (one variable 'data', any dim
    order). Every presentation (repetition) stays a row. Presentation coords
    used: stimulus_id (older assemblies: image_id) and repetition; neuroid coords:
    neuroid_id, region and (if present) animal; time bin coords: time_bin_start
    and time_bin_end. Values are copied as stored (MajajHong2015 holds normalised
    firing rates, not raw counts). The attribute `source_assembly` is the assembly's
    `identifier` attribute, else its variable's name, else (for brainscore-core's
    generic 'data') `source_name`, e.g. the file name.
    """
    array = _assembly_array(assembly)
    for dim in ("presentation", "neuroid"):
        if dim not in array.dims:
            raise KeyError(f"assembly {array.name!r} has no '{dim}' dimension (dims: {list(array.dims)})")
    array = _select_time_bin(array, time_bin)
    regions = _coord(array, ("region",), "neuroid").astype(str)
    chosen = np.flatnonzero(regions == region)
    if chosen.size == 0:
        raise ValueError(
            f"assembly {array.name!r} has no neuroids in region {region!r} (regions: {sorted(set(regions.tolist()))})"
        )
    array = array.isel(neuroid=chosen)
    extra = [d for d in array.dims if d not in ("presentation", "neuroid")]
    if any(array.sizes[d] != 1 for d in extra):
        raise ValueError(f"assembly {array.name!r} has extra dimensions {extra}; reduce them before converting")
    array = array.squeeze(extra, drop=True).transpose("presentation", "neuroid")
    try:
        animal: Sequence[str] | str = _coord(array, ("animal",), "neuroid").astype(str).tolist()
    except KeyError:
        animal = UNKNOWN
    recordings = make_recordings(
        np.asarray(array.values, dtype=np.float32),
        stimulus_id=_coord(array, ("stimulus_id", "image_id"), "presentation").astype(str).tolist(),
        repetition=_whole_numbers(_coord(array, ("repetition",), "presentation"), array.name, "repetition"),
        neuroid_id=_coord(array, ("neuroid_id",), "neuroid").astype(str).tolist(),
        region=region,
        animal=animal,
        time_window_ms=(int(time_bin[0]), int(time_bin[1])),
    )
    recordings["response"].attrs = {
        "long_name": "response in the source assembly's units",
        "units": "1",
    }
    named = str(array.name) if array.name is not None and str(array.name) != "data" else None
    source = _text(array.attrs.get("identifier")) or named or source_name or UNKNOWN
    recordings.attrs["source_assembly"] = source
    stimulus_set = _text(array.attrs.get("stimulus_set_identifier"))
    if stimulus_set:
        recordings.attrs["source_stimulus_set"] = stimulus_set
    return recordings


TABLE_COLUMNS = ("stimulus_id", "neuroid_id", "repetition", "response")
TABLE_OPTIONAL = ("region", "animal")
# What a CSV/TSV response cell may hold for a missing trial (besides an empty cell).
MISSING_RESPONSE = ["", "NA", "NaN", "nan", "N/A", "n/a"]


def _read_table(path: Path) -> tuple[pd.DataFrame, Mapping[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".nc", ".nc4", ".netcdf"):
        ds = read_dataset(path)
        missing = [c for c in TABLE_COLUMNS if c not in ds.variables]
        if missing:
            raise KeyError(
                f"{path}: missing variable(s) {missing}; a recordings table needs "
                f"{', '.join(TABLE_COLUMNS)} (optional {', '.join(TABLE_OPTIONAL)}), one value per row"
            )
        present = [c for c in (*TABLE_COLUMNS, *TABLE_OPTIONAL) if c in ds.variables]
        shapes = {c: ds[c].dims for c in present}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
            raise ValueError(f"{path}: {present} must all be 1-d along the same row dimension, got {shapes}")
        frame = pd.DataFrame({c: np.asarray(ds[c].values) for c in present})
        for column in ("stimulus_id", "neuroid_id", *TABLE_OPTIONAL):
            if column in frame:
                frame[column] = frame[column].astype(str)
        return frame, ds.attrs
    if suffix in (".csv", ".tsv"):
        text_columns = {c: str for c in ("stimulus_id", "neuroid_id", *TABLE_OPTIONAL)}
        try:
            # Ids are text as written ("NA" and "null" are ids, not missing values); an empty
            # response cell is a missing trial.
            frame = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                dtype=text_columns,
                keep_default_na=False,
                na_values={"response": MISSING_RESPONSE, "repetition": MISSING_RESPONSE},
            )
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{path}: not a readable {suffix[1:].upper()} table ({error}); write one row per trial with the "
                f"columns {', '.join(TABLE_COLUMNS)}"
            ) from error
        missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
        if missing:
            raise KeyError(
                f"{path}: missing column(s) {missing} (columns present: {list(frame.columns)}); a recordings "
                f"table needs {', '.join(TABLE_COLUMNS)} (optional {', '.join(TABLE_OPTIONAL)})"
            )
        return frame, {}
    raise ValueError(f"{path}: unknown table format {suffix!r}; use .csv, .tsv or .nc")


def _per_neuroid(frame: pd.DataFrame, column: str, neuroids: pd.Index, path: Path) -> list[str] | str:
    if column not in frame:
        return UNKNOWN
    values = frame[column].fillna(UNKNOWN).astype(str)
    counts = values.groupby(frame["neuroid_id"], sort=False).nunique()
    inconsistent = counts[counts > 1].index.tolist()
    if inconsistent:
        raise ValueError(f"{path}: {column} changes within neuroid(s) {inconsistent[:5]}; it must be constant")
    first = values.groupby(frame["neuroid_id"], sort=False).first()
    return first.reindex(neuroids).tolist()


def recordings_from_source(settings: Mapping[str, Any], inputs: Mapping[str, str | os.PathLike[str]]) -> xr.Dataset:
    """The configured clean recordings (`recordings` section): one region and the time window
    `time_window_ms` (default 70-170 ms) of a Brain-Score assembly (`inputs` assembly), or a
    lab's table (`inputs` table; the window labels a CSV table's counts). Errors name the file."""
    window = settings.get("time_window_ms", TIME_WINDOW_MS)
    time_bin = (int(window[0]), int(window[1]))
    if settings["source"] == "brainscore":
        path = Path(inputs["assembly"])
        try:
            assembly = read_dataset(path)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise OSError(f"{path}: not a readable netCDF file ({error.__cause__}); {refetch_advice(path)}") from error
        with _naming(path):
            return brainscore_assembly_to_recordings(assembly, settings["region"], time_bin, source_name=path.name)
    if settings["source"] == "table":
        return table_to_recordings(inputs["table"], time_bin)
    raise ValueError(f"recordings.source {settings['source']!r}: import 'brainscore' or 'table' recordings")


@contextlib.contextmanager
def _naming(path: str | os.PathLike[str]) -> Iterator[None]:
    """Prefix `path` to the message of a KeyError or ValueError that does not name it yet."""
    try:
        yield
    except (KeyError, ValueError) as error:
        message = str(error.args[0]) if len(error.args) == 1 else str(error)
        if os.fspath(path) in message:
            raise
        raise type(error)(f"{os.fspath(path)}: {message}") from error


def table_to_recordings(path: str | os.PathLike[str], time_window_ms: tuple[int, int] = TIME_WINDOW_MS) -> xr.Dataset:
    """A tidy table of single-trial responses (one row per stimulus, repetition
    and neuroid) as recordings.

    Columns (CSV/TSV) or 1-d variables (netCDF): stimulus_id, neuroid_id,
    repetition, response; optional region and animal (constant per neuroid,
    'unknown' when absent). Presentations and neuroids keep first-seen order.
    A netCDF table's attrs time_window_start_ms/time_window_end_ms override
    `time_window_ms`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such recordings table")
    frame, attrs = _read_table(path)
    if frame.empty:
        raise ValueError(f"{path}: the table has no rows")
    for column in ("stimulus_id", "neuroid_id"):
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if empty.any():
            raise ValueError(
                f"{path}: empty {column} in {int(empty.sum())} row(s), e.g. {frame.index[empty].tolist()[:5]}; "
                f"every row needs its {column}"
            )
    try:
        repetition = pd.to_numeric(frame["repetition"], errors="raise")
        response = pd.to_numeric(frame["response"], errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: repetition and response must be numbers ({error})") from error
    if repetition.isna().any() or not np.all(np.mod(repetition.to_numpy(dtype=np.float64), 1) == 0):
        raise ValueError(f"{path}: repetition must hold whole numbers")
    infinite = np.isinf(response)
    if infinite.any():
        raise ValueError(
            f"{path}: {int(infinite.sum())} infinite response(s), e.g. in row(s) {frame.index[infinite].tolist()[:5]}; "
            "write a number, or leave the cell empty (NaN) for a missing trial"
        )
    frame = frame.assign(repetition=repetition.astype(np.int64))
    keys = ["stimulus_id", "repetition", "neuroid_id"]
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        example = frame.loc[duplicated, keys].iloc[0].tolist()
        raise ValueError(
            f"{path}: {int(duplicated.sum())} repeated (stimulus_id, repetition, neuroid_id) rows, e.g. {example}"
        )
    presentations = pd.MultiIndex.from_frame(frame[["stimulus_id", "repetition"]].drop_duplicates())
    neuroids = pd.Index(pd.unique(frame["neuroid_id"]))
    rows = presentations.get_indexer(pd.MultiIndex.from_frame(frame[["stimulus_id", "repetition"]]))
    columns = neuroids.get_indexer(pd.Index(frame["neuroid_id"]))
    matrix = np.zeros((len(presentations), len(neuroids)), dtype=np.float32)
    filled = np.zeros(matrix.shape, dtype=bool)
    matrix[rows, columns] = response
    filled[rows, columns] = True
    if not filled.all():
        row, column = np.argwhere(~filled)[0]
        raise ValueError(
            f"{path}: {int((~filled).sum())} (stimulus_id, repetition, neuroid_id) combinations have no row, "
            f"e.g. {presentations[row]} for neuroid {neuroids[column]!r}; every neuroid needs a response in "
            "every presentation"
        )
    window = time_window_ms
    if "time_window_start_ms" in attrs and "time_window_end_ms" in attrs:
        window = (int(attrs["time_window_start_ms"]), int(attrs["time_window_end_ms"]))
    recordings = make_recordings(
        matrix,
        stimulus_id=presentations.get_level_values("stimulus_id").astype(str).tolist(),
        repetition=presentations.get_level_values("repetition").astype(np.int64).tolist(),
        neuroid_id=neuroids.astype(str).tolist(),
        region=_per_neuroid(frame, "region", neuroids, path),
        animal=_per_neuroid(frame, "animal", neuroids, path),
        time_window_ms=window,
    )
    recordings.attrs["source_table"] = path.name
    return recordings


def stimulus_set_origin(stimuli: xr.Dataset) -> str:
    """Where a stimulus set came from, in words, for messages."""
    if "source_folder" in stimuli.attrs:
        return f"the images in {stimuli.attrs['source_folder']}"
    if "source_stimulus_set" in stimuli.attrs:
        return f"the stimulus set {stimuli.attrs['source_stimulus_set']}"
    return "the embedded stimulus set"


def unrecorded_stimuli(recordings: xr.Dataset, stimuli: xr.Dataset, path: str | os.PathLike[str]) -> list[str]:
    """The stimulus ids of `stimuli` that `recordings` (imported from `path`) never show. Every
    stimulus id of the recordings must be in the stimulus set; where some are not, the error
    gives the counts and examples from both sides, and says how an image folder names its
    images where that is what went wrong (ids are paths without their suffix)."""
    recorded = pd.unique(np.asarray(recordings["stimulus_id"].values, dtype=str))
    known = pd.Index(np.asarray(stimuli["stimulus_id"].values, dtype=str))
    unknown = [stimulus for stimulus in recorded if stimulus not in known]
    if unknown:
        matched = len(recorded) - len(unknown)
        hint = "write the stimulus set's ids in the table's stimulus_id column"
        unsuffixed = [
            str(Path(stimulus).with_suffix("")) if Path(stimulus).suffix else stimulus for stimulus in unknown
        ]
        if "source_folder" in stimuli.attrs:
            hint = (
                "an image folder's stimulus ids are each image's path below the folder without its suffix "
                "(cars/car01 for cars/car01.png)"
            )
            if all(stimulus in known for stimulus in unsuffixed):
                hint += "; the table's ids match once their suffixes are dropped"
        raise ValueError(
            f"{os.fspath(path)}: {len(unknown)} of the {len(recorded)} stimulus ids of the recordings are not in "
            f"{stimulus_set_origin(stimuli)} ({matched} match), e.g. {unknown[:3]} in the recordings, "
            f"{known[:3].tolist()} in the stimulus set; {hint}"
        )
    recorded_set = set(recorded)
    return [stimulus for stimulus in known if stimulus not in recorded_set]
