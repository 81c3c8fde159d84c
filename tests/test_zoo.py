"""Users' own networks (torchvision, timm, a factory function) at any layer, with their weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional

from neuroattack.networks.frozen import frozen_for_attack
from neuroattack.networks.models import Architecture, build_network, network_from_dataset, weights_to_dataset
from neuroattack.networks.readouts import UnitResponse
from neuroattack.networks.zoo import WeightsMismatchError, ZooNetwork, load_weights

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def zoo(kind: str, model: str, resolution: int = 32, layer: str | None = None, **extra: object) -> Architecture:
    return Architecture(
        name=kind, mean=MEAN, std=STD, extra={"model": model, "resolution": resolution, "layer": layer, **extra}
    )


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
    layer3 = build_network(zoo("torchvision", "resnet18", layer="layer3", kwargs={"num_classes": 7}))
    layer3.load_state_dict(network.state_dict())
    assert layer3.feature_dim == 256 * 2 * 2  # channel x position of a 2 x 2 map at 32 px
    with torch.no_grad():
        expected = model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))))
        torch.testing.assert_close(layer3.features(images), torch.flatten(expected, 1))


def test_a_timm_vision_transformer_block_gives_tokens_by_channels() -> None:
    torch.manual_seed(0)
    kwargs = {"img_size": 32, "num_classes": 5}
    block = build_network(zoo("timm", "vit_tiny_patch16_224", layer="blocks.1", kwargs=kwargs))
    assert block.feature_dim == (4 + 1) * 192  # 2 x 2 patches and the class token, 192 channels each
    head = build_network(zoo("timm", "vit_tiny_patch16_224", kwargs=kwargs))
    head.load_state_dict(block.state_dict())
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
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
    with pytest.raises(ValueError, match=r"no layer 'fc'; its layers include \['0', '1', '2', '3', '4'\]"):
        build_network(zoo("factory", "my_lab_nets:tiny", layer="fc", path=str(tmp_path)))


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
    network = build_network(zoo("torchvision", "resnet18", layer="layer2.1", kwargs={"num_classes": 3})).eval()
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    target = torch.tensor([5, 300])
    (gradient,) = torch.autograd.grad(network.features(images).gather(1, target.view(-1, 1)).sum(), images)
    frozen_images = images.detach().clone().requires_grad_(True)
    response = UnitResponse(network)
    (frozen_gradient,) = torch.autograd.grad(response(frozen_images, target).sum(), frozen_images)
    # BatchNorm folded into the convolutions: the same gradient up to float round-off
    assert (frozen_gradient - gradient).abs().max() <= 1e-4 * gradient.abs().max()
    assert frozen_for_attack(network).target_module == "layer2.1"
