"""Tiny stand-ins for the public paper-scale inputs, built at test time.

Each mirrors the structure of the real file (names, dims, dtypes, layout),
not its size:

- `write_assembly`: by default (writer="brainio") like
  `assy_dicarlo_MajajHong2015_public.nc` as brainio wrote it (the file served
  today, same sha1 as in 2019): a DataArray named 'dicarlo.MajajHong2015.public' with dims
  (neuroid, presentation, time_bin), float32 values, its presentation /
  neuroid / time_bin MultiIndexes reset to plain coordinates before
  `to_netcdf` (brainio's write_netcdf), legacy `image_id` on presentations,
  neuroid coords neuroid_id ('Chabo_L_M_5_9'-style), arr, col, row, hemisphere,
  subregion, animal, x, y, region; time_bin_start/time_bin_end int64.
  writer="brainscore-core": as brainscore-core 2.5's `write_netcdf` writes an
  assembly today. With brainscore-core installed, its own writer writes the file;
  it is not in the pinned set (it pins numpy<2 and xarray<2022.6, see
  BRAINSCORE_CORE_MISSING), so the fallback imitates it: one variable named 'data'
  in the assembly's dim order, zlib level 9 with shuffle, the assembly's attrs on
  both the variable and the file. The files in tests/brainscore_reference/ were
  written by the real brainscore-core 2.5 (make_reference.py there):
  test_sources checks the converters on them and this imitation against them.
- `write_stimulus_set`: like `stimulus_hvm-public.csv` + `.zip` (until 2024
  `image_dicarlo_hvm-public.*`, the same bytes): the 18
  HvM columns (id, background_id, s, rxy, tz, category_name, rxz_semantic, ty,
  ryz, object_name, variation, size, image_file_name, rxy_semantic,
  ryz_semantic, rxz, image_id, filename), 40-hex image ids, 'L'-mode PNG files
  named '<object>_rx..._<id>_256x256.png' at the top level of the ZIP.
- `write_robustness_checkpoint`: like a robustness-library / Salman et al. 2020
  `.ckpt` (L2 and L-infinity alike): {'model', 'optimizer', 'schedule', 'epoch'}
  where 'model' is the state dict of DataParallel(AttackerModel(<torchvision
  resnet18, resnet50 or wide_resnet50_2>)): module.normalizer.new_mean,
  module.normalizer.new_std (shape (3, 1, 1)), module.model.<torchvision keys>,
  module.attacker.normalize.*, module.attacker.model.<same tensors again>.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import xarray as xr
from PIL import Image
from torchvision.models import resnet18, resnet50, wide_resnet50_2

ASSEMBLY_NAME = "dicarlo.MajajHong2015.public"
REFERENCE = Path(__file__).resolve().parent / "brainscore_reference"
BRAINSCORE_CORE_MISSING = (
    None
    if importlib.util.find_spec("brainscore_core") is not None
    else "brainscore-core is not installed: its 2.5 release pins numpy<2 and xarray<2022.6, which conflict with "
    "envs/constraints.txt (numpy 2.4.6, xarray 2026.9.0); fixtures imitate its writer instead"
)
Writer = Literal["brainio", "brainscore-core"]
OBJECTS = [("Animals", "bear"), ("Cars", "car_astra"), ("Faces", "face0"), ("Fruits", "apple")]


@dataclass(frozen=True)
class AssemblyTruth:
    path: Path
    values: np.ndarray  # (neuroid, presentation, time_bin) as written
    image_id: list[str]
    repetition: list[int]
    neuroid_id: list[str]
    region: list[str]
    animal: list[str]
    time_bins: list[tuple[int, int]]


def _image_ids(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha1(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def write_assembly(
    path: Path,
    n_images: int = 4,
    n_reps: int = 3,
    id_coord: str = "image_id",
    seed: int = 0,
    writer: Writer = "brainio",
) -> AssemblyTruth:
    """A MajajHong2015.public-like assembly with 2 regions and 2 time bins, written as
    brainio wrote the served file, or as brainscore-core 2.5 writes assemblies today."""
    rng = np.random.default_rng(seed)
    ids = _image_ids(n_images)
    # presentations come in repetition blocks, shuffled within a block, as recorded
    order = [(rep, i) for rep in range(n_reps) for i in rng.permutation(n_images)]
    image_id = [ids[i] for _, i in order]
    repetition = [rep for rep, _ in order]
    neuroids = [
        ("Chabo", "L", "M", 5, 9, "IT", "cIT"),
        ("Chabo", "L", "A", 8, 8, "IT", "aIT"),
        ("Tito", "L", "P", 0, 3, "IT", "pIT"),
        ("Tito", "L", "P", 2, 1, "V4", "V4"),
        ("Chabo", "L", "P", 7, 7, "V4", "V4"),
    ]
    neuroid_id = [f"{a}_{h}_{arr}_{r}_{c}" for a, h, arr, r, c, _, _ in neuroids]
    time_bins = [(70, 170), (170, 270)]
    values = rng.normal(size=(len(neuroids), len(order), len(time_bins))).astype(np.float32)
    category = [OBJECTS[i % len(OBJECTS)] for _, i in order]
    coords = {
        id_coord: ("presentation", np.array(image_id, dtype=object)),
        "repetition": ("presentation", np.array(repetition, dtype=np.int64)),
        "stimulus": ("presentation", np.array([i for _, i in order], dtype=np.int64)),
        "id": ("presentation", np.array([i + 1 for _, i in order], dtype=np.int64)),
        "object_name": ("presentation", np.array([o for _, o in category], dtype=object)),
        "category_name": ("presentation", np.array([c for c, _ in category], dtype=object)),
        "variation": ("presentation", np.array([(i % 2) * 3 for _, i in order], dtype=np.int64)),
        "size": ("presentation", np.full(len(order), 256.0)),
        "rxy_semantic": ("presentation", rng.normal(size=len(order))),
        "neuroid_id": ("neuroid", np.array(neuroid_id, dtype=object)),
        "arr": ("neuroid", np.array([n[2] for n in neuroids], dtype=object)),
        "col": ("neuroid", np.array([n[4] for n in neuroids], dtype=np.int64)),
        "hemisphere": ("neuroid", np.array([n[1] for n in neuroids], dtype=object)),
        "subregion": ("neuroid", np.array([n[6] for n in neuroids], dtype=object)),
        "animal": ("neuroid", np.array([n[0] for n in neuroids], dtype=object)),
        "y": ("neuroid", rng.normal(size=len(neuroids))),
        "x": ("neuroid", rng.normal(size=len(neuroids))),
        "region": ("neuroid", np.array([n[5] for n in neuroids], dtype=object)),
        "row": ("neuroid", np.array([n[3] for n in neuroids], dtype=np.int64)),
        "time_bin_start": ("time_bin", np.array([s for s, _ in time_bins], dtype=np.int64)),
        "time_bin_end": ("time_bin", np.array([e for _, e in time_bins], dtype=np.int64)),
    }
    array = xr.DataArray(values, dims=("neuroid", "presentation", "time_bin"), coords=coords, name=ASSEMBLY_NAME)
    # brainio's DataAssembly gathers every coordinate into a MultiIndex per dim ...
    array = array.set_index(
        neuroid=[n for n, (d, _) in coords.items() if d == "neuroid"],
        presentation=[n for n, (d, _) in coords.items() if d == "presentation"],
        time_bin=["time_bin_start", "time_bin_end"],
    )
    array.attrs = {"stimulus_set_identifier": "dicarlo.hvm-public"}
    path.parent.mkdir(parents=True, exist_ok=True)
    if writer == "brainio":
        # ... and write_netcdf resets them before writing (netCDF cannot hold a MultiIndex)
        array.reset_index(list(array.indexes)).to_netcdf(path)
    else:
        write_netcdf_like_brainscore_core(array, path)
    return AssemblyTruth(
        path=path,
        values=values,
        image_id=image_id,
        repetition=repetition,
        neuroid_id=neuroid_id,
        region=[n[5] for n in neuroids],
        animal=[n[0] for n in neuroids],
        time_bins=time_bins,
    )


def write_netcdf_like_brainscore_core(array: xr.DataArray, path: Path) -> None:
    """Write an assembly as brainscore-core 2.5's `write_netcdf` (compress=True) does:
    with its own writer when it is installed, else by imitating it."""
    if BRAINSCORE_CORE_MISSING is None:
        from brainscore_core.supported_data_standards.brainio import NeuroidAssembly, write_netcdf

        write_netcdf(NeuroidAssembly(array), path)
        return
    flat = array.reset_index(list(array.indexes))
    dataset = flat.to_dataset(name="data", promote_attrs=True)
    dataset.to_netcdf(path, encoding={"data": {"zlib": True, "complevel": 9}})


@dataclass(frozen=True)
class ReferenceTruth:
    """What tests/brainscore_reference/make_reference.py packaged with brainscore-core 2.5."""

    assembly: Path
    csv: Path
    zip: Path
    values: np.ndarray  # (presentation, neuroid, time_bin)
    stimulus_id: list[str]  # per presentation
    repetition: list[int]
    neuroid_id: list[str]
    region: list[str]
    animal: list[str]
    time_bins: list[tuple[int, int]]
    images: dict[str, np.ndarray]  # stimulus id -> RGB pixels
    category: dict[str, str]


def reference_truth() -> ReferenceTruth:
    """The contents of the reference files, recomputed (make_reference.py uses no random numbers)."""
    n_images, n_reps, side = 4, 3, 8
    neuroids = [
        ("Chabo_L_M_5_9", "IT", "Chabo"),
        ("Chabo_L_A_8_8", "IT", "Chabo"),
        ("Tito_L_P_0_3", "IT", "Tito"),
        ("Tito_L_P_2_1", "V4", "Tito"),
        ("Chabo_L_P_7_7", "V4", "Chabo"),
    ]
    ids = [f"image{i + 1}" for i in range(n_images)]
    shape = (n_images * n_reps, len(neuroids), 2)
    values = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) * 0.25 - 3.0).astype(np.float32)
    ramp = np.arange(side * side * 3, dtype=np.int64).reshape(side, side, 3)
    return ReferenceTruth(
        assembly=REFERENCE / "assy_neuroattack_Reference2026.nc",
        csv=REFERENCE / "stimulus_neuroattack_reference.csv",
        zip=REFERENCE / "stimulus_neuroattack_reference.zip",
        values=values,
        stimulus_id=[ids[p % n_images] for p in range(n_images * n_reps)],
        repetition=[p // n_images for p in range(n_images * n_reps)],
        neuroid_id=[n for n, _, _ in neuroids],
        region=[r for _, r, _ in neuroids],
        animal=[a for _, _, a in neuroids],
        time_bins=[(70, 170), (170, 270)],
        images={s: ((ramp * (i + 1) * 7) % 256).astype(np.uint8) for i, s in enumerate(ids)},
        category={s: ["Animals", "Cars"][i % 2] for i, s in enumerate(ids)},
    )


HVM_COLUMNS = [
    "id", "background_id", "s", "rxy", "tz", "category_name", "rxz_semantic", "ty", "ryz",
    "object_name", "variation", "size", "image_file_name", "rxy_semantic", "ryz_semantic", "rxz",
    "image_id", "filename",
]  # fmt: skip


@dataclass(frozen=True)
class StimulusSetTruth:
    csv_path: Path
    zip_path: Path
    table: pd.DataFrame
    images: dict[str, np.ndarray]  # stimulus id -> the grey image as stored (uint8, 2-d)


def write_stimulus_set(
    directory: Path,
    n_images: int = 4,
    side: int = 32,
    id_column: str = "image_id",
    seed: int = 0,
    stem: str = "stimulus_hvm-public",
) -> StimulusSetTruth:
    """An HvM-like stimulus set: CSV with the real columns, flat ZIP of grey PNGs, named
    `<stem>.csv` and `<stem>.zip` (served as stimulus_hvm-public.*, formerly image_dicarlo_hvm-public.*)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    ids = _image_ids(n_images)
    rows, images = [], {}
    for index, stimulus in enumerate(ids):
        category, obj = OBJECTS[index % len(OBJECTS)]
        filename = f"{obj}_rx+00.000_ry+00.000_rz+00.000_tx+00.000_ty+00.000_s+01.000_{stimulus}_256x256.png"
        rows.append(
            {
                "id": index + 1, "background_id": hashlib.sha1(f"bg{index}".encode()).hexdigest(),
                "s": 1.0, "rxy": 0.0, "tz": 0.0, "category_name": category, "rxz_semantic": 0.0, "ty": 0.0,
                "ryz": 0.0, "object_name": obj, "variation": (index % 2) * 3, "size": 256.0,
                "image_file_name": filename, "rxy_semantic": 90.0, "ryz_semantic": -0.0, "rxz": 0.0,
                "image_id": stimulus, "filename": filename,
            }
        )  # fmt: skip
        images[stimulus] = rng.integers(0, 256, size=(side, side), dtype=np.uint8)
    table = pd.DataFrame(rows, columns=HVM_COLUMNS)
    if id_column != "image_id":
        table = table.rename(columns={"image_id": id_column})
    csv_path = directory / f"{stem}.csv"
    zip_path = directory / f"{stem}.zip"
    table.to_csv(csv_path, index=False)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for stimulus, row in zip(ids, rows, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(images[stimulus]).save(buffer, format="PNG")
            archive.writestr(row["filename"], buffer.getvalue())
    return StimulusSetTruth(csv_path, zip_path, table, images)


ROBUST_MEAN = (0.485, 0.456, 0.406)
ROBUST_STD = (0.229, 0.224, 0.225)
TORCHVISION = {"resnet18": resnet18, "resnet50": resnet50, "wide_resnet50_2": wide_resnet50_2}


def robustness_state_dict(classifier: torch.nn.Module, dataparallel: bool = True) -> dict[str, torch.Tensor]:
    """The state dict the robustness library saves for AttackerModel(classifier)."""
    mean = torch.tensor(ROBUST_MEAN)[..., None, None]
    std = torch.tensor(ROBUST_STD)[..., None, None]
    inner = classifier.state_dict()
    state: dict[str, torch.Tensor] = {"normalizer.new_mean": mean, "normalizer.new_std": std}
    state.update({f"model.{k}": v for k, v in inner.items()})
    state.update({"attacker.normalize.new_mean": mean, "attacker.normalize.new_std": std})
    state.update({f"attacker.model.{k}": v for k, v in inner.items()})  # the same tensors, shared
    prefix = "module." if dataparallel else ""
    return {f"{prefix}{k}": v for k, v in state.items()}


def write_robustness_checkpoint(
    path: Path, seed: int = 0, dataparallel: bool = True, architecture: str = "resnet50"
) -> torch.nn.Module:
    """A robustness-library-style checkpoint of torchvision's `architecture` (the real one, at
    full size: resnet18 is 45 MB, resnet50 98 MB); returns the torchvision model it holds."""
    torch.manual_seed(seed)
    classifier = TORCHVISION[architecture](weights=None).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a lost buffer would show
        for module in classifier.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(1234)
    tiny = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(tiny.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    tiny(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
    checkpoint = {
        "model": robustness_state_dict(classifier, dataparallel),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "epoch": 90,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return classifier
