"""Write the reference files in this folder with Brain-Score's own writer.

brainscore-core pins numpy<2 and xarray<2022.6, which the project's pinned set
(envs/constraints.txt) cannot hold, so this runs in a separate environment:

    python3.11 -m venv .venv-brainscore && .venv-brainscore/bin/pip install "numpy==1.26.4" "pandas==1.5.3" \
        "xarray==2022.3.0" "netCDF4<1.7" pillow tqdm boto3 six
    .venv-brainscore/bin/pip install --no-deps brainscore-core==2.5.0
    .venv-brainscore/bin/python tests/brainscore_reference/make_reference.py tests/brainscore_reference

It packages a tiny NeuroidAssembly (`package_data_assembly_locally`, which validates
it and calls `write_netcdf`) and a tiny stimulus set (`package_stimulus_set_locally`:
CSV + ZIP) exactly as a lab packaging data for Brain-Score would, without uploading.
The values are arithmetic (no random numbers), so `reference_truth` in
tests/fixtures_brainscore.py recomputes them under any numpy.
"""

from __future__ import annotations

import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import xarray as xr
from brainscore_core.supported_data_standards.brainio.packaging import (
    package_data_assembly_locally,
    package_stimulus_set_locally,
)
from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet
from PIL import Image

N_IMAGES, N_REPS, SIDE = 4, 3, 8
NEUROIDS = [  # neuroid_id, region, animal
    ("Chabo_L_M_5_9", "IT", "Chabo"),
    ("Chabo_L_A_8_8", "IT", "Chabo"),
    ("Tito_L_P_0_3", "IT", "Tito"),
    ("Tito_L_P_2_1", "V4", "Tito"),
    ("Chabo_L_P_7_7", "V4", "Chabo"),
]
TIME_BINS = [(70, 170), (170, 270)]
CATEGORIES = ["Animals", "Cars"]


def stimulus_ids() -> list[str]:
    return [f"image{i + 1}" for i in range(N_IMAGES)]


def pixels(index: int) -> np.ndarray:
    """The RGB image of stimulus `index`: a ramp, different per image."""
    ramp = np.arange(SIDE * SIDE * 3, dtype=np.int64).reshape(SIDE, SIDE, 3)
    return ((ramp * (index + 1) * 7) % 256).astype(np.uint8)


def values() -> np.ndarray:
    """(presentation, neuroid, time_bin) responses; presentation p = repetition * N_IMAGES + image."""
    shape = (N_IMAGES * N_REPS, len(NEUROIDS), len(TIME_BINS))
    return (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) * 0.25 - 3.0).astype(np.float32)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ids = stimulus_ids()
    with tempfile.TemporaryDirectory() as scratch:
        paths = {}
        for index, stimulus in enumerate(ids):
            path = Path(scratch) / f"{stimulus}.png"
            Image.fromarray(pixels(index)).save(path)
            paths[stimulus] = str(path)
        stimuli = StimulusSet(
            {
                "stimulus_id": ids,
                "category_name": [CATEGORIES[i % 2] for i in range(N_IMAGES)],
                "object_name": [f"object{i % 2}" for i in range(N_IMAGES)],
            }
        )
        stimuli.stimulus_paths = paths
        stimuli.identifier = "neuroattack.reference"
        package_stimulus_set_locally(stimuli, "neuroattack.reference", downloads_path=out)

    presentation = [(ids[p % N_IMAGES], p // N_IMAGES) for p in range(N_IMAGES * N_REPS)]
    proto = xr.DataArray(
        values(),
        dims=("presentation", "neuroid", "time_bin"),
        coords={
            "stimulus_id": ("presentation", [s for s, _ in presentation]),
            "repetition": ("presentation", [r for _, r in presentation]),
            "neuroid_id": ("neuroid", [n for n, _, _ in NEUROIDS]),
            "region": ("neuroid", [r for _, r, _ in NEUROIDS]),
            "animal": ("neuroid", [a for _, _, a in NEUROIDS]),
            "time_bin_start": ("time_bin", [s for s, _ in TIME_BINS]),
            "time_bin_end": ("time_bin", [e for _, e in TIME_BINS]),
        },
    )
    package_data_assembly_locally(proto, "neuroattack.Reference2026", "neuroattack.reference", downloads_path=out)
    versions = {name: version(name) for name in ("brainscore-core", "xarray", "numpy", "pandas", "netCDF4")}
    (out / "VERSIONS.txt").write_text("".join(f"{name}=={v}\n" for name, v in versions.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
