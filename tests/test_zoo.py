"""Users' own networks (torchvision, timm, a factory function) at any layer, with their weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from loopback_server import LoopbackServer, loopback_server  # noqa: F401  (pytest fixture)
from safetensors.torch import save_file
from torch.nn import functional
from workflow_helpers import REPO, job_counts, snakemake

from neuroattack import io
from neuroattack.config import MODEL_KINDS, model_kind
from neuroattack.networks.build import build_network, network_from_dataset, weights_to_dataset
from neuroattack.networks.frozen import frozen_for_attack
from neuroattack.networks.layers import at_layer
from neuroattack.networks.models import Architecture
from neuroattack.networks.readouts import UnitResponse
from neuroattack.networks.zoo import WeightsMismatchError, ZooNetwork, load_weights

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def zoo(kind: str, model: str, resolution: int = 32, **extra: object) -> Architecture:
    return Architecture(name=kind, mean=MEAN, std=STD, extra={"model": model, "resolution": resolution, **extra})


def prepared(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """What the network should see: resized to its resolution, normalised."""
    resized = functional.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True)
    return (resized - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_a_torchvision_model_at_its_penultimate_layer_and_at_a_named_one() -> None:
    torch.manual_seed(0)
    network = build_network(zoo("torchvision", "resnet18", kwargs={"num_classes": 7}))
    assert isinstance(network, ZooNetwork) and network.feature_dim == 512
    images = torch.rand(3, 3, 16, 16)  # the stimulus set's resolution; the model's is 32
    model = network.model
    x = prepared(images, 32)
    with torch.no_grad():
        pooled = torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.relu(model.bn1(model.conv1(x))))))))), 1)  # fmt: skip
        torch.testing.assert_close(network.features(images), pooled)
        torch.testing.assert_close(network(images), model.fc(pooled))
    layer3 = at_layer(network, "layer3")
    with torch.no_grad():
        expected = model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))))
        assert layer3.features(images).shape == (3, 256 * 2 * 2)  # channel x position of a 2 x 2 map at 32 px
        torch.testing.assert_close(layer3.features(images), torch.flatten(expected, 1))


def test_a_timm_vision_transformer_block_gives_tokens_by_channels() -> None:
    torch.manual_seed(0)
    kwargs = {"img_size": 32, "num_classes": 5}
    head = build_network(zoo("timm", "vit_tiny_patch16_224", kwargs=kwargs))
    block = at_layer(head, "blocks.1")
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        tokens = head.model.blocks[1](head.model.blocks[0](head.model.norm_pre(head.model._pos_embed(
            head.model.patch_embed(prepared(images, 32))))))  # fmt: skip
        assert block.features(images).shape == (2, (4 + 1) * 192)  # 2 x 2 patches and the class token
        torch.testing.assert_close(block.features(images), tokens.flatten(1))
        pre_logits = head.model.forward_head(head.model.forward_features(prepared(images, 32)), pre_logits=True)
        torch.testing.assert_close(head.features(images), pre_logits)


def test_a_factory_function_from_the_users_folder(tmp_path: Path) -> None:
    (tmp_path / "my_lab_nets.py").write_text(
        "import torch\n"
        "def tiny(width=4):\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.ReLU(),\n"
        "                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, 2))\n"
    )
    network = build_network(zoo("factory", "my_lab_nets:tiny", resolution=8, kwargs={"width": 6}, path=str(tmp_path)))
    assert network.feature_dim == 6
    with pytest.raises(ImportError, match=r"factory 'no_such_module:tiny': cannot import it .*give its folder"):
        build_network(zoo("factory", "no_such_module:tiny", path=str(tmp_path)))
    with pytest.raises(ValueError, match=r"write it as 'package.module:function'"):
        build_network(zoo("factory", "my_lab_nets.tiny", path=str(tmp_path)))
    with pytest.raises(ValueError, match=r"no layer 'fc'; its layers are \['penultimate', '0', '1', '2', '3', '4'\]"):
        at_layer(network, "fc")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_files_load_exactly_and_a_mismatch_names_file_and_tensor(tmp_path: Path, suffix: str) -> None:
    arch = zoo("torchvision", "resnet18", kwargs={"num_classes": 3})
    torch.manual_seed(1)
    trained = build_network(arch).model
    path = tmp_path / f"weights{suffix}"
    state = {name: tensor.contiguous() for name, tensor in trained.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    torch.manual_seed(2)
    network = build_network(arch)
    load_weights(network.model, path)
    for name, tensor in trained.state_dict().items():
        assert torch.equal(network.model.state_dict()[name], tensor), name
    # kept through the weights file of the workflow (netCDF), and rebuilt from it
    rebuilt = network_from_dataset(weights_to_dataset(network, arch, {}))
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        network.eval()
        assert torch.equal(rebuilt.features(images), network.features(images))
    reshaped = {**state, "fc.weight": torch.zeros(4, 512)}
    other = tmp_path / f"other{suffix}"
    save_file(reshaped, other) if suffix == ".safetensors" else torch.save(reshaped, other)
    with pytest.raises(WeightsMismatchError, match=rf"{other}: tensor 'fc.weight' has shape \(4, 512\), the model's"):
        load_weights(network.model, other)
    del reshaped["fc.weight"]
    save_file(reshaped, other) if suffix == ".safetensors" else torch.save(reshaped, other)
    with pytest.raises(WeightsMismatchError, match=rf"{other}: no tensor 'fc.weight', which the model has"):
        load_weights(network.model, other)
    other.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{other}: not a readable weights file"):
        load_weights(network.model, other)


def test_a_units_input_gradient_flows_through_the_layer_of_a_frozen_copy() -> None:
    torch.manual_seed(0)
    network = at_layer(build_network(zoo("torchvision", "resnet18", kwargs={"num_classes": 3})), "layer2.1").eval()
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    target = torch.tensor([5, 300])
    (gradient,) = torch.autograd.grad(network.features(images).gather(1, target.view(-1, 1)).sum(), images)
    frozen_images = images.detach().clone().requires_grad_(True)
    response = UnitResponse(network)
    (frozen_gradient,) = torch.autograd.grad(response(frozen_images, target).sum(), frozen_images)
    # BatchNorm folded into the convolutions: the same gradient up to float round-off
    assert (frozen_gradient - gradient).abs().max() <= 1e-4 * gradient.abs().max()
    assert frozen_for_attack(network).layer == "layer2.1"


# --- in the workflow ------------------------------------------------------------------------

FACTORY = (
    "import torch\n"
    "def tiny(width=4):\n"
    "    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.ReLU(),\n"
    "                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, 2))\n"
)


VIT = {"img_size": 16, "patch_size": 4, "depth": 2, "num_classes": 10}  # 16 patches + the class token


def resnet18_entry(folder: Path, **extra: object) -> dict[str, object]:
    """A `networks` entry of a torchvision ResNet-18 (10 classes, input 32 px) with its weights
    (seeded) as a safetensors file in `folder`, over file://; `extra` adds keys (a `layer`)."""
    torch.manual_seed(5)
    weights = folder / "resnet18_mine.safetensors"
    state = build_network(zoo("torchvision", "resnet18", kwargs={"num_classes": 10})).model.state_dict()
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, weights)
    return {
        "eps": 0.0,
        "torchvision": "resnet18",
        "kwargs": {"num_classes": 10},
        "weights": {"url": weights.as_uri(), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
        "input": {"resolution": 32},
        **extra,
    }


def factory_entry(folder: Path, **extra: object) -> dict[str, object]:
    """A `networks` entry of a factory of the user's own (FACTORY, width 6) without weights, its
    module written to `folder`/code; `extra` adds keys."""
    (folder / "code").mkdir(exist_ok=True)
    (folder / "code" / "my_lab_nets.py").write_text(FACTORY)
    return {"eps": 0.0, "factory": "my_lab_nets:tiny", "kwargs": {"width": 6}, "path": str(folder / "code"), **extra}


def users_networks_config(tmp_path: Path, server: LoopbackServer) -> str:
    """The tiny config with three networks of a user's: a torchvision ResNet-18 at layer3 with
    its weights as safetensors over file://, a timm ViT at its last block with a torch
    state_dict over HTTP (the loopback `server`), and a factory of the user's own without
    weights; attack.layers adds a shallower layer of three networks (sensitivity by depth)."""
    resnet18 = resnet18_entry(tmp_path, layer="layer3")  # seeds torch first: the ViT's weights follow
    vit_weights = server.root / "vit_mine.pt"
    torch.save(build_network(zoo("timm", "vit_tiny_patch16_224", kwargs=VIT)).model.state_dict(), vit_weights)
    networks = {
        "resnet18_mine": resnet18,
        "vit_mine": {
            "eps": 0.0,
            "timm": "vit_tiny_patch16_224",
            "kwargs": VIT,
            "weights": {
                "url": server.url("vit_mine.pt"),
                "sha256": hashlib.sha256(vit_weights.read_bytes()).hexdigest(),
            },
            "input": {"resolution": 16, "mean": [0.5] * 3, "std": [0.5] * 3},
            "layer": "blocks.1",
        },
        "labnet": factory_entry(tmp_path),
    }
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["networks"].update(networks)
    config["attack"]["layers"] = {"standard": ["stages.0"], "resnet18_mine": ["layer2"], "vit_mine": ["blocks.0"]}
    config["surrogate"].update({"layer": "auto", "layers": ["stem", "stages.0"]})  # the surrogate's best layer
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_users_networks_are_downloaded_and_imported_once_each(
    tmp_path: Path,
    loopback_server: LoopbackServer,  # noqa: F811
) -> None:
    configfile = users_networks_config(tmp_path, loopback_server)
    run = snakemake(tmp_path / "run", "--dry-run", "--cores", "1", configfile=configfile)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    assert counts["import_network"] == 3 and counts["download"] == 2  # labnet has no weights file
    assert counts["train_network"] == 3  # the tiny config's two networks and the brain's
    # every network at its layer, three at one more (attack.layers), the surrogate (robust_eps1)
    # at two more (surrogate.layers)
    assert counts["features"] == 5 + 3 + 2 and counts["best_layer_features"] == 1
    assert counts["figure7"] == 1


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"eps": 0.0, "seed": 1, "kwargs": {}}, "kwargs, weights, input and path belong to a user's model"),
        ({"eps": 0.0, "timm": "resnet10t", "path": "code"}, "path (the folder to import from) belongs to a factory"),
        ({"eps": 0.0, "factory": "my_lab_nets.tiny"}, 'networks.labnet.factory = "my_lab_nets.tiny"'),
        ({"eps": 0.0, "torchvision": "resnet18", "timm": "resnet10t"}, "networks.labnet"),
    ],
)
def test_a_bad_users_network_entry_is_refused_at_start_naming_the_key(
    tmp_path: Path, entry: dict[str, object], named: str
) -> None:
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["networks"]["labnet"] = entry
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path / "run", "--dry-run", "--cores", "1", configfile=str(path))
    assert run.returncode != 0
    assert named in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]


