#!/usr/bin/env python
"""Attack throughput: neuroattack's engine against torchattacks' PGDL2 on one job.

The job is one sensitivity curve: n images x k eps x 2 directions (raise and lower
the unit) x R restarts x T gradient steps, for `--units` penultimate units of one
network (a small ResNet with random weights, or ResNet-50 at 224 pixels). Both
engines get the same rows and the same number of gradient steps per row and restart;
the references' final images are rounded to 8 bits with `geometry.quantize` (nearest
levels), ours picks the better of that and its rounding along the gradient (one more
forward pass per row). They run interleaved,
`--repeats` times, and the table shows medians over repeats.

torchattacks attacks a classifier with labels and maximises a cross-entropy loss.
To make PGDL2 maximise s * (f(x + d) - f(x)) it attacks a two-logit wrapper whose
logits are (s * (f(x) - f(x0)), 0), with label 1: the loss is then
softplus(s * (f(x) - f(x0))) averaged over rows, a monotone function of each row's
objective whose per-row gradient is the objective's gradient times a positive
factor. PGDL2 normalises the gradient of every row before stepping, so its steps
are those of the objective itself. Restarts are R calls of the attack (each with
its own random start), keeping the best quantised result per row, and eps must be
a scalar there, so rows are grouped by eps.

    python benchmarks/attack_throughput.py                 # CPU: 2-5 minutes on 2 busy cores
    python benchmarks/attack_throughput.py --device cuda --arch resnet50 --images 8
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from neuroattack.attacks.engine import pgd_attack
from neuroattack.attacks.settings import PRECISIONS, AttackSettings
from neuroattack.geometry import LEVELS, quantize
from neuroattack.networks.build import build_network, count_flops
from neuroattack.networks.frozen import frozen_for_attack
from neuroattack.networks.models import IMAGENET_MEAN, IMAGENET_STD, Architecture
from neuroattack.networks.readouts import UnitResponse

try:
    import torchattacks
except ImportError:  # the table still needs it; say how to get it
    torchattacks = None


# ---------------------------------------------------------------- measuring


class PassCounter:
    """Counts rows through the networks' first layers: every forward, and every
    backward that reaches one (a gradient hook on that layer's output)."""

    def __init__(self, first_layers: list[nn.Module]) -> None:
        self.forward = 0
        self.backward = 0
        for layer in first_layers:
            layer.register_forward_hook(self._on_forward)

    def _on_forward(self, _module: nn.Module, _inputs: object, output: Tensor) -> None:
        self.forward += output.shape[0]
        if output.requires_grad:
            output.register_hook(self._on_backward)

    def _on_backward(self, gradient: Tensor) -> None:
        self.backward += gradient.shape[0]

    def reset(self) -> None:
        self.forward = 0
        self.backward = 0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, job: Callable[[], Tensor]) -> tuple[float, Tensor]:
    synchronize(device)
    start = time.perf_counter()
    result = job()
    synchronize(device)
    return time.perf_counter() - start, result


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """Best FLOP/s of a large square matmul in `dtype` on `device`."""
    size = 8192 if device.type == "cuda" else 2048
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=generator).to(dtype)
    b = torch.randn(size, size, device=device, generator=generator).to(dtype)
    torch.matmul(a, b)
    best, spent = 0.0, 0.0
    while spent < seconds:
        elapsed, _ = timed(device, lambda: torch.matmul(a, b))
        best = max(best, 2 * size**3 / elapsed)
        spent += elapsed
    return best


def search_peak(settings: AttackSettings, device: torch.device, peaks: dict[bool, float]) -> float:
    """The matmul rate a search could reach in the precisions it runs in: the peaks ({bf16: FLOP/s})
    of its segments' precisions, weighted by their gradient steps (time at peak adds up)."""
    segments = settings.segments(device)
    steps = sum(segment.steps for segment in segments)
    return steps / sum(segment.steps / peaks[segment.bf16] for segment in segments)


# ---------------------------------------------------------------- the job


