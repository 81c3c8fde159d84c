"""Converters from public and user formats into the project's netCDF formats.

Stimuli: variable `pixels` (stimulus_id, y, x, channel), uint8 RGB, square;
`stimulus_id` is the indexed dimension coordinate (str), `category` (str) runs
along it, and the attribute `resolution` is the side length in pixels.

Sources handled here:
- Brain-Score assemblies -> recordings: as the served MajajHong2015.public was
  written by brainio (one data variable named after the assembly, dims neuroid x
  presentation x time_bin, MultiIndex levels stored as plain coordinates) and as
  brainscore-core 2.5's `write_netcdf` writes them (one variable named 'data',
  zlib-compressed, the assembly's attrs on the file too);
- Brain-Score stimulus sets (CSV + ZIP) and folders of images -> stimuli;
- tidy tables (CSV/TSV or netCDF) of single-trial responses -> recordings;
- robustness-library checkpoints (Engstrom et al.; Salman et al. 2020; L2 or
  L-infinity; torchvision ResNet-18, ResNet-50 or Wide ResNet-50-2) -> weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _bytes_io
import os
import pickle
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from PIL import Image, ImageOps

from neuroattack.config import (
    CHECKPOINT_ARCHITECTURES,
    DEFAULT_CHECKPOINT_ARCHITECTURE,
    DEFAULT_NORM,
    IMAGE_SUFFIXES,
    NORMS,
    TIME_WINDOW_MS,
    image_files,
)
from neuroattack.io import read_dataset
from neuroattack.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_RESNETS,
    Architecture,
    build_network,
    weights_to_dataset,
)
from neuroattack.recordings import make_recordings

BACKGROUND_GREY = (128, 128, 128)
RESAMPLING = Image.Resampling.BICUBIC
UNKNOWN = "unknown"


def robust_architecture(name: str) -> Architecture:
    """A paper-scale network: torchvision's `name` (resnet18, resnet50, wide_resnet50_2) on
    ImageNet (mean/std are replaced by the normaliser stored in the checkpoint when it has one)."""
    if name not in CHECKPOINT_ARCHITECTURES:
        raise ValueError(f"architecture {name!r}: a checkpoint holds one of {', '.join(CHECKPOINT_ARCHITECTURES)}")
    return Architecture(name=name, num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD)


ROBUST_RESNET50 = robust_architecture("resnet50")


# --------------------------------------------------------------------------- stimuli


def make_stimuli(pixels: np.ndarray, stimulus_id: Iterable[str], category: Iterable[str]) -> xr.Dataset:
    """Assemble a stimuli dataset from (stimulus, y, x, 3) uint8 RGB pixels (ids and
    categories: any iterable, a numpy array included; each item is taken as str)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"stimulus pixels must be uint8 RGB in 0..255, got dtype {pixels.dtype}")
    if pixels.ndim != 4 or pixels.shape[3] != 3 or pixels.shape[1] != pixels.shape[2]:
        raise ValueError(f"stimulus pixels must have shape (stimulus, y, x, 3) with y == x, got {pixels.shape}")
    ids = [str(s) for s in stimulus_id]
    categories = [str(c) for c in category]
    if not len(ids) == len(categories) == pixels.shape[0]:
        raise ValueError(f"{pixels.shape[0]} images but {len(ids)} stimulus ids and {len(categories)} categories")
    duplicated = sorted(pd.Index(ids)[pd.Index(ids).duplicated()].unique())
    if duplicated:
        raise ValueError(f"stimulus ids must be unique; repeated: {duplicated[:5]}")
    return xr.Dataset(
        {"pixels": (("stimulus_id", "y", "x", "channel"), pixels)},
        coords={
            "stimulus_id": ("stimulus_id", np.asarray(ids, dtype=str)),
            "category": ("stimulus_id", np.asarray(categories, dtype=str)),
        },
        attrs={"resolution": int(pixels.shape[1])},
    )


