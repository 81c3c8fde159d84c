"""The Python API: the README's example as printed, the same numbers as the workflow's rules
for a user's network, Figure 1 beside a run's, and every refusal naming its argument."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from workflow_helpers import REPO

import neuroattack
from neuroattack import io
from neuroattack.analysis.sensitivity import estimate_populations
from neuroattack.attacks.untargeted import attack_units, attacked_stimuli
from neuroattack.data.stimuli import make_stimuli
from neuroattack.networks.build import network_from_dataset, user_model_weights
from neuroattack.networks.features import extract_features
from neuroattack.seeds import config_seed

TINY_NET = (
    "import torch\n"
    "def tiny():\n"
    "    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),\n"
    "                               torch.nn.Conv2d(6, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),\n"
    "                               torch.nn.Flatten(), torch.nn.Linear(8, 4))\n"
)
LAYER = "2"  # the ReLU after the BatchNorm: 6 channels x 12 x 12 positions


def readme_example() -> str:
    """The code block of README.md's "In Python" section, as printed."""
    section = (REPO / "README.md").read_text().split("\n## In Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the section shows one example"
    return str(blocks[0])


def test_the_readme_example_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "README.md (In Python)", "exec"), namespace)
    printed = capsys.readouterr().out
    print(printed)
    assert "random:ResNet" in printed and (tmp_path / "sensitivity.png").stat().st_size > 10_000
    result = namespace["result"]
    assert result["s_tilde"].sizes == {"population": 2, "eps": 2}
    assert (result["ci_low"] <= result["s_tilde"]).all() and (result["s_tilde"] <= result["ci_high"]).all()
    network, random = result["s_tilde"].sel(population="ResNet"), result["s_tilde"].sel(population="random:ResNet")
    assert (network > random).all() and (network.diff("eps") > 0).all()
    assert result["change"].sizes == {"unit": 3, "image": 2, "eps": 2, "direction": 2}
    assert (result["delta_norm"] <= result["eps"] + 1e-5).all()


def test_importing_the_package_loads_no_torch() -> None:
    code = "import sys, neuroattack; print(sorted({'torch', 'xarray', 'sklearn'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
    assert set(neuroattack.__all__) <= set(dir(neuroattack))
    assert (
        neuroattack.default_attack().steps
        == yaml.safe_load((REPO / "config/config.yaml").read_text())["attack"]["steps"]
    )


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_both_paths(tmp_path_factory.mktemp("api"), torch.device("cpu"))


def run_both_paths(folder: Path, device: torch.device) -> dict[str, Any]:
    """A user's factory network through the workflow's rules' library calls (import_network,
    features, attack_units per image, sensitivity) on `device`, and the same model object
    through the API there."""
    (folder / "tiny_lab_net.py").write_text(TINY_NET)
    tiny = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    shipped = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config = {**tiny, "seed": 5, "sensitivity": shipped["sensitivity"]}  # the API's estimator defaults
    attack = config["attack"]
    entry = {"eps": 0.0, "factory": "tiny_lab_net:tiny", "path": str(folder), "input": {"resolution": 12}}
    rng = np.random.default_rng(0)
    stimuli = make_stimuli(rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8), [f"s{i}" for i in range(9)], "a" * 9)

    weights = user_model_weights("mine", entry, None, config_seed(config, "network_init"))
    features = extract_features(weights, stimuli, "mine", device, layer=LAYER)
    settings = neuroattack.AttackSettings.from_config(attack)
    attacked = attacked_stimuli(stimuli, attack["images"], config_seed(config, "attacked_images"))
    unit_attacks = [
        attack_units(
            stimulus_id,
            stimuli,
            networks={"mine": weights},
            features={"mine": features},
            settings=settings,
            eps_grid=attack["eps"],
            units_per_network=attack["units_per_network"],
            seed=config_seed(config, "attack_starts", 1, index),
            unit_seed=config_seed(config, "units"),
            baseline_seed=config_seed(config, "model_baseline", 1, index),
            device=device,
        )
        for index, stimulus_id in enumerate(attacked)
    ]
    site_attacks, recordings = site_inputs(attacked, attack["eps"], rng)
    run = estimate_populations(
        site_attacks,
        unit_attacks,
        responses=None,
        recordings=recordings,
        features={"mine": features},
        white_box_changes=None,
        bootstrap=config["sensitivity"]["bootstrap"],
        random_pairs=config["sensitivity"]["random_pairs"],
        seed=config_seed(config, "bootstrap"),
    )
    model = network_from_dataset(weights).model  # the user's module, with the run's weights
    result = neuroattack.sensitivity(
        model,
        stimuli["pixels"].values,
        attack["eps"],
        layer=LAYER,
        units=attack["units_per_network"],
        attacked_images=attack["images"],
        attack=settings,
        seed=config["seed"],
        name="mine",
        resolution=12,
        device=device,
        progress=False,
    )
    return {"run": run, "unit_attacks": unit_attacks, "result": result, "folder": folder}


