"""Every importer, fed generated inputs (hypothesis): each input either gives an artifact that
passes io's schema check and holds what was written, or raises an error whose message names
the file (or the config key); never another exception, never a silently wrong artifact."""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml
from fixtures_brainscore import write_robustness_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workflow_helpers import on_ci

from neuroattack import io
from neuroattack.data.recording_sources import table_to_recordings
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.checkpoints import weights_from_checkpoint

T = TypeVar("T")

# Errors an importer may raise for bad input; any other exception type fails the property.
INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, OSError, TypeError)
# New inputs on every local run; on CI (CI=true) the same inputs every time, so that a run there
# never fails on an input no one has seen here (hypothesis prints any falsifying input).
FUZZ = settings(max_examples=150, deadline=None, derandomize=on_ci(), suppress_health_check=[HealthCheck.too_slow])

# Ids as labs write them: unicode letters, digits, path separators, dots, spaces, commas, quotes.
ID_ALPHABET = "abcXYZ019éß猫_-./ ,'\""
ids = st.one_of(
    st.text(ID_ALPHABET, min_size=1, max_size=10).filter(lambda text: text.strip() != ""),
    st.sampled_from(
        ["NA", "nan", "None", "null", "#N/A", "-1", "1e3", "007"]
    ),  # text a reader may take for NaN or a number
)


@dataclass
class Table:
    """A recordings table as a lab writes it: one row per (stimulus, repetition, site)."""

    frame: pd.DataFrame
    valid: bool  # whether an importer must accept it


MUTATIONS = (
    "none",
    "shuffled",
    "extra column",
    "negative and missing responses",
    "missing column",
    "text response",
    "infinite response",
    "fractional repetition",
    "duplicated row",
    "missing row",
    "empty id",
    "header only",
)


