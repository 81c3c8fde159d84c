"""Tiny stand-ins for the public paper-scale inputs, built at test time.

Each mirrors the structure of the real file (names, dims, dtypes, layout),
not its size:

- `write_assembly`: like `assy_dicarlo_MajajHong2015_public.nc` as brainio wrote
  it: a DataArray named 'dicarlo.MajajHong2015.public' with dims
  (neuroid, presentation, time_bin), float32 values, its presentation /
  neuroid / time_bin MultiIndexes reset to plain coordinates before
  `to_netcdf` (brainio's write_netcdf), legacy `image_id` on presentations,
  neuroid coords neuroid_id ('Chabo_L_M_5_9'-style), arr, col, row, hemisphere,
  subregion, animal, x, y, region; time_bin_start/time_bin_end int64.
- `write_stimulus_set`: like `image_dicarlo_hvm-public.csv` + `.zip`: the 18
  HvM columns (id, background_id, s, rxy, tz, category_name, rxz_semantic, ty,
  ryz, object_name, variation, size, image_file_name, rxy_semantic,
  ryz_semantic, rxz, image_id, filename), 40-hex image ids, 'L'-mode PNG files
  named '<object>_rx..._<id>_256x256.png' at the top level of the ZIP.
- `write_robustness_checkpoint`: like a robustness-library / Salman et al. 2020
  `.ckpt`: {'model', 'optimizer', 'schedule', 'epoch'} where 'model' is the
  state dict of DataParallel(AttackerModel(resnet50)): module.normalizer.new_mean,
  module.normalizer.new_std (shape (3, 1, 1)), module.model.<torchvision keys>,
  module.attacker.normalize.*, module.attacker.model.<same tensors again>.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
from PIL import Image
from torchvision.models import resnet50

ASSEMBLY_NAME = "dicarlo.MajajHong2015.public"
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
    path: Path, n_images: int = 4, n_reps: int = 3, id_coord: str = "image_id", seed: int = 0
) -> AssemblyTruth:
    """A MajajHong2015.public-like assembly with 2 regions and 2 time bins."""
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
    # ... and write_netcdf resets them before writing (netCDF cannot hold a MultiIndex)
    array = array.reset_index(list(array.indexes))
    array.attrs = {"stimulus_set_identifier": "dicarlo.hvm-public"}
    path.parent.mkdir(parents=True, exist_ok=True)
    array.to_netcdf(path)
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
    directory: Path, n_images: int = 4, side: int = 32, id_column: str = "image_id", seed: int = 0
) -> StimulusSetTruth:
    """An HvM-like stimulus set: CSV with the real columns, flat ZIP of grey PNGs."""
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
    csv_path = directory / "image_dicarlo_hvm-public.csv"
    zip_path = directory / "image_dicarlo_hvm-public.zip"
    table.to_csv(csv_path, index=False)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for stimulus, row in zip(ids, rows, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(images[stimulus]).save(buffer, format="PNG")
            archive.writestr(row["filename"], buffer.getvalue())
    return StimulusSetTruth(csv_path, zip_path, table, images)


ROBUST_MEAN = (0.485, 0.456, 0.406)
ROBUST_STD = (0.229, 0.224, 0.225)


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


def write_robustness_checkpoint(path: Path, seed: int = 0, dataparallel: bool = True) -> torch.nn.Module:
    """A robustness-library-style ResNet-50 checkpoint; returns the torchvision model it holds."""
    torch.manual_seed(seed)
    classifier = resnet50(weights=None).eval()
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