def site_inputs(attacked: list[str], eps: list[float], rng: np.random.Generator) -> tuple[list[xr.Dataset], xr.Dataset]:
    """A brain's round attacks and recordings of 3 sites: rule sensitivity's other inputs
    (the networks' rows do not depend on them)."""
    sites = {"neuroid_id": ("site", ["n0", "n1", "n2"])}
    cube = ("site", "eps", "direction")
    attacks = [
        xr.Dataset(
            {
                "site_change": (cube, rng.normal(size=(3, len(eps), 2))),
                "site_random_change": (cube, rng.normal(size=(3, len(eps), 2))),
            },
            coords={**sites, "eps": eps, "direction": ["increase", "decrease"]},
            attrs={"stimulus_id": stimulus_id},
        )
        for stimulus_id in attacked
    ]
    recordings = xr.Dataset(
        {"response": (("presentation", "site"), rng.poisson(3.0, size=(18, 3)).astype(float))},
        coords={**sites, "stimulus_id": ("presentation", [f"s{i % 9}" for i in range(18)])},
    )
    return attacks, recordings


def test_the_api_gives_the_workflows_numbers(both_paths: dict[str, Any]) -> None:
    assert_same_numbers(both_paths)


def test_the_api_gives_the_workflows_numbers_on_cuda(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        print("SKIP the comparison on CUDA: no CUDA device here (the CPU comparison ran)")
        pytest.skip("no CUDA device")
    assert_same_numbers(run_both_paths(tmp_path, torch.device("cuda")))


def assert_same_numbers(both_paths: dict[str, Any]) -> None:
    run, result, unit_attacks = both_paths["run"], both_paths["result"], both_paths["unit_attacks"]
    populations = ["mine", "random:mine"]
    fields = ["s_tilde", "ci_low", "ci_high", "random_pair_level", "n_units", "n_images"]
    expected, got = run[fields].sel(population=populations), result[fields].sel(population=populations)
    assert np.array_equal(expected["eps"].values, got["eps"].values)
    differences = {name: float(np.nanmax(np.abs(expected[name].values - got[name].values))) for name in fields}
    changes = xr.concat([a["unit_change"] for a in unit_attacks], dim="image").transpose(
        "unit", "image", "eps", "direction"
    )
    differences["change"] = float(np.abs(changes.values - result["change"].values).max())
    print(f"largest difference between the workflow's path and the API: {differences}")
    assert np.array_equal(unit_attacks[0]["unit_index"].values, result["unit_index"].values)
    assert max(differences.values()) == 0.0, differences
    assert np.isfinite(got["s_tilde"]).all() and (got["s_tilde"].sel(population="mine") > 0).all()


def test_figure1_draws_the_api_beside_a_run(both_paths: dict[str, Any]) -> None:
    results = both_paths["folder"] / "results"
    io.write_dataset(both_paths["run"], results / "sensitivity/sensitivity.nc", "run", "test")
    loaded = neuroattack.load_run(results)
    assert "surrogate" in loaded["population"].values
    renamed = both_paths["result"].assign_coords(population=["api", "random:api"])
    figure = neuroattack.plot_sensitivity(renamed, results)
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert {"api", "mine"} <= set(labels) and any("surrogate" in label for label in labels)
    alone = neuroattack.plot_sensitivity(renamed)
    assert "api" in alone.axes[0].get_legend_handles_labels()[1]
    with pytest.raises(ValueError, match=r"sources: populations \['mine', 'random:mine'\] appear in more than one"):
        neuroattack.plot_sensitivity(both_paths["result"], loaded)
    with pytest.raises(FileNotFoundError, match=r"results: .* does not exist"):
        neuroattack.load_run(both_paths["folder"] / "no_run")


@pytest.fixture(scope="module")
def tiny_model(both_paths: dict[str, Any]) -> torch.nn.Module:
    sys.path.insert(0, str(both_paths["folder"]))
    from tiny_lab_net import tiny  # type: ignore[import-not-found]

    module: torch.nn.Module = tiny()
    return module


GOOD_IMAGES = np.random.default_rng(1).random((4, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layer": "fc"}, r"layer: the network has no layer 'fc'; its layers are \['penultimate', '0', '1'"),
        ({"images": GOOD_IMAGES * 2}, r"images: values from .* floats must lie in \[0, 1\]"),
        ({"images": GOOD_IMAGES[0]}, r"images: shape \(3, 16, 16\)"),
        ({"images": GOOD_IMAGES[:1]}, "images: 1 image"),
        ({"images": GOOD_IMAGES.transpose(0, 2, 3, 1)}, "images: 16 channels"),
        ({"images": GOOD_IMAGES.astype(np.int64)}, "images: dtype int64"),
        ({"eps": 0.0}, r"eps: \[0.0\]; give one or more positive budgets"),
        ({"eps": [0.5, -1.0]}, "eps: "),
        ({"units": 500}, "units: 500 requested, but 8 units of the layer vary"),
        ({"units": [0, 9]}, r"units: \[0, 9\]; .*\(\[9\] are outside\)"),
        ({"attacked_images": 5}, "attacked_images: 5; give a number from 1 to the 4 images"),
        ({"resolution": 0}, "resolution 0"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(
    tiny_model: torch.nn.Module, change: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"images": GOOD_IMAGES, "eps": [0.5], "units": 2, "device": "cpu", "progress": False}
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        neuroattack.sensitivity(tiny_model, resolution=arguments.pop("resolution", 12), **arguments)