@dataclass
class Job:
    images: Tensor  # (rows, C, H, W) on the 8-bit grid
    target: Tensor  # (rows,) unit index
    eps: Tensor  # (rows,)
    direction: Tensor  # (rows,) +1 raise, -1 lower
    shape: tuple[int, int, int, int]  # (eps, unit, image, direction): row order
    eps_grid: list[float]


def build_job(images: Tensor, units: Tensor, eps_grid: list[float]) -> Job:
    """Rows in (eps, unit, image, direction) order, eps outermost."""
    k, u, n = len(eps_grid), len(units), images.shape[0]
    e, t, i, d = np.meshgrid(np.arange(k), np.arange(u), np.arange(n), np.arange(2), indexing="ij")
    device = images.device
    return Job(
        images=images[torch.as_tensor(i.ravel(), device=device)],
        target=units[torch.as_tensor(t.ravel(), device=device)],
        eps=torch.tensor(eps_grid, dtype=torch.float32, device=device)[torch.as_tensor(e.ravel(), device=device)],
        direction=torch.as_tensor(np.where(d.ravel() == 0, 1.0, -1.0), dtype=torch.float32, device=device),
        shape=(k, u, n, 2),
        eps_grid=list(eps_grid),
    )


def achieved(job: Job, change: Tensor) -> Tensor:
    """Per (eps, unit, image): the larger of the two directions' signed changes, >= 0."""
    signed = (job.direction.to(change.device) * change).view(job.shape)
    return signed.amax(dim=-1).clamp_min(0.0)


def run_ours(response: UnitResponse, job: Job, settings: AttackSettings, seed: int) -> Tensor:
    result = pgd_attack(response, job.images, job.target, job.eps, job.direction, settings, seed)
    return result.change


class PlainUnit(nn.Module):
    """A unit response as a user would write it: the network as it is, one unit per row."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: Tensor, target: Tensor) -> Tensor:
        return self.network.features(images).gather(1, target.view(-1, 1)).squeeze(1)


class SignedUnitChange(nn.Module):
    """A two-class 'classifier' for torchattacks: logits (s * (f(x) - f(x0)), 0).

    With label 1, cross-entropy = softplus(s * (f(x) - f(x0))), so an untargeted
    attack raises s * (f(x) - f(x0)). `bind` sets the rows' units, signs and clean
    responses before each call.
    """

    def __init__(self, response: nn.Module) -> None:
        super().__init__()
        self.response = response
        self.target: Tensor | None = None
        self.sign: Tensor | None = None
        self.clean: Tensor | None = None

    def bind(self, target: Tensor, sign: Tensor, clean: Tensor) -> None:
        self.target, self.sign, self.clean = target, sign, clean

    def forward(self, images: Tensor) -> Tensor:
        value = self.sign * (self.response(images, self.target) - self.clean)
        return torch.stack([value, torch.zeros_like(value)], dim=1)


def run_torchattacks(
    response: nn.Module, job: Job, steps: int, restarts: int, alpha_factor: float, chunk_rows: int, seed: int
) -> Tensor:
    """PGDL2 per eps (its eps is a scalar), R restarts by repetition, best quantised
    objective per row kept. Returns the change per row, in the job's row order."""
    torch.manual_seed(seed)  # PGDL2 draws its random start from the global generator
    # eval() matters: torchattacks puts the model back into the mode it found it in,
    # and a fresh module is in training mode (BatchNorm would then use batch statistics
    # and overwrite its running ones).
    model = SignedUnitChange(response).eval()
    change = torch.empty_like(job.eps)
    for eps in job.eps_grid:
        attack = torchattacks.PGDL2(model, eps=eps, alpha=alpha_factor * eps / steps, steps=steps, random_start=True)
        rows = torch.nonzero(job.eps == eps).squeeze(1)
        for first in range(0, rows.numel(), chunk_rows):
            index = rows[first : first + chunk_rows]
            images, target, sign = job.images[index], job.target[index], job.direction[index]
            with torch.no_grad():
                clean = response(images, target)
            model.bind(target, sign, clean)
            labels = torch.ones_like(target)
            best_objective = torch.full_like(clean, -math.inf)
            best_change = torch.zeros_like(clean)
            for _ in range(restarts):
                adversarial = attack(images, labels)
                levels, _ = quantize(images, adversarial - images, job.eps[index])
                with torch.no_grad():
                    candidate = response(levels / LEVELS, target) - clean
                better = sign * candidate > best_objective
                best_objective = torch.where(better, sign * candidate, best_objective)
                best_change = torch.where(better, candidate, best_change)
            change[index] = best_change
    return change