def image_to_pixels(image: Image.Image, resolution: int) -> np.ndarray:
    """A PIL image as (resolution, resolution, 3) uint8 RGB.

    EXIF rotation is applied, transparency is composited onto mid-grey (the
    screen colour of a fixation rig), 16-bit images are scaled to 8 bits, a
    non-square image is centre-cropped to its shorter side, and the square is
    resized with bicubic interpolation (antialiased when shrinking).
    """
    if resolution < 1:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if image.mode.startswith("I;16") or values.max() > 255 else 1.0
        image = Image.fromarray(np.clip(np.rint(values / scale), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND_GREY, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), RESAMPLING)
    return np.asarray(image, dtype=np.uint8)


def _open_image(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(_bytes_io.BytesIO(data))
        image.load()
    except Exception as error:  # PIL raises several unrelated types
        raise ValueError(f"{name}: not a readable image ({error}); replace or remove it") from error
    return image


def brainscore_stimuli_to_dataset(
    csv_path: str | os.PathLike[str],
    zip_path: str | os.PathLike[str],
    resolution: int,
    category_column: str = "category_name",
    extra_columns: Sequence[str] = ("object_name", "variation"),
) -> xr.Dataset:
    """A Brain-Score stimulus set (CSV + ZIP) as stimuli at `resolution`.

    The CSV needs a `stimulus_id` column (older sets such as HvM: `image_id`),
    a `filename` column naming the file inside the ZIP, and `category_column`.
    Rows keep the CSV's order; `extra_columns` present in the CSV (HvM:
    object_name, variation) are kept as coordinates along stimulus_id.
    """
    csv_path, zip_path = Path(csv_path), Path(zip_path)
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    id_column = "stimulus_id" if "stimulus_id" in table.columns else "image_id"
    needed = [id_column, "filename", category_column]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise KeyError(
            f"{csv_path}: missing column(s) {missing} (columns present: {list(table.columns)}); a Brain-Score "
            "stimulus set CSV needs stimulus_id (or image_id), filename and the category column"
        )
    if table.empty:
        raise ValueError(f"{csv_path}: the stimulus set lists no stimuli")
    images = []
    with _open_zip(zip_path) as archive:
        members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        by_basename: dict[str, list[str]] = {}
        for member in members:
            by_basename.setdefault(Path(member).name, []).append(member)
        for filename in table["filename"]:
            found: str | None = filename if filename in members else None
            if found is None and len(by_basename.get(Path(filename).name, [])) == 1:
                found = by_basename[Path(filename).name][0]
            if found is None:
                raise KeyError(
                    f"{zip_path}: no file {filename!r} listed in {csv_path}; is the ZIP from the same "
                    "stimulus set as the CSV? Download both again"
                )
            try:
                data = archive.read(found)
            except (zipfile.BadZipFile, EOFError, zlib.error) as error:
                raise ValueError(
                    f"{zip_path}: {found} cannot be extracted ({error}); {refetch_advice(zip_path)}"
                ) from error
            image = _open_image(data, f"{zip_path}:{found}")
            images.append(image_to_pixels(image, resolution))
    ds = make_stimuli(np.stack(images), table[id_column].tolist(), table[category_column].tolist())
    for column in extra_columns:
        if column in table.columns and column not in ds.coords:
            ds = ds.assign_coords({column: ("stimulus_id", np.asarray(table[column].tolist(), dtype=str))})
    ds.attrs["source_stimulus_set"] = csv_path.name
    return ds


def refetch_advice(path: str | os.PathLike[str]) -> str:
    """What to do about a damaged downloaded file (tested in test_workflow.py)."""
    return (
        "the file is damaged or truncated: check its source, then download it again by running your snakemake "
        f"command again with --forcerun {os.fspath(path)}"
    )


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a readable ZIP archive ({error}); {refetch_advice(path)}") from error


def image_folder_to_stimuli(folder: str | os.PathLike[str], resolution: int) -> xr.Dataset:
    """Every image under `folder` as stimuli, in sorted path order.

    category: the name of the first-level subfolder holding the image ('none'
    for images directly in `folder`); stimulus_id: the path relative to `folder`
    without its extension, with '/' separators. Hidden files are skipped.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of images")
    paths = image_files(root)
    if not paths:
        raise FileNotFoundError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    ids, categories, images = [], [], []
    for path in paths:
        relative = path.relative_to(root)
        ids.append(relative.with_suffix("").as_posix())
        categories.append(relative.parts[0] if len(relative.parts) > 1 else "none")
        images.append(image_to_pixels(_open_image(path.read_bytes(), str(path)), resolution))
    seen: dict[str, Path] = {}
    for stimulus, path in zip(ids, paths, strict=True):
        if stimulus in seen:
            raise ValueError(f"{seen[stimulus]} and {path} give the same stimulus id {stimulus!r}; rename one")
        seen[stimulus] = path
    ds = make_stimuli(np.stack(images), ids, categories)
    ds.attrs["source_folder"] = str(root)
    return ds


# ------------------------------------------------------------------------ recordings


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
        repetition=_coord(array, ("repetition",), "presentation").astype(np.int64).tolist(),
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
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=text_columns)
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
        if frame[column].isna().any():
            raise ValueError(f"{path}: empty {column} in row(s) {frame.index[frame[column].isna()].tolist()[:5]}")
    try:
        repetition = pd.to_numeric(frame["repetition"], errors="raise")
        response = pd.to_numeric(frame["response"], errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: repetition and response must be numbers ({error})") from error
    if repetition.isna().any() or not np.all(np.mod(repetition.to_numpy(dtype=np.float64), 1) == 0):
        raise ValueError(f"{path}: repetition must hold whole numbers")
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


# --------------------------------------------------------------------------- weights


def _load_checkpoint(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint; run the download rule first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as error:
        raise ValueError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({error}). Only tensors and plain "
            "containers are accepted, so no code in a pickle ever runs; if you trust the file, re-save its "
            "state_dict with torch.save on a separate machine and convert that"
        ) from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a checkpoint dict, found {type(checkpoint).__name__}")
    return checkpoint


def _state_dict(checkpoint: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict"):  # the robustness library reads 'model', legacy files 'state_dict'
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    else:
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            state = checkpoint
        else:
            raise KeyError(
                f"{path}: no 'model' or 'state_dict' entry (keys: {sorted(map(str, checkpoint))[:10]}); "
                "not a robustness-library checkpoint"
            )
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(state):
        raise ValueError(f"{path}: the state dict holds entries that are not tensors")
    return tensors


def _split_robustness_keys(
    state: Mapping[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(classifier tensors keyed like torchvision's resnet, normaliser tensors).

    Layout written by the robustness library (a DataParallel-wrapped AttackerModel):
    module.model.<layer> (the classifier), module.attacker.model.<layer> (the same
    tensors again, held by the attacker), module.normalizer.new_mean/new_std and
    module.attacker.normalize.new_mean/new_std. A bare torchvision state dict
    (conv1.weight, ...) is accepted too.
    """
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    classifier: dict[str, torch.Tensor] = {}
    normaliser: dict[str, torch.Tensor] = {}
    unexpected = []
    wrapped = any(k.startswith(("model.", "attacker.", "normalizer.")) for k in state)
    for key, tensor in state.items():
        if not wrapped:
            classifier[key] = tensor
        elif key.startswith("model."):
            classifier[key[len("model.") :]] = tensor
        elif key.startswith("normalizer."):
            normaliser[key[len("normalizer.") :]] = tensor
        elif key.startswith("attacker."):
            continue  # a second reference to the classifier and normaliser
        else:
            unexpected.append(key)
    if unexpected:
        raise KeyError(f"{path}: unexpected key(s) {unexpected[:5]} beside module.model./module.attacker.")
    return classifier, normaliser


def _float32_tuple(tensor: torch.Tensor) -> tuple[float, ...]:
    """Channel values as the shortest decimals that give back the same float32."""
    return tuple(float(str(np.float32(v))) for v in tensor.detach().flatten().tolist())


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the configured architecture; the message names the
    file, the first tensor that differs (expected and found shape) and what to change."""


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _torchvision_shapes(name: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of torchvision's `name` with `num_classes` classes (built on the meta
    device: no memory, no time)."""
    with torch.device("meta"):
        network = TORCHVISION_RESNETS[name](weights=None, num_classes=num_classes)
    return _shapes(network.state_dict())


def _first_difference(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> str:
    """The first tensor, in the network's order, that `found` lacks or holds with another shape."""
    for key, shape in expected.items():
        if key not in found:
            return f"tensor {key} is expected with shape {shape} but the checkpoint has no such tensor"
        if found[key] != shape:
            return f"tensor {key} is expected with shape {shape} but has shape {found[key]} in the checkpoint"
    key = next(k for k in found if k not in expected)
    return f"the checkpoint holds tensor {key} (shape {found[key]}), which the architecture has no place for"


def _check_architecture(
    classifier: Mapping[str, torch.Tensor],
    inner: Mapping[str, torch.Tensor],
    arch: Architecture,
    path: Path,
    setting: str,
) -> None:
    """Raise CheckpointMismatchError unless `classifier` has exactly the tensors of `inner`."""
    found, expected = _shapes(classifier), _shapes(inner)
    if found == expected:
        return
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    detail = _first_difference(expected, found)
    if missing or unexpected:
        detail += (
            f" (in all: {len(missing)} tensor(s) missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    else:
        differing = sum(found[k] != v for k, v in expected.items())
        detail += f" ({differing} tensor(s) differ in shape)"
    classes = found.get("fc.weight", (arch.num_classes,))[0]
    fits = [name for name in CHECKPOINT_ARCHITECTURES if _torchvision_shapes(name, classes) == found]
    if fits and fits[0] != arch.name:
        advice = f"The checkpoint holds a {fits[0]}: set {setting} to {fits[0]}"
        if classes != arch.num_classes:
            advice += f" (it has {classes} classes, not {arch.num_classes}: is it an ImageNet checkpoint?)"
    elif fits:
        advice = (
            f"It is a {arch.name} with {classes} classes, not {arch.num_classes}: give the checkpoint of a model "
            f"trained on ImageNet ({arch.num_classes} classes)"
        )
    else:
        advice = (
            f"It matches none of {', '.join(CHECKPOINT_ARCHITECTURES)} with {classes} classes: check that the "
            f"file is a robustness-library ImageNet checkpoint of one of them and set {setting} to the one it holds"
        )
    raise CheckpointMismatchError(
        f"{path}: the checkpoint does not hold a {arch.name} with {arch.num_classes} classes, which {setting} "
        f"asks for: {detail}. {advice}"
    )


def robust_checkpoint_to_weights(
    path: str | os.PathLike[str],
    arch: Architecture = ROBUST_RESNET50,
    attrs: Mapping[str, Any] | None = None,
    setting: str = "the architecture",
) -> xr.Dataset:
    """A robustness-library checkpoint (pickled, loaded with weights_only=True)
    as a weights dataset for `models.network_from_dataset`.

    The attacker's copy is dropped, the `module.model.` prefix stripped, and the
    checkpoint's normaliser (new_mean/new_std) becomes the architecture's
    mean/std (`arch`'s own are kept only when the checkpoint has none). The
    tensors must match `arch`'s network exactly: no missing, unexpected or
    differently shaped tensor, except BatchNorm `num_batches_tracked` counters,
    which very old checkpoints lack and which are set to 0 (unused in eval mode).
    Otherwise CheckpointMismatchError names the file, the first tensor that
    differs with its expected and found shape, the architecture the checkpoint
    does hold if it is one of CHECKPOINT_ARCHITECTURES, and `setting` (the config
    key that chose `arch`) as what to change.
    """
    path = Path(path)
    checkpoint = _load_checkpoint(path)
    classifier, normaliser = _split_robustness_keys(_state_dict(checkpoint, path), path)
    if {"new_mean", "new_std"} <= normaliser.keys():
        arch = dataclasses.replace(
            arch, mean=_float32_tuple(normaliser["new_mean"]), std=_float32_tuple(normaliser["new_std"])
        )
        normaliser_source = "checkpoint"
    else:
        normaliser_source = "architecture"
    network = build_network(arch)
    reference = network.state_dict()
    inner = {k[len("model.") :]: v for k, v in reference.items() if k.startswith("model.")}
    if len(inner) + sum(k.startswith("normalize.") for k in reference) != len(reference):
        raise ValueError(
            f"architecture {arch.name!r} does not keep its layers under 'model.'; use one of "
            f"{', '.join(CHECKPOINT_ARCHITECTURES)}"
        )
    _check_architecture(classifier, inner, arch, path, setting)
    for key, expected in inner.items():
        if key.endswith("num_batches_tracked") and key not in classifier:
            classifier[key] = torch.zeros_like(expected)
    state = {f"model.{k}": v.to(reference[f"model.{k}"].dtype) for k, v in classifier.items()}
    state.update({k: v for k, v in reference.items() if k.startswith("normalize.")})
    network.load_state_dict(state, strict=True)
    epoch = checkpoint.get("epoch")
    return weights_to_dataset(
        network,
        arch,
        {
            "source_checkpoint": path.name,
            "source_epoch": int(epoch) if isinstance(epoch, int) else -1,
            "normaliser_source": normaliser_source,
            **(attrs or {}),
        },
    )


def weights_from_checkpoint(path: str | os.PathLike[str], name: str, settings: Mapping[str, Any]) -> xr.Dataset:
    """Weights of the downloaded network `networks.<name>` of the config from its checkpoint.

    settings: its `eps` (training budget, pixels in [0, 1]), `norm` (l2 or linf,
    default l2) and `architecture` (default resnet50). The weights' attrs record
    `training_eps` and `training_norm`; a checkpoint of another architecture is
    refused with the key to change, `networks.<name>.architecture`.
    """
    architecture = str(settings.get("architecture", DEFAULT_CHECKPOINT_ARCHITECTURE))
    norm = str(settings.get("norm", DEFAULT_NORM))
    if norm not in NORMS:
        raise ValueError(f"networks.{name}.norm = {norm!r}: use one of {', '.join(NORMS)}")
    return robust_checkpoint_to_weights(
        path,
        robust_architecture(architecture),
        attrs={"training_eps": float(settings["eps"]), "training_norm": norm},
        setting=f"networks.{name}.architecture",
    )


# --------------------------------------------------------------------------- export


def write_stimulus_set(stimuli: xr.Dataset, csv_path: str | os.PathLike[str], zip_path: str | os.PathLike[str]) -> None:
    """Write stimuli as a Brain-Score-style stimulus set: a ZIP of PNGs and a CSV with
    stimulus_id, filename, category_name and every other coordinate along stimulus_id.
    Both files are written under temporary names and renamed, so a failure leaves none."""
    csv_path, zip_path = Path(csv_path), Path(zip_path)
    ids = [str(s) for s in stimuli["stimulus_id"].values]
    table = pd.DataFrame({"stimulus_id": ids, "filename": [f"{i}.png" for i in ids]})
    table["category_name"] = stimuli["category"].values.astype(str)
    for name, coord in stimuli.coords.items():
        if coord.dims == ("stimulus_id",) and name not in ("stimulus_id", "category"):
            table[str(name)] = coord.values
    tmp_zip, tmp_csv = zip_path.with_name(f".{zip_path.name}.tmp"), csv_path.with_name(f".{csv_path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_STORED) as archive:
            for filename, pixels in zip(table["filename"], stimuli["pixels"].values, strict=True):
                buffer = _bytes_io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                archive.writestr(filename, buffer.getvalue())
        table.to_csv(tmp_csv, index=False)
        os.replace(tmp_zip, zip_path)
        os.replace(tmp_csv, csv_path)
    finally:
        tmp_zip.unlink(missing_ok=True)
        tmp_csv.unlink(missing_ok=True)
