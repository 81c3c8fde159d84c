"""The attack engine: projected gradient ascent on one unit's response, under an
L2 budget in [0, 1] pixel space, with the paper's schedule.

Every (target, image, eps, direction, restart) combination is a *row*. All rows
run in one batched loop (chunked only to bound memory) with per-row eps and step
size. Each step proposes best + step * normalised gradient, projected onto the
ball and clamped to the image box; a row accepts the proposal if it raised the
objective and otherwise shrinks its step by `step_decay` (so each row's iterate
is the best point it has seen). The first phase runs inside a ball of radius
`wide_ball_factor * eps`, the second inside eps. The final image is quantised to
8 bits and its norm re-checked (never above eps). Gradients are taken with
respect to the input only, and nothing in the step loop synchronises with the host.

Precision: the search may run under bf16 autocast (`AttackSettings.precision`), but
the clean and final responses, and so every reported change, are always float32.
"mixed" searches the wide phase in bf16 and refines the eps phase in float32.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

# response(images (rows, C, H, W) in [0, 1], target (rows,)) -> (rows,)
ResponseFn = Callable[[Tensor, Tensor], Tensor]

LEVELS = 255.0
PROJECTION_SLACK = 1e-6  # keeps float32 round-off from pushing a norm past eps
PRECISIONS = ("auto", "float32", "mixed", "bf16")
DIRECTIONS = ("increase", "decrease")  # the two objectives: raise or lower the response
DIRECTION_SIGNS = (1.0, -1.0)  # the sign of the response change each direction seeks


@dataclass(frozen=True)
class AttackSettings:
    """How hard to search. The paper: 100 restarts, both directions, 2*eps then eps."""

    steps: int = 20  # steps per phase
    restarts: int = 4
    wide_ball_factor: float = 2.0  # radius of the first phase, in units of eps (1 = one phase)
    step_decay: float = 0.9  # step multiplier after a step without progress
    chunk_rows: int = 128  # rows per batch: bounds memory; results do not depend on it (tests/test_attack.py)
    precision: str = "float32"  # one of PRECISIONS: bf16 autocast in which search phases

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any], **overrides: Any) -> AttackSettings:
        """The settings named in a config section (`attack`, `preference`), each cast to its
        field's type; the section's other keys (eps grid, image counts) are not settings."""
        values = {**section, **overrides}
        kinds = {field.name: {"int": int, "float": float, "str": str}[str(field.type)] for field in fields(cls)}
        return cls(**{name: kind(values[name]) for name, kind in kinds.items() if name in values})

    @property
    def phases(self) -> int:
        return 2 if self.wide_ball_factor != 1.0 else 1

    def gradient_steps_per_restart(self) -> int:
        """Forward-and-backward passes of one restart: per phase, its start and its steps."""
        return self.phases * (1 + self.steps)

    def passes_per_row(self) -> tuple[int, int]:
        """(forward, backward) passes per row, all restarts included: one clean forward,
        then per restart its gradient steps and one final forward."""
        steps = self.gradient_steps_per_restart()
        return 1 + self.restarts * (steps + 1), self.restarts * steps

    def bf16_phases(self, device: torch.device) -> list[bool]:
        """Per search phase, whether it runs under bf16 autocast on `device`."""
        precision = self.precision
        if precision == "auto":
            precision = "mixed" if bf16_is_native(device) else "float32"
        if precision == "bf16":
            return [True] * self.phases
        if precision == "mixed":  # coarse wide phase in bf16, the eps phase refined in float32
            return [True] * (self.phases - 1) + [False]
        return [False] * self.phases

    def search_precision(self, device: torch.device) -> str:
        """The search phases' precisions on `device`, e.g. "bf16, float32" (recorded with results)."""
        return ", ".join("bf16" if bf16 else "float32" for bf16 in self.bf16_phases(device))


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 convolutions run on native hardware here (elsewhere they are emulated, and slow)."""
    if device.type == "cuda":  # Ampere or newer; older GPUs emulate bf16
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type != "cpu":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        # AVX512-BF16 or AMX; plain AVX-512 only emulates bf16. torch has no public query.
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    try:  # other CPUs (e.g. Arm with BF16 instructions): ask oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class AttackGrid:
    """Every (case, eps, sign) row of a batch of attacks, case-major: case i attacks
    target `targets[i]` on image `images[i]`; sign +1 raises the response, -1 lowers it."""

    images: Tensor  # (rows, C, H, W)
    target: Tensor  # (rows,)
    eps: Tensor  # (rows,)
    sign: Tensor  # (rows,)
    shape: tuple[int, int, int]  # (cases, eps, signs)

    def to_host(self, values: Tensor) -> np.ndarray:
        """Per-row values (rows, ...) as float32 numpy shaped (cases, eps, signs, ...)."""
        return values.detach().float().cpu().numpy().reshape(*self.shape, *values.shape[1:])


def attack_grid(images: Tensor, targets: Tensor, eps_grid: Sequence[float], signs: Sequence[float]) -> AttackGrid:
    """The rows attacking every case (images[i], targets[i]) at every eps, in every sign."""
    cases, n_eps, n_signs = images.shape[0], len(eps_grid), len(signs)
    if targets.shape[0] != cases:
        raise ValueError(f"{cases} images but {targets.shape[0]} targets; give one target per image")
    device = images.device
    case = torch.arange(cases, device=device).repeat_interleave(n_eps * n_signs)
    eps = torch.as_tensor(np.asarray(eps_grid, dtype=np.float32), device=device)
    sign = torch.as_tensor(np.asarray(signs, dtype=np.float32), device=device)
    return AttackGrid(
        images=images[case],
        target=targets.to(device)[case],
        eps=eps.repeat_interleave(n_signs).repeat(cases),
        sign=sign.repeat(cases * n_eps),
        shape=(cases, n_eps, n_signs),
    )


@dataclass
class AttackResult:
    """Per row (restarts already reduced to the best one)."""

    clean: Tensor  # f(x)
    change: Tensor  # f(x + delta) - f(x), after quantisation
    delta_norm: Tensor  # ||delta||_2 after quantisation
    perturbed: Tensor  # uint8 (rows, C, H, W): the image that is shown
    objective: Tensor  # best direction * change seen before quantisation
    forward_passes: int  # per row, all restarts included
    backward_passes: int


def flat_norm(x: Tensor) -> Tensor:
    """Per-row L2 norm."""
    norm: Tensor = x.flatten(1).norm(dim=1)
    return norm


def _per_row(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *([1] * (like.ndim - 1)))


def project_l2(delta: Tensor, radius: Tensor) -> Tensor:
    """Scale rows whose L2 norm exceeds `radius` back onto the sphere."""
    norm = flat_norm(delta).clamp_min(1e-12)
    factor = torch.clamp(radius * (1 - PROJECTION_SLACK) / norm, max=1.0)
    return delta * _per_row(factor, delta)


def normalized(gradient: Tensor) -> Tensor:
    return gradient / _per_row(flat_norm(gradient).clamp_min(1e-12), gradient)


def clamp_to_box(images: Tensor, delta: Tensor) -> Tensor:
    """The part of delta that keeps images + delta inside [0, 1]."""
    return (images + delta).clamp(0.0, 1.0) - images


def random_in_ball(shape: torch.Size, radius: Tensor, generator: torch.Generator) -> Tensor:
    """Points uniform inside L2 balls (per-row radius): direction x radius x U^(1/d)."""
    direction = torch.randn(shape, generator=generator, device=generator.device)
    dims = direction[0].numel()
    scale = radius * torch.rand(shape[0], generator=generator, device=generator.device) ** (1.0 / dims)
    return normalized(direction) * _per_row(scale, direction)


def restart_starts(shape: torch.Size, restarts: int, seed: int, device: torch.device) -> Tensor:
    """One start per restart, uniform inside the unit ball, shaped (restarts, *shape).

    Restart k's start depends on (seed, k) alone, so the first k restarts are the
    same whatever the total, and results do not depend on how rows are chunked.
    """
    starts = []
    for k in range(restarts):
        state = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        generator = torch.Generator(device=device).manual_seed(state)
        starts.append(random_in_ball(torch.Size((1, *shape)), torch.ones(1, device=device), generator))
    return torch.cat(starts)


def quantize(images: Tensor, delta: Tensor, eps: Tensor, iterations: int = 16) -> tuple[Tensor, Tensor]:
    """8-bit image nearest to images + s * delta with the largest s in [0, 1] whose
    quantised perturbation has norm <= eps. `images` must lie on the 8-bit grid.

    Returns (perturbed uint8-valued float image, quantised delta).
    """
    clean_levels = torch.round(images * LEVELS)

    def levels_at(scale: Tensor) -> Tensor:
        return torch.round((images + delta * _per_row(scale, delta)).clamp(0, 1) * LEVELS)

    def fits(levels: Tensor) -> Tensor:
        return flat_norm(levels - clean_levels) <= eps * LEVELS

    ones = torch.ones(delta.shape[0], device=delta.device)
    low, high = torch.zeros_like(ones), ones
    ok_full = fits(levels_at(ones))
    for _ in range(iterations):  # bisection on the scale, for rows where rounding overshoots
        middle = (low + high) / 2
        ok = fits(levels_at(middle))
        low = torch.where(ok, middle, low)
        high = torch.where(ok, high, middle)
    scale = torch.where(ok_full, ones, low)
    levels = levels_at(scale)
    return levels, (levels - clean_levels) / LEVELS


def _objective(
    response: ResponseFn, images: Tensor, delta: Tensor, target: Tensor, clean: Tensor, sign: Tensor, bf16: bool
) -> tuple[Tensor, Tensor]:
    """(sign * (f(x + delta) - f(x)), its gradient w.r.t. delta). Under bf16 the float32
    `clean` only offsets the value, so comparisons within a phase are unaffected."""
    delta = delta.detach().requires_grad_(True)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        value = sign * (response(images + delta, target).float() - clean)
    (gradient,) = torch.autograd.grad(value.sum(), delta)
    return value.detach(), gradient


def _float32_response(response: ResponseFn, images: Tensor, target: Tensor) -> Tensor:
    """A reported response: no gradients, float32 even inside a caller's autocast."""
    with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
        return response(images, target)