# ---------------------------------------------------------------- setup


def load_images(count: int, resolution: int, seed: int) -> Tensor:
    """Photograph crops from the project's embedded stimuli (8-bit); noise if unavailable."""
    try:
        from neuroattack.data.stimuli import crops

        per_category = max(1, math.ceil(count / 12))
        pixels, _ = crops("stimuli", per_category, resolution, seed)
        order = np.argsort(np.arange(len(pixels)) % per_category, kind="stable")  # one per photograph first
        pixels = pixels[order[:count]]
    except Exception as error:
        print(f"(embedded photographs unavailable: {error}; using 8-bit noise)")
        pixels = np.random.default_rng(seed).integers(0, 256, (count, resolution, resolution, 3), dtype=np.uint8)
    return (torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / LEVELS).contiguous()


def build(arch_name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if arch_name == "resnet50":
        arch = Architecture(name="resnet50", num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    else:
        arch = Architecture()
    network = build_network(arch)
    return network.eval().requires_grad_(False)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--arch", choices=("small", "resnet50"), default="small")
    parser.add_argument(
        "--resolution", type=int, default=None, help="pixels per side (default: 32 small, 224 resnet50)"
    )
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="our steps per phase")
    parser.add_argument(
        "--wide-ball-factor",
        type=float,
        default=2.0,
        help="ours: the first phase's radius in eps (2: phases 2*eps then eps; 1: one phase, as config.yaml)",
    )
    parser.add_argument(
        "--stall-steps", type=int, default=0, help="ours: steps without progress before a jump (config: 4)"
    )
    parser.add_argument(
        "--step-decay", type=float, default=0.9, help="ours: step multiplier after a step without progress"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help="rows per batch, both engines (default: 128 small, as in the config; 64 resnet50)",
    )
    parser.add_argument(
        "--also-chunk-rows", type=int, nargs="*", default=[], help="extra rows of ours with these chunk sizes"
    )
    parser.add_argument("--alpha-factor", type=float, default=2.5, help="PGDL2 step size alpha = factor * eps / steps")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="ours' precision (as in the config)")
    parser.add_argument(
        "--also-precision",
        choices=PRECISIONS,
        nargs="*",
        default=["float32"],
        help="extra rows of ours at these precisions",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.resolution = args.resolution or (224 if args.arch == "resnet50" else 32)
    args.chunk_rows = args.chunk_rows or (64 if args.arch == "resnet50" else 128)
    args.also_chunk_rows = [c for c in args.also_chunk_rows if c != args.chunk_rows]
    args.also_precision = [p for p in args.also_precision if p != args.precision]
    return args


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if torchattacks is None:
        sys.exit("torchattacks is not installed: run `make bench` (the 'bench' extra, with the pinned requests)")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    network = build(args.arch, args.seed).to(device)
    flops = count_flops(network.cpu(), args.resolution)
    network.to(device)
    response = UnitResponse(network)  # ours: holds a frozen copy (BatchNorm folded, channels_last)
    user_unit = PlainUnit(network)  # PGDL2: the network as the user has it
    # PGDL2 given our BatchNorm folding. Not channels_last: PGDL2 flattens gradients with
    # .view(), which fails on channels_last tensors.
    frozen_unit = PlainUnit(frozen_for_attack(network).to(memory_format=torch.contiguous_format))
    counter = PassCounter([response.network.normalize, network.normalize, frozen_unit.network.normalize])
    units = torch.as_tensor(
        np.sort(np.random.default_rng(args.seed).choice(network.feature_dim, args.units, replace=False)), device=device
    )
    images = load_images(args.images, args.resolution, args.seed).to(device)
    job = build_job(images, units, args.eps)
    settings = AttackSettings(
        steps=args.steps,
        restarts=args.restarts,
        wide_ball_factor=args.wide_ball_factor,
        stall_steps=args.stall_steps,
        chunk_rows=args.chunk_rows,
        precision=args.precision,
        step_decay=args.step_decay,
    )
    steps_per_restart = settings.gradient_steps_per_restart()  # PGDL2 gets the same gradient steps
    rows = job.target.numel()
    image_steps = rows * args.restarts * steps_per_restart

    # the matmul rate of each precision a search runs in, measured in this run
    precisions = {settings.precision, *args.also_precision}
    uses_bf16 = any(any(replace(settings, precision=p).bf16_phases(device)) for p in precisions)
    peaks = {False: peak_matmul_flops(device, torch.float32)}
    if uses_bf16:
        peaks[True] = peak_matmul_flops(device, torch.bfloat16)
    peak_how = ", ".join(f"{'bf16' if bf16 else 'float32'} {rate / 1e9:.1f}" for bf16, rate in peaks.items())
    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, "
        f"torchattacks {torchattacks.__version__}"
    )
    print(
        f"network {args.arch} at {args.resolution}px: {flops / 1e6:.1f} MFLOP per forward; "
        f"matmul peaks (GFLOP/s, {'8192' if device.type == 'cuda' else '2048'}-square): {peak_how}"
    )
    print(
        f"job: {args.images} images x {len(args.eps)} eps x 2 directions x {args.units} units = {rows} rows; "
        f"x {args.restarts} restarts x {steps_per_restart} gradient steps = {image_steps} image-steps per engine "
        f"(ours: {args.steps} steps per phase, {settings.phases} phase(s); PGDL2: {steps_per_restart} steps, "
        f"alpha = {args.alpha_factor} eps / {steps_per_restart})"
    )
    phases = settings.search_precision(device)
    print(f"ours: precision {args.precision}, so the search segments run in {phases}; results in float32")
    print(
        f"batches: ours {min(rows * args.restarts, args.chunk_rows)} rows (restarts included), "
        f"PGDL2 {min(rows // len(args.eps), args.chunk_rows)} rows per call (one eps, one restart)"
    )

    engines: dict[str, Callable[[int], Tensor]] = {
        "ours": lambda seed: run_ours(response, job, settings, seed),
        "torchattacks PGDL2": lambda seed: run_torchattacks(
            user_unit, job, steps_per_restart, args.restarts, args.alpha_factor, args.chunk_rows, seed
        ),
        "PGDL2, folded network": lambda seed: run_torchattacks(
            frozen_unit, job, steps_per_restart, args.restarts, args.alpha_factor, args.chunk_rows, seed
        ),
    }
    for chunk in args.also_chunk_rows:
        engines[f"ours, chunk_rows={chunk}"] = lambda seed, chunk=chunk: run_ours(
            response, job, replace(settings, chunk_rows=chunk), seed
        )
    for precision in args.also_precision:
        engines[f"ours, {precision}"] = lambda seed, precision=precision: run_ours(
            response, job, replace(settings, precision=precision), seed
        )
    everything = engines
    # each row's own search precision (torchattacks runs in float32)
    engine_settings = {"ours": settings}
    engine_settings.update({f"ours, chunk_rows={chunk}": settings for chunk in args.also_chunk_rows})
    engine_settings.update({f"ours, {p}": replace(settings, precision=p) for p in args.also_precision})

    # warm-up: one small job per engine (allocator, kernels, autotuning)
    warm = build_job(images[:1], units[:1], args.eps[:1])
    warm_settings = replace(settings, steps=2, restarts=1)
    for precision in (args.precision, *args.also_precision):
        run_ours(response, warm, replace(warm_settings, precision=precision), args.seed)
    for unit in (user_unit, frozen_unit):
        run_torchattacks(unit, warm, 2, 1, args.alpha_factor, args.chunk_rows, args.seed)

    seconds: dict[str, list[float]] = {name: [] for name in everything}
    passes: dict[str, list[tuple[int, int]]] = {name: [] for name in everything}
    changes: dict[str, list[Tensor]] = {name: [] for name in everything}
    names = list(everything)
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]  # interleaved, alternating who goes first
        for name in order:
            counter.reset()
            elapsed, change = timed(device, lambda name=name, seed=args.seed + repeat: everything[name](seed))
            if any(module.training for module in (network, response.network, frozen_unit.network)):
                raise RuntimeError(f"{name} left a network in training mode")
            seconds[name].append(elapsed)
            passes[name].append((counter.forward, counter.backward))
            changes[name].append(change.detach().float().cpu())
            print(
                f"  repeat {repeat + 1}/{args.repeats} {name:<24} {elapsed:8.2f} s  "
                f"{image_steps / elapsed:8.1f} image-steps/s  passes fwd {counter.forward} bwd {counter.backward}  "
                f"mean change {float(achieved(job, change.detach().float().cpu()).mean()):.5g}",
                flush=True,
            )

    reference = statistics.median(seconds["torchattacks PGDL2"])
    header = (
        f"{'engine':<24} {'img-steps/s':>11} {'vs PGDL2':>8} {'best/s':>8} {'fwd/step':>8} {'bwd/step':>8} "
        f"{'GFLOP/s':>8} {'% peak':>7} {'mean change':>11} {'time s':>7}"
    )
    print()
    print(f"medians over {args.repeats} repeats; {image_steps} image-steps per run")
    print(header)
    print("-" * len(header))
    for name in everything:
        wall = statistics.median(seconds[name])
        rate = image_steps / wall
        forward = statistics.median(p[0] for p in passes[name]) / image_steps
        backward = statistics.median(p[1] for p in passes[name]) / image_steps
        # what a step really does: its measured forward and input-gradient backward passes, each
        # about one forward's FLOPs (no weight gradients)
        flop_rate = rate * (forward + backward) * flops
        peak = search_peak(engine_settings[name], device, peaks) if name in engine_settings else peaks[False]
        mean_change = statistics.median(float(achieved(job, c).mean()) for c in changes[name])
        print(
            f"{name:<24} {rate:11.1f} {reference / wall:7.2f}x {image_steps / min(seconds[name]):8.1f} "
            f"{forward:8.3f} {backward:8.3f} "
            f"{flop_rate / 1e9:8.2f} {100 * flop_rate / peak:6.1f}% {mean_change:11.5g} {wall:7.2f}"
        )
    per_eps = {name: torch.stack([achieved(job, c) for c in changes[name]]).median(0).values for name in everything}
    print()
    print("mean achieved change per eps (median over repeats):")
    print(f"{'eps':>8} " + " ".join(f"{name:>24}" for name in everything))
    for e, eps in enumerate(args.eps):
        print(f"{eps:8.3g} " + " ".join(f"{float(per_eps[name][e].mean()):24.5g}" for name in everything))
    reference_name = "ours" if args.precision == "float32" else "ours, float32"
    if reference_name in changes:
        for name in everything:
            if name.startswith("ours") and name != reference_name:
                pairs = list(zip(changes[name], changes[reference_name], strict=True))
                gap = max(float((achieved(job, a) - achieved(job, b)).abs().max()) for a, b in pairs)
                ratio = statistics.median(float(achieved(job, a).mean() / achieved(job, b).mean()) for a, b in pairs)
                print(
                    f"{name} vs {reference_name}: mean achieved change ratio {ratio:.4f}, "
                    f"max per-(unit, image, eps) difference {gap:.4g}"
                )


if __name__ == "__main__":
    main()
