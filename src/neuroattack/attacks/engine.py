"""The attack engine: projected gradient ascent on one unit's response, under an
L2 or L-infinity budget in [0, 1] pixel space (`AttackSettings.norm`; the balls in
geometry.py), with the paper's schedule.

Every (target, image, eps, direction, restart) combination is a *row*. All rows
run in one batched loop (chunked only to bound memory) with per-row eps and step
size. Each step proposes best + step * the norm's ascent direction (the normalised
gradient under L2, its sign under L-infinity), projected onto the ball and clamped to
the image box; a row accepts the proposal if it raised the objective and otherwise
shrinks its step by `step_decay` (so each row's iterate is the best point it has seen).
The first phase runs inside a ball of radius `wide_ball_factor * eps`, the second inside
eps. The final image is quantised to 8 bits, rounding each pixel to the nearer level or
to the level the gradient favours (whichever row-wise raises the objective more), never
above eps. Restarts may be pruned by
successive halving (`prune_every`, `prune_keep`): every few steps each row keeps its
best restarts, so the paper's many restarts cost a fraction of their evaluations. Gradients are taken with
respect to the input only, and nothing in the step loop synchronises with the host.

Transfer (black-box attacks on site models, whose perturbations must move a brain): with
`input_diversity` the gradient of a step is, with that probability, taken on a random
resize-and-pad of the image (Xie et al. 2019), and with `momentum` the step follows the
accumulated normalised gradient (Dong et al. 2018). Both off, the search is unchanged.

Precision: the search may run under bf16 autocast (`AttackSettings.precision`), but
the clean and final responses, and so every reported change, are always float32.
"mixed" searches the wide phase in bf16 and refines the eps phase in float32; with one phase
it searches in bf16 and refines over the last few gradient evaluations in float32.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from neuroattack.attacks.settings import (
    AttackResult,
    AttackSettings,
    ResponseFn,
    Segment,
    Survivors,
)
from neuroattack.geometry import L2, LEVELS, PROJECTION_SLACK, Norm, clamp_to_box, norm_named
from neuroattack.geometry import per_row as _per_row


def _restart_generator(seed: int, restart: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator that depends on (seed, restart, stream) alone: results never depend on chunking."""
    state = int(np.random.SeedSequence([seed, restart, *([stream] if stream else [])]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(state)


def restart_starts(shape: torch.Size, restarts: int, seed: int, device: torch.device, norm: Norm = L2) -> Tensor:
    """One start per restart, uniform inside the unit ball of `norm`, shaped (restarts, *shape).

    Restart k's start depends on (seed, k) alone, so the first k restarts are the
    same whatever the total, and results do not depend on how rows are chunked.
    """
    one = torch.Size((1, *shape))
    return torch.cat([norm.random_start(one, _restart_generator(seed, k, 0, device)) for k in range(restarts)])


def restart_probes(shape: torch.Size, restarts: int, seed: int, device: torch.device) -> Tensor:
    """One Gaussian probe per restart, (restarts, *shape): where a row's gradient is exactly
    zero (a rectified unit at 0), the default schedule steps along a rotation of its probe."""
    one = torch.Size((1, *shape))
    return torch.cat(
        [torch.randn(one, generator=_restart_generator(seed, k, 1, device), device=device) for k in range(restarts)]
    )


View = Callable[[Tensor], Tensor]  # what the response sees of a perturbed image


def _objective(
    response: ResponseFn,
    images: Tensor,
    delta: Tensor,
    target: Tensor,
    clean: Tensor,
    sign: Tensor,
    bf16: bool,
    view: View | None = None,
) -> tuple[Tensor, Tensor]:
    """(sign * (f(x + delta) - f(x)), its gradient w.r.t. delta); with `view`, f sees
    view(x + delta). Under bf16 the float32 `clean` only offsets the value, so comparisons
    within a phase are unaffected."""
    delta = delta.detach().requires_grad_(True)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        shown = images + delta if view is None else view(images + delta)
        value = sign * (response(shown, target).float() - clean)
    (gradient,) = torch.autograd.grad(value.sum(), delta)
    return value.detach(), gradient


def _float32_response(response: ResponseFn, images: Tensor, target: Tensor) -> Tensor:
    """A reported response: no gradients, float32 even inside a caller's autocast."""
    with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
        return response(images, target)


DIVERSITY_SMALLEST = 0.875  # input diversity's smallest resize, a fraction of the side (299 of 330 px in Xie et al.)


def resize_and_pad(images: Tensor, size: int, top: int, left: int) -> Tensor:
    """`images` (N, C, H, W) resized to size x size (nearest pixel, as Xie et al.) and padded with black back to H x W,
    `top` and `left` pixels above and left of it."""
    height, width = images.shape[-2:]
    small = torch.nn.functional.interpolate(images, size=(size, size), mode="nearest")
    return torch.nn.functional.pad(small, (left, width - size - left, top, height - size - top))


@dataclass(frozen=True)
class _Diversity:
    """Input diversity: step t's view of every row, one random resize-and-pad (or none) drawn
    from (seed, t) alone, so results never depend on chunking or the device."""

    probability: float
    seed: int

    def view(self, step: int, side: int) -> View | None:
        state = int(np.random.SeedSequence([self.seed, step, 2]).generate_state(1)[0])
        applied, size_draw, top_draw, left_draw = np.random.default_rng(state).random(4)
        if applied >= self.probability:
            return None
        smallest = math.ceil(side * DIVERSITY_SMALLEST)
        size = smallest + int(size_draw * (side - smallest + 1))
        room = side - size
        top, left = int(top_draw * (room + 1)), int(left_draw * (room + 1))
        return functools.partial(resize_and_pad, size=size, top=top, left=left)


def _with_momentum(velocity: Tensor, direction: Tensor, momentum: float, restarted: Tensor) -> Tensor:
    """The accumulated direction: momentum x the last one (zero where a row `restarted`) plus
    `direction` normalised by its mean absolute value (MI-FGSM's L1 normalisation)."""
    scale = direction.flatten(1).abs().mean(dim=1).clamp_min(torch.finfo(direction.dtype).tiny)
    kept = torch.where(_per_row(restarted, velocity), 0.0, velocity)
    return momentum * kept + direction / _per_row(scale, direction)


def _maybe(mask: Tensor) -> bool:
    """Whether any row of `mask` may be set. On the CPU asking costs nothing, and a step skips the
    work of rows that none needs (the same numbers: a torch.where that selects nothing); elsewhere
    the answer would wait for the device, so the step does the work unasked."""
    return mask.device.type != "cpu" or bool(mask.any())


FIRST_STEP = 2.0  # the geometric schedule's first step, in radii (APGD starts at 2 eps too)
PROBE_STRIDE = 7919  # a prime: step t rolls a probe by t * PROBE_STRIDE elements (a fresh direction each step)
STALL_TOLERANCE = 1e-4  # a run has progressed when its best objective rose by more than this fraction of itself
MIN_RUN = 8  # a stalled row jumps to a fresh start only with at least this many steps left


@dataclass(frozen=True)
class _Rows:
    """One chunk of rows, restarts expanded, and what every phase needs of them."""

    response: ResponseFn
    images: Tensor
    target: Tensor
    eps: Tensor
    sign: Tensor
    clean: Tensor
    probe: Tensor
    norm: Norm
    diversity: _Diversity | None = None

    def objective(self, delta: Tensor, bf16: bool, step: int | None = None) -> tuple[Tensor, Tensor]:
        """The objective and its gradient at `delta`; at a search `step`, through input diversity's view."""
        view = None if self.diversity is None or step is None else self.diversity.view(step, self.images.shape[-1])
        return _objective(self.response, self.images, delta, self.target, self.clean, self.sign, bf16, view)

    def inside(self, delta: Tensor, radius: Tensor) -> Tensor:
        """`delta` projected onto the ball of `radius`, then into the image box."""
        return clamp_to_box(self.images, self.norm.project(delta, radius))

    def select(self, index: Tensor) -> _Rows:
        """The row-restarts at `index`."""
        return replace(
            self,
            images=self.images[index],
            target=self.target[index],
            eps=self.eps[index],
            sign=self.sign[index],
            clean=self.clean[index],
            probe=self.probe[index],
        )


def _paper_phase(
    rows: _Rows, best: Tensor, segment: Segment, settings: AttackSettings, tick: Callable[[], None], alive: Survivors
) -> tuple[_Rows, Tensor, Tensor, Tensor]:
    """The published schedule: propose best + step * ascent direction; accept it if it
    raised the objective, else shrink the row's step by `step_decay`. The step starts at eps."""
    radius, bf16 = rows.eps * segment.radius_factor, segment.bf16
    best = rows.inside(best, radius)
    best_value, best_gradient = rows.objective(best, bf16)
    step = rows.eps.clone()
    for _ in range(segment.steps):
        proposal = rows.inside(best + rows.norm.ascent(best_gradient) * _per_row(step, best), radius)
        value, gradient = rows.objective(proposal, bf16)
        better = value > best_value
        keep = _per_row(better, best)
        best = torch.where(keep, proposal, best)
        best_gradient = torch.where(keep, gradient, best_gradient)
        best_value = torch.where(better, value, best_value)
        step = torch.where(better, step, step * settings.step_decay)
        tick()
        index = alive.after_step(best_value)
        if index is not None:
            rows, best, best_gradient, best_value, step = (
                rows.select(index),
                best[index],
                best_gradient[index],
                best_value[index],
                step[index],
            )
            radius = radius[index]
    return rows, best, best_value, best_gradient


@dataclass
class _Run:
    """Per row, the run of the geometric schedule it is on: the step its run began at, the
    steps the run has, the run's best objective and the steps since that last rose. A row
    that jumps to a fresh start begins a new run with the steps left in the phase."""

    first: Tensor
    length: Tensor
    best: Tensor
    stalled: Tensor

    @classmethod
    def starting(cls, value: Tensor, steps: int) -> _Run:
        return cls(torch.zeros_like(value), torch.full_like(value, float(steps)), value, torch.zeros_like(value))

    def step_size(self, t: int, radius: Tensor, final_step: float) -> Tensor:
        """FIRST_STEP x radius at a run's first step, shrinking geometrically to final_step x radius at its last."""
        progress = (t - self.first) / (self.length - 1).clamp_min(1)
        return radius * FIRST_STEP * (final_step / FIRST_STEP) ** progress

    def record(self, value: Tensor, jumped: Tensor) -> None:
        """After an evaluation: a run's best rises only by more than STALL_TOLERANCE of itself."""
        rose = value > self.best + STALL_TOLERANCE * self.best.abs()
        self.best = torch.where(jumped, value, torch.maximum(self.best, value))
        self.stalled = torch.where(rose | jumped, 0, self.stalled + 1)

    def jumps(self, t: int, end: int, stall_steps: int) -> Tensor:
        """Rows whose run has stalled for `stall_steps` and that have MIN_RUN steps left
        before step `end` to spend on a fresh start. Step t + 1 moves them there, so their new runs begin at t + 2."""
        if not stall_steps:
            return torch.zeros_like(self.best, dtype=torch.bool)
        left = end - 1 - t
        jump = (self.stalled >= stall_steps) & (left >= MIN_RUN)
        self.first = torch.where(jump, float(t + 2), self.first)
        self.length = torch.where(jump, float(left - 1), self.length)
        return jump

    def select(self, index: Tensor) -> _Run:
        return _Run(self.first[index], self.length[index], self.best[index], self.stalled[index])


def _geometric_phase(
    rows: _Rows, start: Tensor, segment: Segment, settings: AttackSettings, tick: Callable[[], None], alive: Survivors
) -> tuple[_Rows, Tensor, Tensor, Tensor]:
    """The default schedule: always step from the latest iterate, with a step that shrinks
    geometrically from FIRST_STEP x radius to `final_step` x radius over the phase; keep the
    best point seen. A row whose gradient is exactly zero jumps a radius along a fresh random
    direction. With `stall_steps`, a row whose run stops improving jumps to a fresh point of
    the sphere and runs the schedule anew over the steps left: at small eps, where a run
    settles within a few steps, the budget buys more starts; at large eps one long run."""
    radius, bf16 = rows.eps * segment.radius_factor, segment.bf16
    current = rows.inside(start, radius)
    value, gradient = rows.objective(current, bf16)
    best, best_value, best_gradient = current, value, gradient
    flat_probe = rows.probe.flatten(1)
    run = _Run.starting(value, settings.steps)
    # jumps search; a segment that resumes a phase from its best point (mixed precision) refines
    stall_steps = settings.stall_steps if segment.first_step == 0 else 0
    jump = torch.zeros_like(value, dtype=torch.bool)
    velocity = torch.zeros_like(gradient) if settings.momentum else None
    for t in range(segment.first_step, segment.first_step + segment.steps):
        size = run.step_size(t, radius, settings.final_step)
        flat = gradient.flatten(1).abs().amax(dim=1) == 0
        probe = flat_probe.roll(t * PROBE_STRIDE % flat_probe.shape[1], dims=1).view_as(gradient)
        direction = torch.where(_per_row(flat, gradient), probe, gradient) if _maybe(flat) else gradient
        if velocity is not None:
            velocity = direction = _with_momentum(velocity, direction, settings.momentum, jump)
        size = torch.where(flat, radius, size)  # a probe jumps a whole radius: a new region, not a nudge
        current = rows.inside(current + rows.norm.ascent(direction) * _per_row(size, current), radius)
        if _maybe(jump):
            fresh = rows.inside(rows.norm.ascent(probe) * _per_row(radius, current), radius)
            current = torch.where(_per_row(jump, current), fresh, current)
        value, gradient = rows.objective(current, bf16, step=t)
        better = value > best_value
        best = torch.where(_per_row(better, best), current, best)
        best_gradient = torch.where(_per_row(better, best), gradient, best_gradient)
        best_value = torch.where(better, value, best_value)
        run.record(value, jump)
        jump = run.jumps(t, segment.first_step + segment.steps, stall_steps)
        tick()
        index = alive.after_step(best_value)
        if index is not None:
            if velocity is not None:
                velocity = velocity[index]
            rows, current, gradient, best, best_value, best_gradient, run, jump = (
                rows.select(index),
                current[index],
                gradient[index],
                best[index],
                best_value[index],
                best_gradient[index],
                run.select(index),
                jump[index],
            )
            radius, flat_probe = radius[index], flat_probe[index]
    return rows, best, best_value, best_gradient


def _attack_chunk(
    rows: _Rows, start: Tensor, settings: AttackSettings, segments: list[Segment], tick: Callable[[], None]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Attack rows (restarts expanded). Returns change, norm, perturbed levels, best objective."""
    eps = rows.eps
    phase = _paper_phase if settings.schedule == "paper" else _geometric_phase
    best = clamp_to_box(rows.images, start * _per_row(eps * segments[0].radius_factor, start))
    best_value = torch.zeros_like(eps)
    alive = Survivors.of(settings, segments)
    for segment in segments:
        rows, best, best_value, best_gradient = phase(rows, best, segment, settings, tick, alive)
    change, delta, levels = _shown_image(rows, best, best_gradient)
    return change, rows.norm.measure(delta), levels, best_value


def _shown_image(rows: _Rows, best: Tensor, gradient: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return shown_image(
        rows.response, rows.images, rows.target, rows.eps, rows.sign, rows.clean, best, gradient, rows.norm
    )


def shown_image(
    response: ResponseFn,
    images: Tensor,
    target: Tensor,
    eps: Tensor,
    sign: Tensor,
    clean: Tensor,
    best: Tensor,
    gradient: Tensor,
    norm: Norm = L2,
) -> tuple[Tensor, Tensor, Tensor]:
    """The 8-bit image shown for each row's best point `best` (a perturbation): of its
    nearest rounding and its rounding along `gradient` there (`Norm.quantize_along`), the
    one whose float32 objective sign * (f(x + q) - f(x)) is larger. `clean` is f(x).
    Every engine's final step (ours, and the references in the benchmarks). Returns
    (change, quantised delta, levels)."""
    candidates = [norm.quantize(images, best, eps), norm.quantize_along(images, best, eps, gradient)]
    changes = [_float32_response(response, levels / LEVELS, target) - clean for levels, _ in candidates]
    along = sign * changes[1] > sign * changes[0]
    (nearest_levels, nearest_delta), (along_levels, along_delta) = candidates
    return (
        torch.where(along, changes[1], changes[0]),
        torch.where(_per_row(along, best), along_delta, nearest_delta),
        torch.where(_per_row(along, best), along_levels, nearest_levels),
    )


def pgd_attack(
    response: ResponseFn,
    images: Tensor,
    target: Tensor,
    eps: Tensor,
    direction: Tensor,
    settings: AttackSettings,
    seed: int,
    progress: Callable[[float, int], None] | None = None,
    warm_start: Tensor | None = None,
) -> AttackResult:
    """Attack every row; rows are (images[i], target[i], eps[i], direction[i] = +1 or -1).

    Each row is expanded into `settings.restarts` restarts (restart k of every row
    starts from the same point of the unit ball, scaled to the row's radius); the
    restart whose quantised objective direction * change is largest is returned. With
    `settings.prune_every`, restarts are pruned by successive halving on the way (the
    best unquantised objective so far decides); only the survivors are quantised.
    `progress(done, total)`, if given, hears after every step how many of the `total`
    row-restarts are done (it is called from the host; nothing waits for the device).
    `warm_start`, if given, is one perturbation per row (rows, C, H, W) in [0, 1] pixel
    units: restart 0 of each row starts there (projected onto its ball) instead of at
    its random start, for example from an earlier attack's best perturbation.
    """
    rows = images.shape[0]
    if not (target.shape[0] == eps.shape[0] == direction.shape[0] == rows):
        raise ValueError("images, target, eps and direction must have one entry per row")
    if bool((eps <= 0).any()):
        raise ValueError("every eps must be positive")
    restarts = settings.restarts
    norm = norm_named(settings.norm)
    starts = restart_starts(images.shape[1:], restarts, seed, images.device, norm)
    if warm_start is not None and warm_start.shape != images.shape:
        raise ValueError(
            f"warm_start has shape {tuple(warm_start.shape)}; give one perturbation per row {tuple(images.shape)}"
        )
    probes = restart_probes(images.shape[1:], restarts, seed, images.device)
    diversity = _Diversity(settings.input_diversity, seed) if settings.input_diversity else None
    expanded = torch.arange(rows, device=images.device).repeat_interleave(restarts)
    restart_of_row = torch.arange(restarts, device=images.device).repeat(rows)
    sign = direction.to(images.dtype)
    segments = settings.segments(images.device)
    clean = torch.cat(  # once per row, shared by its restarts
        [
            _float32_response(
                response, images[first : first + settings.chunk_rows], target[first : first + settings.chunk_rows]
            )
            for first in range(0, rows, settings.chunk_rows)
        ]
    )
    outputs: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    total, steps = expanded.numel(), sum(segment.steps for segment in segments)
    per_chunk = max(1, settings.chunk_rows // restarts) * restarts  # whole rows: pruning ranks a row's restarts
    for first in range(0, total, per_chunk):
        index = expanded[first : first + per_chunk]
        restart = restart_of_row[first : first + per_chunk]
        chunk = _Rows(
            response,
            images[index],
            target[index],
            eps[index],
            sign[index],
            clean[index],
            probes[restart],
            norm,
            diversity,
        )
        done = [0]

        def tick(first: int = first, size: int = index.numel(), done: list[int] = done) -> None:
            done[0] += 1
            if progress is not None:
                progress(first + size * done[0] / steps, total)

        start = starts[restart]
        if warm_start is not None:  # in units of the first segment's radius, as the random starts are
            scale = _per_row(eps[index] * segments[0].radius_factor, start)
            start = torch.where(_per_row(restart == 0, start), warm_start[index] / scale, start)
        outputs.append(_attack_chunk(chunk, start, settings, segments, tick))
    change, delta_norm, levels, unquantized = (torch.cat(parts) for parts in zip(*outputs, strict=True))
    survivors = change.numel() // rows
    objective = (sign.repeat_interleave(survivors) * change).view(rows, survivors)
    best = objective.argmax(dim=1) + torch.arange(rows, device=images.device) * survivors
    forward, backward = settings.passes_per_row(images.device)
    return AttackResult(
        clean=clean,
        change=change[best],
        delta_norm=delta_norm[best],
        perturbed=levels[best].to(torch.uint8),
        objective=unquantized[best],
        forward_passes=forward,
        backward_passes=backward,
    )


def random_direction_baseline(
    response: ResponseFn, images: Tensor, target: Tensor, eps: Tensor, seed: int, norm: str = "l2"
) -> AttackResult:
    """Model-free baseline: one random direction of norm eps per row, quantised alike."""
    geometry = norm_named(norm)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    direction = geometry.random_direction(images.shape, generator)
    delta = clamp_to_box(images, direction * _per_row(eps * (1 - PROJECTION_SLACK), direction))
    levels, quantized = geometry.quantize(images, delta, eps)
    clean = _float32_response(response, images, target)
    perturbed = _float32_response(response, levels / LEVELS, target)
    return AttackResult(
        clean=clean,
        change=perturbed - clean,
        delta_norm=geometry.measure(quantized),
        perturbed=levels.to(torch.uint8),
        objective=(perturbed - clean).abs(),
        forward_passes=2,
        backward_passes=0,
    )