def _attack_chunk(
    response: ResponseFn,
    images: Tensor,
    target: Tensor,
    eps: Tensor,
    sign: Tensor,
    clean: Tensor,
    start: Tensor,
    settings: AttackSettings,
    bf16_phases: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Attack rows (restarts expanded). Returns change, norm, perturbed levels, best objective."""
    radii = [eps * settings.wide_ball_factor, eps] if settings.phases == 2 else [eps]
    best = clamp_to_box(images, start * _per_row(radii[0], start))
    for radius, bf16 in zip(radii, bf16_phases, strict=True):
        best = clamp_to_box(images, project_l2(best, radius))
        best_value, best_gradient = _objective(response, images, best, target, clean, sign, bf16)
        step = eps.clone()
        for _ in range(settings.steps):
            proposal = best + normalized(best_gradient) * _per_row(step, best)
            proposal = clamp_to_box(images, project_l2(proposal, radius))
            value, gradient = _objective(response, images, proposal, target, clean, sign, bf16)
            better = value > best_value
            keep = _per_row(better, best)
            best = torch.where(keep, proposal, best)
            best_gradient = torch.where(keep, gradient, best_gradient)
            best_value = torch.where(better, value, best_value)
            step = torch.where(better, step, step * settings.step_decay)
    levels, delta = quantize(images, best, eps)
    final = _float32_response(response, levels / LEVELS, target)
    return final - clean, flat_norm(delta), levels, best_value


def pgd_attack(
    response: ResponseFn,
    images: Tensor,
    target: Tensor,
    eps: Tensor,
    direction: Tensor,
    settings: AttackSettings,
    seed: int,
) -> AttackResult:
    """Attack every row; rows are (images[i], target[i], eps[i], direction[i] = +1 or -1).

    Each row is expanded into `settings.restarts` restarts (restart k of every row
    starts from the same point of the unit ball, scaled to the row's radius); the
    restart whose quantised objective direction * change is largest is returned.
    """
    rows = images.shape[0]
    if not (target.shape[0] == eps.shape[0] == direction.shape[0] == rows):
        raise ValueError("images, target, eps and direction must have one entry per row")
    if bool((eps <= 0).any()):
        raise ValueError("every eps must be positive")
    restarts = settings.restarts
    starts = restart_starts(images.shape[1:], restarts, seed, images.device)
    expanded = torch.arange(rows, device=images.device).repeat_interleave(restarts)
    restart_of_row = torch.arange(restarts, device=images.device).repeat(rows)
    sign = direction.to(images.dtype)
    bf16_phases = settings.bf16_phases(images.device)
    clean = torch.cat(  # once per row, shared by its restarts
        [
            _float32_response(
                response, images[first : first + settings.chunk_rows], target[first : first + settings.chunk_rows]
            )
            for first in range(0, rows, settings.chunk_rows)
        ]
    )
    outputs: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    for first in range(0, expanded.numel(), settings.chunk_rows):
        index = expanded[first : first + settings.chunk_rows]
        start = starts[restart_of_row[first : first + settings.chunk_rows]]
        outputs.append(
            _attack_chunk(
                response,
                images[index],
                target[index],
                eps[index],
                sign[index],
                clean[index],
                start,
                settings,
                bf16_phases,
            )
        )
    change, norm, levels, unquantized = (torch.cat(parts) for parts in zip(*outputs, strict=True))
    objective = (sign.repeat_interleave(restarts) * change).view(rows, restarts)
    best = objective.argmax(dim=1) + torch.arange(rows, device=images.device) * restarts
    forward, backward = settings.passes_per_row()
    return AttackResult(
        clean=clean,
        change=change[best],
        delta_norm=norm[best],
        perturbed=levels[best].to(torch.uint8),
        objective=unquantized[best],
        forward_passes=forward,
        backward_passes=backward,
    )


def random_direction_baseline(
    response: ResponseFn, images: Tensor, target: Tensor, eps: Tensor, seed: int
) -> AttackResult:
    """Model-free baseline: one random direction of norm eps per row, quantised alike."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    direction = normalized(torch.randn(images.shape, generator=generator, device=images.device))
    delta = clamp_to_box(images, direction * _per_row(eps * (1 - PROJECTION_SLACK), direction))
    levels, quantized = quantize(images, delta, eps)
    clean = _float32_response(response, images, target)
    perturbed = _float32_response(response, levels / LEVELS, target)
    return AttackResult(
        clean=clean,
        change=perturbed - clean,
        delta_norm=flat_norm(quantized),
        perturbed=levels.to(torch.uint8),
        objective=(perturbed - clean).abs(),
        forward_passes=2,
        backward_passes=0,
    )