@pytest.mark.slow
def test_users_networks_run_end_to_end_at_their_layers_and_by_depth(
    tmp_path: Path,
    loopback_server: LoopbackServer,  # noqa: F811
) -> None:
    configfile = users_networks_config(tmp_path, loopback_server)
    workdir = tmp_path / "run"
    targets = ["results/tiny/figures/figure1.nc", "results/tiny/figures/figure7.nc"]
    run = snakemake(workdir, "--cores", "2", *targets, configfile=configfile)
    assert run.returncode == 0, run.stderr[-5000:]
    assert any(request.path == "/vit_mine.pt" for request in loopback_server.requests)
    results = workdir / "results/tiny"
    imported = io.read_dataset(results / "networks/resnet18_mine.nc", "network")
    assert imported.attrs["source_weights"] == "resnet18_mine.safetensors"
    features = io.read_dataset(results / "features/resnet18_mine.nc")
    assert features.attrs["layer"] == "layer3" and features.sizes["unit"] == 256 * 2 * 2
    assert io.read_dataset(results / "features/labnet.nc").sizes["unit"] == 6
    assert io.read_dataset(results / "features/standard@stages.0.nc").attrs["layer"] == "stages.0"
    # the ViT's features are its own block's output, as a forward hook on the model sees it
    vit = network_from_dataset(io.read_dataset(results / "networks/vit_mine.nc", "network"))
    stimuli = io.read_dataset(results / "stimuli/stimuli.nc", "stimuli")
    hooked: list[torch.Tensor] = []
    vit.model.blocks[1].register_forward_hook(lambda _m, _i, output: hooked.append(output))
    with torch.no_grad():
        vit(torch.from_numpy(stimuli["pixels"].values).permute(0, 3, 1, 2).float() / 255)
    vit_features = io.read_dataset(results / "features/vit_mine.nc")
    assert vit_features.attrs["layer"] == "blocks.1" and vit_features.sizes["unit"] == 17 * 192
    np.testing.assert_allclose(vit_features["activation"].values, hooked[0].flatten(1).numpy(), rtol=1e-4, atol=1e-4)
    # an attacked ViT unit's change grows with eps, and every perturbation stays in its ball
    attacks = [io.read_dataset(path, "unit_attack") for path in sorted((results / "attacks").glob("image*.nc"))]
    for attack in attacks:
        units = attack.isel(unit=np.flatnonzero(attack["network"].values == "vit_mine"))
        assert units.sizes["unit"] > 0
        achieved = (units["unit_change"] * xr.DataArray([1.0, -1.0], dims="direction")).max("direction")
        assert (achieved.diff("eps") >= -1e-6).all() and (achieved.isel(eps=-1) > 0).all()
        assert (units["unit_delta_norm"] <= units["eps"] + 1e-5).all()
        assert {"standard@stages.0", "resnet18_mine@layer2", "vit_mine@blocks.0"} <= set(attack["network"].values)
    # the surrogate's site models were fitted on its best layer by the screening's predictivity
    scores = io.read_dataset(results / "screening/screening.nc", "screening")
    best = str(scores["best_layer"].sel(candidate="robust_eps1").values)
    assert scores["layer_predictivity"].sel(candidate="robust_eps1").notnull().sum() == 3
    predictivity = scores["layer_predictivity"].sel(candidate="robust_eps1")
    assert float(predictivity.sel(layer=best)) == float(predictivity.max())
    assert io.read_dataset(results / "rounds/round1/site_models.nc").attrs["surrogate_layer"] == best
    figure1 = io.read_dataset(results / "figures/figure1.nc")
    populations = figure1["population"].values.tolist()
    assert {"resnet18_mine", "labnet", "vit_mine"} <= set(populations)
    assert not any("@" in population for population in populations)  # depth views are figure 7's
    assert np.isfinite(figure1["s_tilde"].sel(population="resnet18_mine").values).all()
    figure7 = io.read_dataset(results / "figures/figure7.nc")
    assert sorted(figure7["network"].values.tolist()) == ["resnet18_mine", "standard", "vit_mine"]
    assert figure7["layer"].sel(network="vit_mine").values.tolist() == ["blocks.0", "blocks.1"]
    assert np.isfinite(figure7["s_tilde"].sel(depth=[0, 1])).all()


def test_the_example_of_own_networks_adds_two_imported_networks_to_the_tiny_config(tmp_path: Path) -> None:
    configs = [str(REPO / "config/tiny.yaml"), str(REPO / "config/examples/own_networks.yaml")]
    run = snakemake(tmp_path, "--dry-run", "--cores", "1", "--configfile", *configs, configfile=None)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    counts = job_counts(run.stdout)
    assert counts["import_network"] == 2 and "download" not in counts  # seeded weights: runs offline
    assert counts["features"] == 4


def test_the_schema_takes_every_kind_of_model_the_library_builds() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    entry = schema["properties"]["networks"]["additionalProperties"]
    assert set(MODEL_KINDS) <= set(entry["properties"])
    assert [model_kind({kind: "model", "eps": 0.0}) for kind in MODEL_KINDS] == list(MODEL_KINDS)
    assert model_kind({"seed": 0, "eps": 0.0}) is None
