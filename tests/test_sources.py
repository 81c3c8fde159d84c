"""Converters into the project's formats, on stand-ins that mirror the real files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import xarray as xr
from fixtures_brainscore import (
    ASSEMBLY_NAME,
    BRAINSCORE_CORE_MISSING,
    ROBUST_MEAN,
    ROBUST_STD,
    AssemblyTruth,
    reference_truth,
    robustness_state_dict,
    write_assembly,
    write_robustness_checkpoint,
    write_stimulus_set,
)
from PIL import Image

from neuroattack.config import CHECKPOINT_ARCHITECTURES
from neuroattack.data import recording_sources
from neuroattack.data import stimuli as stimulus_sets
from neuroattack.data.recording_sources import (
    brainscore_assembly_to_recordings,
    recordings_from_source,
    table_to_recordings,
    unrecorded_stimuli,
)
from neuroattack.data.recordings import mean_response
from neuroattack.data.stimuli import (
    brainscore_stimuli_to_dataset,
    image_folder_to_stimuli,
    image_to_pixels,
    make_stimuli,
)
from neuroattack.io import read_dataset, write_dataset
from neuroattack.networks.build import build_network, network_from_dataset
from neuroattack.networks.checkpoints import (
    CheckpointMismatchError,
    robust_architecture,
    robust_checkpoint_to_weights,
    weights_from_checkpoint,
)
from neuroattack.networks.models import Architecture

# ---------------------------------------------------------------------- make_stimuli


def test_make_stimuli_layout_and_round_trip(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    ds = make_stimuli(pixels, ["a", "b", "c"], ["x", "y", "x"])
    assert ds["pixels"].dims == ("stimulus_id", "y", "x", "channel")
    assert ds["pixels"].dtype == np.uint8
    assert "stimulus_id" in ds.indexes
    assert ds["category"].dims == ("stimulus_id",)
    assert ds.attrs["resolution"] == 8
    path = write_dataset(ds, tmp_path / "stimuli.nc", title="t", source="test")
    back = read_dataset(path)
    assert back["pixels"].dtype == np.uint8
    np.testing.assert_array_equal(back["pixels"].values, pixels)
    assert back["stimulus_id"].values.tolist() == ["a", "b", "c"]
    assert back["category"].values.tolist() == ["x", "y", "x"]
    assert int(back.attrs["resolution"]) == 8


@pytest.mark.parametrize(
    ("pixels", "ids", "error"),
    [
        (np.zeros((2, 4, 4, 3), dtype=np.float32), ["a", "b"], TypeError),
        (np.zeros((2, 4, 5, 3), dtype=np.uint8), ["a", "b"], ValueError),
        (np.zeros((2, 4, 4), dtype=np.uint8), ["a", "b"], ValueError),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), ["a"], ValueError),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), ["a", "a"], ValueError),
    ],
)
def test_make_stimuli_refuses_bad_input(pixels: np.ndarray, ids: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        make_stimuli(pixels, ids, ["c"] * len(ids))


# ------------------------------------------------------------------ Brain-Score assembly


@pytest.fixture
def assembly(tmp_path: Path) -> AssemblyTruth:
    return write_assembly(tmp_path / "assy_dicarlo_MajajHong2015_public.nc")


def _check_recordings(recordings: xr.Dataset, truth: AssemblyTruth, region: str, bin_index: int) -> None:
    chosen = [i for i, r in enumerate(truth.region) if r == region]
    np.testing.assert_array_equal(recordings["response"].values, truth.values[chosen, :, bin_index].T)
    assert recordings["response"].dims == ("presentation", "site")
    assert recordings["stimulus_id"].values.tolist() == truth.image_id
    assert recordings["repetition"].values.tolist() == truth.repetition
    assert recordings["neuroid_id"].values.tolist() == [truth.neuroid_id[i] for i in chosen]
    assert recordings["animal"].values.tolist() == [truth.animal[i] for i in chosen]
    assert set(recordings["region"].values.tolist()) == {region}
    start, end = truth.time_bins[bin_index]
    assert (recordings.attrs["time_window_start_ms"], recordings.attrs["time_window_end_ms"]) == (start, end)


def test_assembly_file_converts(assembly: AssemblyTruth) -> None:
    ds = read_dataset(assembly.path)
    assert list(ds.data_vars) == [ASSEMBLY_NAME]
    assert ds[ASSEMBLY_NAME].dims == ("neuroid", "presentation", "time_bin")
    recordings = brainscore_assembly_to_recordings(ds, "IT")
    _check_recordings(recordings, assembly, "IT", 0)
    assert recordings.attrs["source_assembly"] == ASSEMBLY_NAME
    assert recordings.attrs["source_stimulus_set"] == "dicarlo.hvm-public"
    v4 = brainscore_assembly_to_recordings(ds, "V4", time_bin=(170, 270))
    _check_recordings(v4, assembly, "V4", 1)


def test_assembly_with_stimulus_id_coord(tmp_path: Path) -> None:
    truth = write_assembly(tmp_path / "new.nc", id_coord="stimulus_id")
    _check_recordings(brainscore_assembly_to_recordings(read_dataset(truth.path), "IT"), truth, "IT", 0)


def test_assembly_as_multiindexed_dataarray(assembly: AssemblyTruth) -> None:
    with xr.open_dataarray(assembly.path) as opened:
        array = opened.load()
    # in memory brainio holds every coordinate in one MultiIndex per dimension
    levels = {d: [str(n) for n, c in array.coords.items() if c.dims == (d,)] for d in array.dims}
    indexed = array.set_index({d: names for d, names in levels.items()})
    assert all(isinstance(indexed.indexes[d], pd.MultiIndex) for d in array.dims)
    _check_recordings(brainscore_assembly_to_recordings(indexed, "IT"), assembly, "IT", 0)


def test_assembly_recordings_survive_io(assembly: AssemblyTruth, tmp_path: Path) -> None:
    recordings = brainscore_assembly_to_recordings(read_dataset(assembly.path), "IT")
    back = read_dataset(write_dataset(recordings, tmp_path / "rec.nc", title="t", source="test"))
    averaged = mean_response(back)
    chosen = [i for i, r in enumerate(assembly.region) if r == "IT"]
    first = assembly.image_id[0]
    rows = [j for j, s in enumerate(assembly.image_id) if s == first]
    expected = assembly.values[chosen][:, rows, 0].mean(axis=1)
    np.testing.assert_allclose(averaged.sel(stimulus_id=first).values, expected, rtol=1e-6)


def test_assembly_errors_name_the_problem(assembly: AssemblyTruth) -> None:
    ds = read_dataset(assembly.path)
    with pytest.raises(ValueError, match=r"\[70, 170\], \[170, 270\]"):
        brainscore_assembly_to_recordings(ds, "IT", time_bin=(0, 100))
    with pytest.raises(ValueError, match="'V4'"):
        brainscore_assembly_to_recordings(ds, "V1")
    with pytest.raises(KeyError, match="'repetition'"):
        brainscore_assembly_to_recordings(ds.drop_vars("repetition"), "IT")
    with pytest.raises(KeyError, match="'stimulus_id' or 'image_id'"):
        brainscore_assembly_to_recordings(ds.drop_vars("image_id"), "IT")
    with pytest.raises(KeyError, match="time_bin"):
        brainscore_assembly_to_recordings(ds.isel(time_bin=0, drop=True), "IT")
    with pytest.raises(ValueError, match="one data variable"):
        brainscore_assembly_to_recordings(ds.assign(other=ds[ASSEMBLY_NAME]), "IT")


# ---------------------------------------- files written by Brain-Score's own writer (2.5)


def test_assembly_written_by_brainscore_core_converts() -> None:
    truth = reference_truth()
    recordings = recordings_from_source({"source": "brainscore", "region": "IT"}, {"assembly": truth.assembly})
    chosen = [i for i, r in enumerate(truth.region) if r == "IT"]
    np.testing.assert_array_equal(recordings["response"].values, truth.values[:, chosen, 0])
    assert recordings["stimulus_id"].values.tolist() == truth.stimulus_id
    assert recordings["repetition"].values.tolist() == truth.repetition
    assert recordings["neuroid_id"].values.tolist() == [truth.neuroid_id[i] for i in chosen]
    assert recordings["animal"].values.tolist() == [truth.animal[i] for i in chosen]
    assert recordings.attrs["source_assembly"] == truth.assembly.name  # the variable is just 'data'
    assert recordings.attrs["source_stimulus_set"] == "neuroattack.reference"
    v4 = brainscore_assembly_to_recordings(read_dataset(truth.assembly), "V4", time_bin=(170, 270))
    np.testing.assert_array_equal(v4["response"].values, truth.values[:, [3, 4], 1])


def test_stimulus_set_written_by_brainscore_core_converts() -> None:
    truth = reference_truth()
    stimuli = brainscore_stimuli_to_dataset(truth.csv, truth.zip, resolution=8)
    assert stimuli["stimulus_id"].values.tolist() == list(truth.images)
    assert stimuli["category"].values.tolist() == [truth.category[s] for s in truth.images]
    for stimulus, pixels in truth.images.items():
        np.testing.assert_array_equal(stimuli["pixels"].sel(stimulus_id=stimulus).values, pixels)


def _layout(path: Path) -> dict[str, object]:
    """What a reader of an assembly file depends on: variables, dims, dtype kinds, encoding, attrs."""
    with xr.open_dataset(path) as ds:
        data = ds["data"] if "data" in ds else ds[next(iter(ds.data_vars))]
        encoding = {k: data.encoding.get(k) for k in ("zlib", "complevel", "shuffle", "dtype")}
        return {
            "data_vars": list(ds.data_vars),
            "indexes": list(ds.indexes),
            "coord_dims": sorted({c.dims for c in ds.coords.values()}),
            "coord_kinds": sorted({(c.dims[0], c.dtype.kind) for c in ds.coords.values()}),
            "encoding": encoding,
            "file_attrs": sorted(ds.attrs),
            "data_attrs": sorted(data.attrs),
        }


def test_the_brainscore_core_fixture_has_the_real_writers_layout(tmp_path: Path) -> None:
    truth = write_assembly(tmp_path / "assy.nc", id_coord="stimulus_id", writer="brainscore-core")
    ours, real = _layout(truth.path), _layout(reference_truth().assembly)
    # the reference has fewer coordinates; every other property of the layout is the same
    assert {k: v for k, v in ours.items() if k != "coord_kinds"} == {
        k: v for k, v in real.items() if k != "coord_kinds"
    }
    assert set(real["coord_kinds"]) <= set(ours["coord_kinds"])  # type: ignore[arg-type]
    ds = read_dataset(truth.path)
    _check_recordings(brainscore_assembly_to_recordings(ds, "IT"), truth, "IT", 0)
    _check_recordings(brainscore_assembly_to_recordings(ds, "V4", (170, 270)), truth, "V4", 1)


@pytest.mark.skipif(BRAINSCORE_CORE_MISSING is not None, reason=str(BRAINSCORE_CORE_MISSING))
def test_fixture_assemblies_come_from_brainscore_cores_own_writer(tmp_path: Path) -> None:
    import brainscore_core  # noqa: F401  (present: write_assembly used its write_netcdf)

    truth = write_assembly(tmp_path / "assy.nc", writer="brainscore-core")
    _check_recordings(brainscore_assembly_to_recordings(read_dataset(truth.path), "IT"), truth, "IT", 0)


def test_the_time_window_is_a_config_key(assembly: AssemblyTruth) -> None:
    inputs = {"assembly": assembly.path}
    default = recording_sources.recordings_from_source({"source": "brainscore", "region": "IT"}, inputs)
    _check_recordings(default, assembly, "IT", 0)  # 70-170 ms when the config names no window
    later = {"source": "brainscore", "region": "IT", "time_window_ms": [170, 270]}
    _check_recordings(recording_sources.recordings_from_source(later, inputs), assembly, "IT", 1)
    absent = {"source": "brainscore", "region": "IT", "time_window_ms": [0, 100]}
    with pytest.raises(ValueError) as caught:
        recording_sources.recordings_from_source(absent, inputs)
    message = str(caught.value)
    assert message.startswith(f"{assembly.path}: ")
    assert "no time bin 0-100 ms; its bins (ms): [70, 170], [170, 270]" in message
    assert "Set recordings.time_window_ms in the config to one of them" in message


def test_converter_errors_name_the_file(assembly: AssemblyTruth, tmp_path: Path) -> None:
    broken = tmp_path / "assembly.nc"
    write_dataset(read_dataset(assembly.path).drop_vars("repetition"), broken, title="t", source="test")
    with pytest.raises(KeyError) as caught:
        recording_sources.recordings_from_source({"source": "brainscore", "region": "IT"}, {"assembly": broken})
    assert str(caught.value.args[0]).startswith(f"{broken}: assembly") and "'repetition'" in str(caught.value)
    with pytest.raises(ValueError, match=rf"^{assembly.path}: .*no neuroids in region 'V1'"):
        recording_sources.recordings_from_source({"source": "brainscore", "region": "V1"}, {"assembly": assembly.path})
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(assembly.path.read_bytes()[:2000])
    with pytest.raises(OSError, match=rf"^{truncated}: not a readable netCDF file .*--forcerun {truncated}$"):
        recording_sources.recordings_from_source({"source": "brainscore", "region": "IT"}, {"assembly": truncated})


# ----------------------------------------------------------------- Brain-Score stimuli


def test_stimulus_set_converts(tmp_path: Path) -> None:
    truth = write_stimulus_set(tmp_path / "hvm", side=32)
    ds = brainscore_stimuli_to_dataset(truth.csv_path, truth.zip_path, resolution=32)
    assert ds["stimulus_id"].values.tolist() == truth.table["image_id"].tolist()
    assert ds["category"].values.tolist() == truth.table["category_name"].tolist()
    assert ds["object_name"].values.tolist() == truth.table["object_name"].tolist()
    assert ds.attrs["resolution"] == 32
    for stimulus, grey in truth.images.items():
        rgb = ds["pixels"].sel(stimulus_id=stimulus).values
        for channel in range(3):
            np.testing.assert_array_equal(rgb[..., channel], grey)
    smaller = brainscore_stimuli_to_dataset(truth.csv_path, truth.zip_path, resolution=16)
    assert smaller["pixels"].shape == (4, 16, 16, 3) and smaller.attrs["resolution"] == 16


def test_stimulus_set_with_stimulus_id_column(tmp_path: Path) -> None:
    truth = write_stimulus_set(tmp_path / "new", id_column="stimulus_id")
    ds = brainscore_stimuli_to_dataset(truth.csv_path, truth.zip_path, resolution=8)
    assert ds["stimulus_id"].values.tolist() == truth.table["stimulus_id"].tolist()


def test_stimulus_set_errors(tmp_path: Path) -> None:
    truth = write_stimulus_set(tmp_path / "hvm")
    table = truth.table.drop(columns="category_name")
    broken_csv = tmp_path / "broken.csv"
    table.to_csv(broken_csv, index=False)
    with pytest.raises(KeyError, match="category_name") as caught:
        brainscore_stimuli_to_dataset(broken_csv, truth.zip_path, resolution=8)
    assert "broken.csv" in str(caught.value)
    renamed = truth.table.assign(filename=["missing.png"] * len(truth.table))
    renamed.to_csv(broken_csv, index=False)
    with pytest.raises(KeyError, match=r"missing\.png"):
        brainscore_stimuli_to_dataset(broken_csv, truth.zip_path, resolution=8)


def test_a_truncated_zip_is_named(tmp_path: Path) -> None:
    truth = write_stimulus_set(tmp_path / "hvm")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(truth.zip_path.read_bytes()[:-100])  # the central directory is at the end
    with pytest.raises(ValueError) as caught:
        brainscore_stimuli_to_dataset(truth.csv_path, truncated, resolution=8)
    message = str(caught.value)
    assert message.startswith(f"{truncated}: not a readable ZIP archive")
    assert message.endswith(f"download it again by running your snakemake command again with --forcerun {truncated}")


def _small_stimuli() -> xr.Dataset:
    pixels = np.random.default_rng(3).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    stimuli = make_stimuli(pixels, ["s0", "s1", "s2"], ["cat", "dog", "cat"])
    return stimuli.assign_coords(variation=("stimulus_id", ["V0", "V3", "V6"]))


def test_exported_stimulus_set_round_trips(tmp_path: Path) -> None:
    stimuli = _small_stimuli()
    csv_path, zip_path = tmp_path / "set.csv", tmp_path / "set.zip"
    stimulus_sets.write_stimulus_set(stimuli, csv_path, zip_path)
    back = brainscore_stimuli_to_dataset(csv_path, zip_path, resolution=8)
    np.testing.assert_array_equal(back["pixels"].values, stimuli["pixels"].values)
    assert back["category"].values.tolist() == ["cat", "dog", "cat"]
    assert back["variation"].values.tolist() == ["V0", "V3", "V6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.csv", "set.zip"]


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)], ids=["022", "077"])
def test_exported_stimulus_set_mode_follows_the_umask(mask: int, mode: int, tmp_path: Path) -> None:
    csv_path, zip_path = tmp_path / "set.csv", tmp_path / "set.zip"
    previous = os.umask(mask)
    try:
        stimulus_sets.write_stimulus_set(_small_stimuli(), csv_path, zip_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(csv_path.stat().st_mode) == mode
    assert stat.S_IMODE(zip_path.stat().st_mode) == mode


# -------------------------------------------------------------------- image folders


def test_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "cars" / "side").mkdir(parents=True)
    (root / "faces").mkdir()
    Image.new("RGB", (20, 10), (255, 0, 0)).save(root / "cars" / "red.png")
    Image.new("L", (12, 12), 200).save(root / "cars" / "side" / "grey.jpg")
    Image.new("RGBA", (12, 12), (0, 0, 255, 0)).save(root / "faces" / "clear.png")
    Image.new("RGB", (12, 12), (0, 255, 0)).save(root / "loose.png")
    (root / ".hidden.png").write_bytes(b"not an image")
    (root / "notes.txt").write_text("ignored")
    ds = image_folder_to_stimuli(root, resolution=8)
    assert ds["stimulus_id"].values.tolist() == ["cars/red", "cars/side/grey", "faces/clear", "loose"]
    assert ds["category"].values.tolist() == ["cars", "cars", "faces", "none"]
    pixels = ds["pixels"].values
    assert pixels.shape == (4, 8, 8, 3) and pixels.dtype == np.uint8
    assert (pixels[0] == [255, 0, 0]).all()  # non-square: centre crop, then resize
    assert (np.abs(pixels[1].astype(int) - 200) <= 1).all()  # grey replicated to RGB
    assert (pixels[2] == [128, 128, 128]).all()  # transparent: the rig's grey shows through


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        image_folder_to_stimuli(tmp_path / "absent", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        image_folder_to_stimuli(tmp_path / "empty", 8)
    twins = tmp_path / "twins"
    twins.mkdir()
    Image.new("RGB", (4, 4)).save(twins / "a.png")
    Image.new("RGB", (4, 4)).save(twins / "a.jpg")
    with pytest.raises(ValueError, match="same stimulus id"):
        image_folder_to_stimuli(twins, 4)


def test_sixteen_bit_image_is_scaled() -> None:
    image = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert (image_to_pixels(image, 4) == 255).all()


# ---------------------------------------------------------------------- tidy tables


def _tidy(n_stimuli: int = 3, n_reps: int = 2, n_neuroids: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {
            "stimulus_id": f"img{s:02d}",
            "repetition": r,
            "neuroid_id": f"site{n}",
            "response": float(rng.poisson(5)),
            "region": "IT",
            "animal": "M1" if n < 2 else "M2",
        }
        for r in range(n_reps)
        for s in range(n_stimuli)
        for n in range(n_neuroids)
    ]
    return pd.DataFrame(rows)


def _expected_matrix(frame: pd.DataFrame) -> np.ndarray:
    """_tidy's rows run neuroid-fastest, so the wide matrix is a reshape."""
    return frame["response"].to_numpy(dtype=np.float32).reshape(-1, frame["neuroid_id"].nunique())


