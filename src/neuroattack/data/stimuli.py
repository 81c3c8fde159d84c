"""Stimulus sets, from every source, in the stimuli format.

The format: variable `pixels` (stimulus_id, y, x, channel), uint8 RGB, square;
`stimulus_id` is the indexed dimension coordinate (str), `category` (str) runs
along it, and the attribute `resolution` is the side length in pixels.

Sources: the embedded photographs shipped inside scikit-image and scikit-learn, cut
into labelled square crops (category = the photograph; each photograph is tiled
into blocks and every block is assigned, by a seeded draw, to exactly one split,
"stimuli", "train" or "test", so crops of different splits never share a pixel);
Brain-Score stimulus sets (CSV + ZIP); folders of images. `write_stimulus_set`
writes the Brain-Score-style format back out, for a recording rig.
"""

from __future__ import annotations

import io as _bytes_io
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image, ImageOps
from skimage import color, data, transform

from neuroattack.config import BRAINSCORE_CATEGORY_COLUMN, IMAGE_SUFFIXES, image_files
from neuroattack.remote import refetch_advice

Split = Literal["stimuli", "train", "test"]
SPLIT_FRACTIONS: dict[str, float] = {"stimuli": 0.3, "train": 0.5, "test": 0.2}
BLOCKS_PER_SHORT_SIDE = 4


def _sklearn_sample(name: str) -> np.ndarray:
    from sklearn.datasets import load_sample_image  # scikit-learn only where the photographs are cut

    image: np.ndarray = load_sample_image(name)
    return image


PHOTOGRAPHS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": data.astronaut,
    "camera": data.camera,
    "cat": data.chelsea,
    "coffee": data.coffee,
    "coins": data.coins,
    "galaxy": data.hubble_deep_field,
    "tissue": data.immunohistochemistry,
    "retina": data.retina,
    "rocket": data.rocket,
    "moon": data.moon,
    "temple": lambda: _sklearn_sample("china.jpg"),
    "flower": lambda: _sklearn_sample("flower.jpg"),
}
CATEGORIES: tuple[str, ...] = tuple(PHOTOGRAPHS)

BACKGROUND_GREY = (128, 128, 128)
RESAMPLING = Image.Resampling.BICUBIC


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
    category_column: str = BRAINSCORE_CATEGORY_COLUMN,
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


@cache
def photograph(name: str) -> np.ndarray:
    """RGB uint8 array of one embedded photograph (greyscale ones are replicated)."""
    if name not in PHOTOGRAPHS:
        raise KeyError(f"unknown embedded photograph {name!r}; known: {', '.join(CATEGORIES)}")
    image = np.asarray(PHOTOGRAPHS[name]())
    if image.ndim == 2:
        image = (color.gray2rgb(image)).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def _blocks(shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(row, col, size) of the square blocks tiling an image."""
    size = min(shape[0], shape[1]) // BLOCKS_PER_SHORT_SIDE
    return [(r, c, size) for r in range(0, shape[0] - size + 1, size) for c in range(0, shape[1] - size + 1, size)]


def split_blocks(name: str, split: Split, seed: int) -> list[tuple[int, int, int]]:
    """The blocks of photograph `name` that belong to `split` (a seeded, disjoint partition)."""
    blocks = _blocks(photograph(name).shape)
    order = np.random.default_rng([seed, CATEGORIES.index(name)]).permutation(len(blocks))
    bounds = np.cumsum([0] + [round(SPLIT_FRACTIONS[s] * len(blocks)) for s in ("stimuli", "train")])
    start, stop = {
        "stimuli": (bounds[0], bounds[1]),
        "train": (bounds[1], bounds[2]),
        "test": (bounds[2], len(blocks)),
    }[split]
    return [blocks[i] for i in sorted(order[start:stop])]


def crops(split: Split, per_category: int, resolution: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_category` random square crops of every photograph, inside `split`'s blocks.

    Returns (pixels uint8 of shape (n, resolution, resolution, 3), category index (n,)).
    The crop draw is seeded by (seed, split), so each split is reproducible on its own.
    """
    split_index = ("stimuli", "train", "test").index(split)
    rng = np.random.default_rng([seed, 1000 + split_index])
    pixels = np.empty((per_category * len(CATEGORIES), resolution, resolution, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(len(CATEGORIES)), per_category)
    row = 0
    for name in CATEGORIES:
        image = photograph(name)
        blocks = split_blocks(name, split, seed)
        for _ in range(per_category):
            top, left, size = blocks[rng.integers(len(blocks))]
            side = int(rng.integers(size // 2, size + 1))
            dy, dx = rng.integers(0, size - side + 1, size=2)
            patch = image[top + dy : top + dy + side, left + dx : left + dx + side]
            if rng.random() < 0.5 and split != "stimuli":
                patch = patch[:, ::-1]
            resized = transform.resize(patch, (resolution, resolution), anti_aliasing=True, preserve_range=True)
            pixels[row] = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
            row += 1
    return pixels, labels


def embedded_stimuli(per_category: int, resolution: int, seed: int) -> xr.Dataset:
    """The embedded stimulus set: `per_category` crops of every photograph, ids like `cat_001`."""
    pixels, labels = crops("stimuli", per_category, resolution, seed)
    counters: dict[int, int] = {}
    ids = []
    for label in labels:
        counters[label] = counters.get(label, 0) + 1
        ids.append(f"{CATEGORIES[label]}_{counters[label]:03d}")
    return make_stimuli(pixels, ids, [CATEGORIES[label] for label in labels])


def stimulus_set(settings: Mapping[str, Any], seed: int, inputs: Mapping[str, str | os.PathLike[str]]) -> xr.Dataset:
    """The configured stimulus set (`stimuli` section): embedded, a Brain-Score set
    (`inputs` csv and zip) or an image folder (`inputs` folder)."""
    source = settings["source"]
    if source == "embedded":
        return embedded_stimuli(settings["per_category"], settings["resolution"], seed)
    if source == "brainscore":
        return brainscore_stimuli_to_dataset(inputs["csv"], inputs["zip"], settings["resolution"])
    if source == "folder":
        return image_folder_to_stimuli(inputs["folder"], settings["resolution"])
    raise ValueError(f"stimuli.source {source!r}: use embedded, brainscore or folder")