@st.composite
def tables(draw: st.DrawFn) -> Table:
    stimuli = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    sites = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    repetitions = draw(st.integers(1, 3))
    rows = [
        {"stimulus_id": s, "repetition": r, "neuroid_id": n, "response": float(draw(st.integers(0, 40)))}
        for s in stimuli
        for r in range(repetitions)
        for n in sites
    ]
    frame = pd.DataFrame(rows)
    mutation = draw(st.sampled_from(MUTATIONS))
    valid = mutation in ("none", "shuffled", "extra column", "negative and missing responses")
    if mutation == "shuffled":
        frame = frame.sample(frac=1.0, random_state=draw(st.integers(0, 1000))).reset_index(drop=True)
    elif mutation == "extra column":
        frame["electrode_depth_um"] = np.arange(len(frame))
    elif mutation == "negative and missing responses":
        frame.loc[0, "response"] = -3.5
        frame.loc[len(frame) - 1, "response"] = np.nan  # a missing trial (allowed: README)
    elif mutation == "missing column":
        frame = frame.drop(columns=draw(st.sampled_from(["stimulus_id", "repetition", "neuroid_id", "response"])))
    elif mutation == "text response":
        frame["response"] = frame["response"].astype(object)
        frame.loc[draw(st.integers(0, len(frame) - 1)), "response"] = "n/a spikes"
    elif mutation == "infinite response":
        frame.loc[draw(st.integers(0, len(frame) - 1)), "response"] = draw(st.sampled_from([np.inf, -np.inf]))
    elif mutation == "fractional repetition":
        frame["repetition"] = frame["repetition"].astype(float)
        frame.loc[draw(st.integers(0, len(frame) - 1)), "repetition"] = 0.5
    elif mutation == "duplicated row":
        frame = pd.concat([frame, frame.iloc[[draw(st.integers(0, len(frame) - 1))]]], ignore_index=True)
    elif mutation == "missing row":
        dropped = frame.iloc[draw(st.integers(0, len(frame) - 1))]
        frame = frame.drop(index=dropped.name).reset_index(drop=True)
        # with one site the presentation is simply not there (fewer repetitions of that stimulus:
        # allowed); with several, a site lacks a response in a presentation the others have
        same = (frame["stimulus_id"] == dropped["stimulus_id"]) & (frame["repetition"] == dropped["repetition"])
        site_left = (frame["neuroid_id"] == dropped["neuroid_id"]).any()
        valid = not (same.any() and site_left) and len(frame) > 0
    elif mutation == "empty id":
        frame.loc[draw(st.integers(0, len(frame) - 1)), draw(st.sampled_from(["stimulus_id", "neuroid_id"]))] = ""
    elif mutation == "header only":
        frame = frame.iloc[:0]
    return Table(frame, valid)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".nc":
        data = {column: ("row", frame[column].to_numpy()) for column in frame.columns}
        for column in ("stimulus_id", "neuroid_id"):
            if column in data:
                data[column] = ("row", frame[column].astype(str).to_numpy(dtype=str))
        if "response" in data:
            numbers = pd.to_numeric(frame["response"], errors="coerce")
            text = numbers.isna() & frame["response"].notna()  # words where numbers belong: stored as text
            data["response"] = ("row", frame["response"].astype(str).to_numpy(dtype=str) if text.any() else numbers)
        xr.Dataset(data).to_netcdf(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")


def assert_names_the_file(error: BaseException, path: Path) -> None:
    assert isinstance(error, INPUT_ERRORS), f"{type(error).__name__}: {error}"
    assert str(path) in str(error), f"{type(error).__name__} without the file's name: {error}"


def imported_or_refused(load: Callable[[], T], valid: bool, path: Path, what: str) -> T | None:
    """`load()`'s artifact where the input is valid; None where it is refused as it must be (an
    expected error kind naming the file). Any other outcome fails the property."""
    try:
        artifact = load()
    except Exception as error:  # the property is about which exceptions come out
        assert not valid, f"a valid {what} was refused: {type(error).__name__}: {error}"
        assert_names_the_file(error, path)
        return None
    assert valid, f"an invalid {what} was accepted"
    return artifact


def assert_holds_the_table(recordings: xr.Dataset, frame: pd.DataFrame) -> None:
    """Every row of the table is in the recordings, at its stimulus, repetition and site."""
    assert recordings.sizes["presentation"] * recordings.sizes["site"] == len(frame)
    presentation = {
        (s, int(r)): i
        for i, (s, r) in enumerate(zip(recordings["stimulus_id"].values, recordings["repetition"].values, strict=True))
    }
    site = {str(n): j for j, n in enumerate(recordings["neuroid_id"].values)}
    values = recordings["response"].values
    for row in frame.itertuples(index=False):
        got = values[presentation[(row.stimulus_id, int(row.repetition))], site[row.neuroid_id]]
        assert (math.isnan(got) and math.isnan(row.response)) or got == np.float32(row.response), (row, got)


@FUZZ
@given(table=tables(), suffix=st.sampled_from([".csv", ".tsv", ".nc"]))
def test_a_recordings_table_is_imported_whole_or_refused_naming_the_file(table: Table, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"recordings{suffix}"
        write_table(table.frame, path)
        recordings = imported_or_refused(lambda: table_to_recordings(path), table.valid, path, "table")
        if recordings is None:
            return
        io.require(recordings, "recordings", path)
        assert_holds_the_table(recordings, table.frame)


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff\xfe\x00garbage", b"stimulus_id,repetition\n"])
def test_an_empty_or_binary_table_is_refused_naming_the_file(tmp_path: Path, content: bytes) -> None:
    for suffix in (".csv", ".tsv", ".nc"):
        path = tmp_path / f"table{suffix}"
        path.write_bytes(content)
        with pytest.raises(INPUT_ERRORS) as raised:
            table_to_recordings(path)
        assert_names_the_file(raised.value, path)


# --- stimuli: image folders and Brain-Score stimulus sets (CSV + ZIP) -------------------------

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP", ".tif": "TIFF"}
FORMAT_MODES = {
    ".png": ["L", "RGB", "RGBA", "P", "I;16", "LA"],
    ".jpg": ["L", "RGB", "CMYK"],
    ".bmp": ["L", "RGB", "P"],
    ".gif": ["L", "P"],
    ".webp": ["RGB", "RGBA"],
    ".tif": ["L", "RGB", "RGBA", "I;16"],
}


@dataclass
class ImageFile:
    relative: str  # path below the folder, with its suffix
    data: bytes
    readable: bool


@st.composite
def image_files(draw: st.DrawFn) -> ImageFile:
    from PIL import Image

    suffix = draw(st.sampled_from(sorted(IMAGE_FORMATS)))
    mode = draw(st.sampled_from(FORMAT_MODES[suffix]))
    # sizes from a single pixel to a long strip (centre-cropped to a 1-pixel square)
    width, height = draw(st.integers(1, 64)), draw(st.sampled_from([1, 7, 33, 300]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    channels = {"L": 1, "P": 1, "I;16": 1, "LA": 2, "RGB": 3, "CMYK": 4, "RGBA": 4}[mode]
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    else:
        array = rng.integers(0, 255, (height, width, channels), dtype=np.uint8)
        image = Image.fromarray(array[..., 0] if channels == 1 else array, mode=None if channels != 1 else "L")
        image = image.convert(mode) if image.mode != mode else image
    buffer = io_bytes()
    image.save(buffer, IMAGE_FORMATS[suffix])
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "none", "none", "truncated", "not an image"]))
    if damage == "truncated":
        data = data[: max(1, len(data) // 3)]
    elif damage == "not an image":
        data = b"%PDF-1.4 this is not a picture"
    category = draw(st.sampled_from(["cars", "faces", "猫 photos", ""]))
    name = draw(st.text("abcé01-_ ", min_size=1, max_size=8).filter(lambda text: text.strip() == text))
    relative = f"{category}/{name}{suffix}" if category else f"{name}{suffix}"
    return ImageFile(relative, data, damage == "none")


def io_bytes():  # type: ignore[no-untyped-def]
    import io as bytes_io

    return bytes_io.BytesIO()


@FUZZ
@given(files=st.lists(image_files(), min_size=1, max_size=5, unique_by=lambda f: f.relative.lower()))
def test_an_image_folder_is_imported_whole_or_refused_naming_the_file(files: list[ImageFile]) -> None:
    from neuroattack.data.stimuli import image_folder_to_stimuli

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "images"
        for file in files:
            (root / file.relative).parent.mkdir(parents=True, exist_ok=True)
            (root / file.relative).write_bytes(file.data)
        ids = [str(Path(file.relative).with_suffix("")) for file in files]
        colliding = len(set(ids)) < len(ids)
        try:
            stimuli = image_folder_to_stimuli(root, resolution=8)
        except Exception as error:  # the property is about which exceptions come out
            assert colliding or not all(file.readable for file in files), f"{type(error).__name__}: {error}"
            assert isinstance(error, INPUT_ERRORS), f"{type(error).__name__}: {error}"
            named = [str(root / file.relative) for file in files]
            assert any(name in str(error) for name in named), f"no file named: {error}"
            return
        assert all(file.readable for file in files) and not colliding
        io.require(stimuli, "stimuli", root)
        assert sorted(stimuli["stimulus_id"].values.tolist()) == sorted(ids)
        categories = {str(Path(f.relative).with_suffix("")): Path(f.relative).parts[0] for f in files}
        for stimulus, category in zip(stimuli["stimulus_id"].values, stimuli["category"].values, strict=True):
            assert category == (categories[stimulus] if "/" in stimulus else "none")
        assert stimuli["pixels"].shape == (len(files), 8, 8, 3) and stimuli["pixels"].dtype == np.uint8


@FUZZ
@given(
    files=st.lists(image_files(), min_size=1, max_size=4, unique_by=lambda f: Path(f.relative).name.lower()),
    damage=st.sampled_from(["none", "none", "file not in the zip", "extra file in the zip", "no category column"]),
)
def test_a_brainscore_stimulus_set_is_imported_whole_or_refused_naming_the_file(
    files: list[ImageFile], damage: str
) -> None:
    import zipfile

    from neuroattack.data.stimuli import brainscore_stimuli_to_dataset

    with tempfile.TemporaryDirectory() as folder:
        csv_path, zip_path = Path(folder) / "stimulus_set.csv", Path(folder) / "stimulus_set.zip"
        names = [Path(file.relative).name for file in files]
        table = pd.DataFrame(
            {
                "stimulus_id": [f"id{i}" for i in range(len(files))],
                "filename": names,
                "category_name": [Path(file.relative).parts[0] if "/" in file.relative else "none" for file in files],
            }
        )
        if damage == "no category column":
            table = table.drop(columns="category_name")
        table.to_csv(csv_path, index=False)
        with zipfile.ZipFile(zip_path, "w") as archive:
            for file, name in zip(files, names, strict=True):
                if damage == "file not in the zip" and name == names[-1]:
                    continue
                archive.writestr(f"stimulus_set/{name}", file.data)
            if damage == "extra file in the zip":
                archive.writestr("stimulus_set/unlisted.png", b"not listed in the CSV: ignored")
        valid = all(file.readable for file in files) and damage in ("none", "extra file in the zip")
        try:
            stimuli = brainscore_stimuli_to_dataset(csv_path, zip_path, resolution=8)
        except Exception as error:  # the property is about which exceptions come out
            assert not valid, f"{type(error).__name__}: {error}"
            assert isinstance(error, INPUT_ERRORS), f"{type(error).__name__}: {error}"
            assert str(csv_path) in str(error) or str(zip_path) in str(error), f"no file named: {error}"
            return
        assert valid, "an invalid stimulus set was accepted"
        io.require(stimuli, "stimuli", csv_path)
        assert stimuli["stimulus_id"].values.tolist() == table["stimulus_id"].tolist()
        assert stimuli["category"].values.tolist() == table["category_name"].tolist()


# --- checkpoints ----------------------------------------------------------------------------

CHECKPOINT_DAMAGE = (
    "none",
    "truncated",
    "not a torch file",
    "a list, not a dict",
    "no model entry",
    "a tensor renamed",
    "a tensor missing",
    "a tensor of another shape",
    "a non-tensor entry",
    "code in the pickle",
)


class Evil:
    """Unpickling this would run code: weights_only=True must refuse it."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("a pickle ran code",))


@pytest.fixture(scope="module")
def resnet18_checkpoint_state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.ckpt"
    write_robustness_checkpoint(path, architecture="resnet18")
    return dict(torch.load(path, weights_only=True))


@settings(
    max_examples=25, deadline=None, derandomize=on_ci(), suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(damage=st.sampled_from(CHECKPOINT_DAMAGE), pick=st.integers(0, 10**6))
def test_a_checkpoint_is_converted_whole_or_refused_naming_the_file(
    resnet18_checkpoint_state: dict[str, object], damage: str, pick: int
) -> None:
    checkpoint = copy.copy(resnet18_checkpoint_state)
    state = dict(checkpoint["model"])  # type: ignore[call-overload]
    classifier_keys = sorted(k for k in state if k.startswith("module.model."))
    key = classifier_keys[pick % len(classifier_keys)]
    if damage == "a tensor renamed":
        state[key.replace("module.model.", "module.model.extra_")] = state.pop(key)
    elif damage == "a tensor missing" and not key.endswith("num_batches_tracked"):
        del state[key]
    elif damage == "a tensor of another shape":
        state[key] = torch.zeros(*state[key].shape, 2)
    elif damage == "a non-tensor entry":
        state["module.model.note"] = "trained by a student"
    checkpoint["model"] = state
    if damage == "no model entry":
        checkpoint = {"weights": state}
    if damage == "a list, not a dict":
        checkpoint = [state]  # type: ignore[assignment]
    if damage == "code in the pickle":
        checkpoint = {"model": state, "epoch": Evil()}
    valid = damage == "none" or (damage == "a tensor missing" and key.endswith("num_batches_tracked"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet18_l2_eps3.ckpt"
        torch.save(checkpoint, path)
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[: 1 + pick % (path.stat().st_size - 1)])
        elif damage == "not a torch file":
            path.write_bytes(b"<html>403 Forbidden</html>")
        settings_ = {"eps": 3.0, "norm": "l2", "architecture": "resnet18"}
        weights = imported_or_refused(
            lambda: weights_from_checkpoint(path, "robust", settings_), valid, path, f"checkpoint ({damage})"
        )
        if weights is None:
            return
        io.require(weights, "network", path)
        network = network_from_dataset(weights, str(path))
        expected = {k.removeprefix("module.model."): v for k, v in state.items() if k.startswith("module.model.")}
        for name, tensor in network.model.state_dict().items():
            if name in expected:
                assert torch.equal(tensor, expected[name].to(tensor.dtype)), name


# --- the config -----------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
TINY = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def leaf_paths(node: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict):
        return [path for key, value in node.items() for path in leaf_paths(value, (*prefix, str(key)))] or [prefix]
    return [prefix]


CONFIG_PATHS = leaf_paths(TINY)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text("abc./-_é 0", max_size=6),
    st.lists(st.integers(-2, 5), max_size=3),
    st.dictionaries(st.sampled_from(["x", "eps", "seed"]), st.integers(0, 3), max_size=2),
)


@FUZZ
@given(path=st.sampled_from(CONFIG_PATHS), value=values, action=st.sampled_from(["set", "delete", "add unknown"]))
def test_a_config_is_taken_or_refused_naming_the_key(path: tuple[str, ...], value: object, action: str) -> None:
    from neuroattack.config import ConfigError
    from neuroattack.config_checks import checked_config

    config = copy.deepcopy(TINY)
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    if action == "set":
        parent[path[-1]] = value
    elif action == "delete":
        del parent[path[-1]]
    else:
        parent[f"{path[-1]}_typo"] = value
    with tempfile.TemporaryDirectory() as folder:
        config["results"] = folder  # checks look for paths; never this repository's
        try:
            checked_config(config, SCHEMA)
        except ConfigError as error:
            message = str(error)
            named = {".".join(path[:depth]) for depth in range(1, len(path) + 1)} | {path[-1], f"{path[-1]}_typo"}
            assert any(name in message for name in named), (path, action, message)
            return
        except Exception as error:  # the property is about which exceptions come out
            raise AssertionError(f"{'.'.join(path)} ({action} {value!r}): {type(error).__name__}: {error}") from error


# --- Brain-Score assemblies ---------------------------------------------------------------------

ASSEMBLY_DAMAGE = (
    "none",
    "NaN values",
    "no animal coordinate",
    "no stimulus id",
    "no repetition",
    "no neuroid_id",
    "no region",
    "no time bins",
    "an extra dimension",
    "an extra dimension of size 1",
    "two data variables",
    "float repetitions",
    "truncated file",
)


@settings(max_examples=60, deadline=None, derandomize=on_ci())
@given(
    damage=st.sampled_from(ASSEMBLY_DAMAGE),
    writer=st.sampled_from(["brainio", "brainscore-core"]),
    window=st.sampled_from([(70, 170), (170, 270), (0, 100)]),
    region=st.sampled_from(["IT", "V4", "V1"]),
)
def test_a_brainscore_assembly_is_converted_whole_or_refused_naming_the_file(
    damage: str, writer: str, window: tuple[int, int], region: str
) -> None:
    from fixtures_brainscore import write_assembly

    from neuroattack.data.recording_sources import recordings_from_source

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "assembly.nc"
        truth = write_assembly(path, id_coord="stimulus_id", writer=writer)  # type: ignore[arg-type]
        with xr.open_dataset(path) as opened:
            ds = opened.load()
        name = next(iter(ds.data_vars))
        drop = {
            "no animal coordinate": "animal",
            "no stimulus id": "stimulus_id",
            "no repetition": "repetition",
            "no neuroid_id": "neuroid_id",
            "no region": "region",
            "no time bins": ["time_bin_start", "time_bin_end"],
        }.get(damage)
        if drop is not None:
            ds = ds.drop_vars(drop)
        if damage == "NaN values":
            ds[name][...] = np.where(np.arange(ds[name].size).reshape(ds[name].shape) % 3 == 0, np.nan, ds[name])
        elif damage.startswith("an extra dimension"):
            size = 1 if damage.endswith("size 1") else 2
            ds[name] = ds[name].expand_dims(session=size).copy()
        elif damage == "two data variables":
            ds["spare"] = ds[name] * 2
        elif damage == "float repetitions":
            ds["repetition"] = ds["repetition"].astype(float) + 0.5
        path.unlink()
        ds.to_netcdf(path)
        if damage == "truncated file":
            path.write_bytes(path.read_bytes()[:200])
        valid = (
            damage in ("none", "NaN values", "no animal coordinate", "an extra dimension of size 1")
            and window != (0, 100)
            and region != "V1"
        )
        settings_ = {"source": "brainscore", "region": region, "time_window_ms": list(window)}
        load = lambda: recordings_from_source(settings_, {"assembly": path})  # noqa: E731
        recordings = imported_or_refused(load, valid, path, f"assembly ({damage}, {region}, {window})")
        if recordings is None:
            return
        io.require(recordings, "recordings", path)
        chosen = [i for i, r in enumerate(truth.region) if r == region]
        expected = truth.values[chosen][:, :, truth.time_bins.index(window)].T
        if damage == "NaN values":
            stored = ds[name].transpose("presentation", "neuroid", "time_bin").values
            expected = stored[:, chosen, truth.time_bins.index(window)]
        np.testing.assert_array_equal(recordings["response"].values, expected.astype(np.float32))
        assert recordings["neuroid_id"].values.tolist() == [truth.neuroid_id[i] for i in chosen]
        assert recordings["repetition"].values.tolist() == truth.repetition


# --- weights files of a user's network ----------------------------------------------------------

WEIGHTS_DAMAGE = ("none", "truncated", "a tensor renamed", "a tensor missing", "a tensor reshaped", "an extra tensor")


def small_model() -> torch.nn.Module:
    """A model with parameters and buffers (BatchNorm's), as a state_dict holds them."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(36, 2)
    )


@FUZZ
@given(
    damage=st.sampled_from(WEIGHTS_DAMAGE),
    suffix=st.sampled_from([".pt", ".safetensors"]),
    wrapped=st.booleans(),
    pick=st.integers(0, 10**6),
)
def test_a_weights_file_loads_exactly_or_is_refused_naming_the_file(
    damage: str, suffix: str, wrapped: bool, pick: int
) -> None:
    from safetensors.torch import save_file

    from neuroattack.networks.zoo import load_weights

    torch.manual_seed(pick % 1000)
    source = small_model()
    state = {name: tensor.clone() for name, tensor in source.state_dict().items()}
    key = sorted(state)[pick % len(state)]
    if damage == "a tensor renamed":
        state[f"renamed_{key}"] = state.pop(key)
    elif damage == "a tensor missing":
        del state[key]
    elif damage == "a tensor reshaped":
        state[key] = torch.zeros(*state[key].shape, 2, dtype=state[key].dtype)
    elif damage == "an extra tensor":
        state["head.weight"] = torch.zeros(2, 2)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"weights{suffix}"
        if suffix == ".safetensors":
            save_file(state, path)
        else:
            torch.save({"state_dict": state} if wrapped else state, path)
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[: 1 + pick % (path.stat().st_size - 1)])
        target = small_model()
        try:
            load_weights(target, path)
        except Exception as error:  # the property is about which exceptions come out
            assert damage != "none", f"{type(error).__name__}: {error}"
            assert_names_the_file(error, path)
            return
        assert damage == "none", f"a damaged weights file ({damage}) was loaded"
        for name, tensor in source.state_dict().items():
            assert torch.equal(target.state_dict()[name], tensor), name