def test_csv_table(tmp_path: Path) -> None:
    frame = _tidy()
    path = tmp_path / "rig.csv"
    frame.sample(frac=1.0, random_state=1).to_csv(path, index=False)  # row order must not matter
    recordings = table_to_recordings(path)
    order = recordings["stimulus_id"].values.tolist(), recordings["repetition"].values.tolist()
    sites = recordings["neuroid_id"].values.tolist()
    for row, (stimulus, rep) in enumerate(zip(*order, strict=True)):
        for column, site in enumerate(sites):
            match = frame[(frame.stimulus_id == stimulus) & (frame.repetition == rep) & (frame.neuroid_id == site)]
            assert recordings["response"].values[row, column] == match["response"].item()
    assert sorted(sites) == ["site0", "site1", "site2", "site3"]
    animals = dict(zip(sites, recordings["animal"].values.tolist(), strict=True))
    assert animals == {"site0": "M1", "site1": "M1", "site2": "M2", "site3": "M2"}
    assert recordings.sizes == {"presentation": 6, "site": 4}


def test_netcdf_table_and_time_window(tmp_path: Path) -> None:
    frame = _tidy().drop(columns=["region", "animal"])
    ds = xr.Dataset({c: ("row", frame[c].to_numpy()) for c in frame.columns})
    ds.attrs = {"time_window_start_ms": 50, "time_window_end_ms": 150}
    path = write_dataset(ds, tmp_path / "rig.nc", title="t", source="test")
    recordings = table_to_recordings(path)
    np.testing.assert_array_equal(recordings["response"].values, _expected_matrix(frame))
    assert recordings["stimulus_id"].values.tolist() == ["img00", "img01", "img02"] * 2
    assert recordings["repetition"].values.tolist() == [0, 0, 0, 1, 1, 1]
    assert set(recordings["region"].values.tolist()) == {"unknown"}
    assert recordings.attrs["time_window_start_ms"] == 50


