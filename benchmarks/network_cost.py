#!/usr/bin/env python
"""What one network costs per image: its features, and the attack of one of its units.

For each network (the default run's small ResNet at 32 px; torchvision's ResNet-50 and
timm's ViT-B/16 at 224 px, both behind neuroattack's `ZooNetwork`, as a `networks` entry
of yours would be) it measures, with seeded random weights (the cost does not depend on
the weights):

- features: seconds per image of the network's features on a batch of images;
- attack: seconds per (image, unit) of the untargeted attack of sampled units of one
  clean image at a config's attack settings (every eps, both directions, its restarts),
  the unit-attack of rule `attack_units`.

Times are medians over `--repeats`. A paper-scale attack (config/paper.yaml) runs the
same rows 100 restarts deep; `--config config/paper.yaml` measures it (GPU: seconds per
unit; CPU: minutes per unit).

    python benchmarks/network_cost.py                           # CPU, default config: ~5 minutes
    python benchmarks/network_cost.py --device cuda --config config/paper.yaml
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_targets
from neuroattack.networks.build import build_network
from neuroattack.networks.models import IMAGENET_MEAN, IMAGENET_STD, Architecture
from neuroattack.networks.readouts import UnitResponse
from neuroattack.networks.zoo import ZooNetwork

NETWORKS = {  # name: (kind, model, resolution)
    "small": ("trained", "small_resnet", 32),
    "resnet50": ("torchvision", "resnet50", 224),
    "vit_b_16": ("timm", "vit_base_patch16_224", 224),
}


def build(name: str, seed: int) -> tuple[nn.Module, int]:
    kind, model, resolution = NETWORKS[name]
    torch.manual_seed(seed)
    if kind == "trained":
        return build_network(Architecture()).eval(), resolution
    arch = Architecture(
        name=kind,
        num_classes=0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        extra={"model": model, "kwargs": {}, "resolution": resolution},
    )
    return ZooNetwork(arch).eval(), resolution


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(device: torch.device, job: Callable[[], object], repeats: int) -> float:
    job()  # warm-up: kernels, autotuning, allocator
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        job()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--networks", nargs="+", choices=tuple(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "config" / "config.yaml"))
    parser.add_argument("--units", type=int, default=1, help="units attacked per measurement")
    parser.add_argument("--batch", type=int, default=None, help="images per features batch (default 8 CPU, 64 CUDA)")
    parser.add_argument("--chunk-rows", type=int, default=None, help="attack rows per batch (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    attack = yaml.safe_load(Path(args.config).read_text())["attack"]
    settings = AttackSettings.from_config(attack, chunk_rows=args.chunk_rows or attack["chunk_rows"])
    batch = args.batch or (64 if device.type == "cuda" else 8)
    rows = len(attack["eps"]) * 2 * settings.restarts
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"device {device} ({where}); "
        f"attack settings of {Path(args.config).name}: {len(attack['eps'])} eps x 2 directions x "
        f"{settings.restarts} restarts = {rows} rows per unit, {settings.gradient_steps_per_restart()} gradient "
        f"steps per restart, chunk_rows {settings.chunk_rows}, precision {settings.precision}; "
        f"median of {args.repeats}"
    )
    print(f"{'network':<10} {'px':>4} {'features':>9} {'ms/image':>9} {'attack s/(image, unit)':>24}")
    generator = np.random.default_rng(args.seed)
    for name in args.networks:
        width, resolution, features, per_unit = measure(name, args, settings, attack["eps"], batch, generator)
        print(f"{name:<10} {resolution:>4} {width:>9} {features * 1e3:>9.2f} {per_unit:>24.2f}")
        if device.type == "cuda":
            torch.cuda.empty_cache()


def measure(
    name: str,
    args: argparse.Namespace,
    settings: AttackSettings,
    eps_grid: list[float],
    batch: int,
    generator: np.random.Generator,
) -> tuple[int, int, float, float]:
    """(feature width, resolution, seconds per image of features, seconds per (image, unit) of attack)."""
    device = torch.device(args.device)
    network, resolution = build(name, args.seed)
    network.to(device)
    images = torch.as_tensor(generator.random((batch, 3, resolution, resolution), dtype=np.float32), device=device)
    with torch.no_grad():
        width = int(network.features(images[:1]).shape[1])
        features = median_seconds(device, lambda: network.features(images), args.repeats) / batch
    response = UnitResponse(network)  # the attack's frozen copy, as rule attack_units builds it
    units = np.arange(args.units)
    image = images[:1]
    per_unit = median_seconds(
        device, lambda: attack_targets(response, image, units, eps_grid, settings, args.seed), args.repeats
    )
    return width, resolution, features, per_unit / args.units


if __name__ == "__main__":
    main()
