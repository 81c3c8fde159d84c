"""A brain of another family for the like-for-like validation: a small timm Vision Transformer
trained here, adversarially, on the default config's embedded training crops (the crops the
workflow's own networks learn from; never the stimuli), with the workflow's own training loop
and settings. No pretrained ViT can be downloaded offline, and the workflow trains only its
small ResNets, so this script makes the weights and prints the `brain.network` entry that
imports them as a user's timm model.

    .venv/bin/python benchmarks/train_vit_brain.py --out /tmp/vit_brain [--eps 0.5 --seed 205]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.models import Architecture
from neuroattack.networks.training import TrainingSettings, train_classifier, training_set
from neuroattack.seeds import config_seed

REPO = Path(__file__).resolve().parents[1]


def vit_architecture(args: argparse.Namespace, classes: int, resolution: int) -> Architecture:
    """A ViT on the stimuli's own resolution: patches of `patch` pixels, `depth` blocks."""
    kwargs = {
        "img_size": resolution,
        "patch_size": args.patch,
        "embed_dim": args.dim,
        "depth": args.depth,
        "num_heads": args.heads,
        "num_classes": classes,
    }
    # the workflow's own networks' normalisation, so that eps means the same in pixels
    extra = {"model": "vit_tiny_patch16_224", "kwargs": kwargs, "resolution": resolution}
    return Architecture(name="timm", num_classes=classes, extra=extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--eps", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=205)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=0.02)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    resolution = config["stimuli"]["resolution"]
    data = {**config["training_data"], "resolution": resolution, "seed": config_seed(config, "crops")}
    labelled = training_set(data)
    arch = vit_architecture(args, len(labelled[2]), resolution)
    training = {key: value for key, value in config["training"].items() if key != "robust_eval_eps"}
    # the ResNets' SGD and one-cycle schedule; a transformer needs more epochs and a lower peak rate
    settings = TrainingSettings(**{**training, "epochs": args.epochs, "learning_rate": args.learning_rate})
    torch.set_num_threads(2)
    weights = train_classifier(arch, args.eps, args.seed, labelled, settings, config["training"]["robust_eval_eps"])
    network = network_from_dataset(weights, "vit brain")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "vit_brain.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in network.model.state_dict().items()}, path)
    entry = {
        "eps": args.eps,
        "timm": arch.extra["model"],
        "kwargs": arch.extra["kwargs"],
        "weights": {"url": path.resolve().as_uri(), "sha256": None},
        "input": {"resolution": resolution, "mean": list(arch.mean), "std": list(arch.std)},
    }
    print(
        f"clean accuracy {weights.attrs['clean_accuracy']:.3f}, robust accuracy {weights.attrs['robust_accuracy']:.3f}"
    )
    print(f"at eps {weights.attrs['robust_accuracy_eps']}; brain.network entry:")
    print(json.dumps(entry))


if __name__ == "__main__":
    main()