def test_table_errors_name_column_and_file(tmp_path: Path) -> None:
    path = tmp_path / "rig.csv"
    _tidy().drop(columns="repetition").to_csv(path, index=False)
    with pytest.raises(KeyError, match="repetition") as caught:
        table_to_recordings(path)
    assert "rig.csv" in str(caught.value)
    _tidy().iloc[1:].to_csv(path, index=False)
    with pytest.raises(ValueError, match="no row"):
        table_to_recordings(path)
    frame = _tidy()
    pd.concat([frame, frame.iloc[:1]]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="repeated"):
        table_to_recordings(path)
    frame.assign(region=["V4"] + ["IT"] * (len(frame) - 1)).to_csv(path, index=False)
    with pytest.raises(ValueError, match="region changes"):
        table_to_recordings(path)
    (tmp_path / "rig.xlsx").touch()
    with pytest.raises(ValueError, match="unknown table format"):
        table_to_recordings(tmp_path / "rig.xlsx")


# ------------------------------------------------------------- robustness checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, torch.nn.Module]]:
    path = tmp_path_factory.mktemp("ckpt") / "resnet50_l2_eps3.ckpt"
    classifier = write_robustness_checkpoint(path)
    yield path, classifier
    path.unlink()


def _direct_logits(classifier: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(ROBUST_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(ROBUST_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return classifier((x - mean) / std)


def test_checkpoint_to_weights_matches_direct_load(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    path, classifier = checkpoint
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert any(k.startswith("module.attacker.model.") for k in raw["model"])
    weights = robust_checkpoint_to_weights(path)
    names = set(map(str, weights.data_vars))
    assert not any(n.startswith(("attacker", "module", "normalize")) for n in names)
    assert names == {f"model.{k}" for k in classifier.state_dict()}
    arch = Architecture.from_json(weights.attrs["architecture"])
    assert arch.name == "resnet50"
    np.testing.assert_array_equal(np.float32(arch.mean), np.float32(ROBUST_MEAN))
    np.testing.assert_array_equal(np.float32(arch.std), np.float32(ROBUST_STD))
    assert weights.attrs["source_epoch"] == 90
    network = network_from_dataset(weights)  # strict: no missing or unexpected keys
    # the same tensors as loading the stripped state dict straight into torchvision
    direct = type(classifier)  # torchvision ResNet
    assert isinstance(network.model, direct)
    for key, tensor in classifier.state_dict().items():
        assert torch.equal(network.model.state_dict()[key], tensor), key
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = network(x)
    torch.testing.assert_close(ours, _direct_logits(classifier, x), rtol=0, atol=1e-5)


def test_checkpoint_weights_survive_io(checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, classifier = checkpoint
    file = write_dataset(robust_checkpoint_to_weights(path), tmp_path / "w.nc", title="t", source="test")
    network = network_from_dataset(read_dataset(file), str(file))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(network(x), _direct_logits(classifier, x), rtol=0, atol=1e-5)


def test_checkpoint_without_dataparallel_prefix_and_old_batchnorm(
    checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    _, classifier = checkpoint
    state = robustness_state_dict(classifier, dataparallel=False)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save({"state_dict": state, "epoch": 1}, path)
    network = network_from_dataset(robust_checkpoint_to_weights(path))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(network(x), _direct_logits(classifier, x), rtol=0, atol=1e-5)


def test_checkpoint_mismatches_are_reported(checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, classifier = checkpoint
    with pytest.raises(CheckpointMismatchError, match=r"fc\.weight is expected with shape \(10, 2048\)") as caught:
        robust_checkpoint_to_weights(path, Architecture(name="resnet50", num_classes=10))
    assert "(1000, 2048)" in str(caught.value) and "1000 classes, not 10" in str(caught.value)
    state = robustness_state_dict(classifier)
    del state["module.model.layer1.0.conv1.weight"]
    state["module.model.extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.ckpt"
    torch.save({"model": state}, broken)
    with pytest.raises(CheckpointMismatchError, match=r"layer1\.0\.conv1\.weight") as caught:
        robust_checkpoint_to_weights(broken)
    message = str(caught.value)
    assert str(broken) in message and "extra.weight" in message and "matches none of" in message
    with pytest.raises(FileNotFoundError):
        robust_checkpoint_to_weights(tmp_path / "absent.ckpt")


def test_checkpoint_of_another_architecture_names_the_fix(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    path, _ = checkpoint  # a ResNet-50
    with pytest.raises(CheckpointMismatchError) as caught:
        weights_from_checkpoint(path, "wrn_l2_eps3", {"eps": 3.0, "architecture": "wide_resnet50_2"})
    message = str(caught.value)
    assert str(path) in message
    # the first tensor that differs, with the expected (wide) and the found shape
    assert "layer1.0.conv1.weight is expected with shape (128, 64, 1, 1) but has shape (64, 64, 1, 1)" in message
    assert "set networks.wrn_l2_eps3.architecture to resnet50" in message


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, torch.nn.Module]]:
    path = tmp_path_factory.mktemp("ckpt18") / "resnet18_linf_eps4.0.ckpt"
    classifier = write_robustness_checkpoint(path, seed=5, architecture="resnet18")
    yield path, classifier
    path.unlink()


def test_resnet18_linf_checkpoint_converts(resnet18_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    path, classifier = resnet18_checkpoint
    weights = weights_from_checkpoint(path, "r18", {"eps": 4 / 255, "norm": "linf", "architecture": "resnet18"})
    assert weights.attrs["training_norm"] == "linf" and weights.attrs["training_eps"] == 4 / 255
    assert Architecture.from_json(weights.attrs["architecture"]).name == "resnet18"
    network = network_from_dataset(weights)
    assert network.feature_dim == 512
    for key, tensor in classifier.state_dict().items():
        assert torch.equal(network.model.state_dict()[key], tensor), key
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(network(x), _direct_logits(classifier, x), rtol=0, atol=1e-5)


def test_resnet18_checkpoint_read_as_the_default_resnet50_names_the_fix(
    resnet18_checkpoint: tuple[Path, torch.nn.Module],
) -> None:
    path, _ = resnet18_checkpoint
    with pytest.raises(CheckpointMismatchError) as caught:
        weights_from_checkpoint(path, "r18", {"eps": 4 / 255, "norm": "linf"})  # architecture left out
    message = str(caught.value)
    assert str(path) in message and "a resnet50 with 1000 classes" in message
    assert "layer1.0.conv1.weight is expected with shape (64, 64, 1, 1) but has shape (64, 64, 3, 3)" in message
    assert "set networks.r18.architecture to resnet18" in message


@pytest.mark.parametrize("name", sorted(CHECKPOINT_ARCHITECTURES))
def test_every_checkpoint_architecture_is_torchvisions(name: str) -> None:
    """The converter builds exactly torchvision's network for each name (same tensors and shapes)."""
    with torch.device("meta"):
        network = build_network(robust_architecture(name))
        reference = torchvision.models.get_model(name, weights=None)
    ours = {k.removeprefix("model."): tuple(v.shape) for k, v in network.state_dict().items() if k.startswith("model.")}
    assert ours == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert network.feature_dim == reference.fc.in_features
    with pytest.raises(ValueError, match="resnet18, resnet50, wide_resnet50_2"):
        robust_architecture("vgg16")


def test_checkpoint_settings_are_checked(checkpoint: tuple[Path, torch.nn.Module]) -> None:
    path, _ = checkpoint
    with pytest.raises(ValueError, match=r"networks\.x\.norm"):
        weights_from_checkpoint(path, "x", {"eps": 3.0, "norm": "l1"})
    weights = weights_from_checkpoint(path, "x", {"eps": 3.0})  # the defaults: resnet50, l2
    assert weights.attrs["training_norm"] == "l2" and weights.attrs["training_eps"] == 3.0


class _Arbitrary:
    """An object a weights-only load must refuse to rebuild."""


def test_checkpoint_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"model": {"x": torch.zeros(1)}, "extra": _Arbitrary()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        robust_checkpoint_to_weights(path)


def _stimuli_named(ids: list[str], folder: str | None = None) -> xr.Dataset:
    stimuli = make_stimuli(np.zeros((len(ids), 2, 2, 3), np.uint8), ids, ["c"] * len(ids))
    if folder is not None:
        stimuli.attrs["source_folder"] = folder
    return stimuli


def test_recordings_of_a_subset_of_the_stimuli_are_accepted_and_the_rest_counted(tmp_path: Path) -> None:
    path = tmp_path / "rig.csv"
    _tidy(n_stimuli=3).to_csv(path, index=False)
    recordings = table_to_recordings(path)
    stimuli = _stimuli_named(["img00", "img01", "img02", "img03", "img04"])
    assert unrecorded_stimuli(recordings, stimuli, path) == ["img03", "img04"]
    assert unrecorded_stimuli(recordings, stimuli.isel(stimulus_id=[2, 0, 1]), path) == []


def test_stimulus_ids_the_stimulus_set_lacks_stop_the_import_naming_file_counts_and_examples(tmp_path: Path) -> None:
    frame = _tidy(n_stimuli=3)
    frame["stimulus_id"] = "cars/" + frame["stimulus_id"] + ".png"  # the images' file names, as a lab writes them
    path = tmp_path / "rig.csv"
    frame.to_csv(path, index=False)
    recordings = table_to_recordings(path)
    folder = _stimuli_named(["cars/img00", "cars/img01", "cars/img02"], folder="/data/images")
    with pytest.raises(ValueError) as raised:
        unrecorded_stimuli(recordings, folder, path)
    message = str(raised.value)
    assert message.startswith(
        f"{path}: 3 of the 3 stimulus ids of the recordings are not in the images in /data/images"
    )
    assert "(0 match)" in message and "'cars/img00.png'" in message and "'cars/img00'" in message
    assert "without its suffix" in message and "match once their suffixes are dropped" in message
    # some match, some not; not an image folder: no folder hint
    embedded = _stimuli_named(["cars/img00.png", "cars/img01.png", "other"])
    with pytest.raises(ValueError, match=r"1 of the 3 stimulus ids .* embedded stimulus set \(2 match\)") as raised:
        unrecorded_stimuli(recordings, embedded, path)
    assert "without its suffix" not in str(raised.value)
