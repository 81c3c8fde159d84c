"""What an attack is asked to do and what it returns: its settings (budget, schedule,
precision, restarts), the grid of rows a batch attacks, and the per-row result."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuroattack.config import NORMS
from neuroattack.runtime import bf16_is_native

# response(images (rows, C, H, W) in [0, 1], target (rows,)) -> (rows,)
ResponseFn = Callable[[Tensor, Tensor], Tensor]

PRECISIONS = ("auto", "float32", "mixed", "bf16")
# `mixed`, one phase: the float32 refinement's gradient evaluations (its start and 3 steps). Its
# search in bf16 to there found as much as float32 on the default run's trained networks, where
# bf16 to the end fell short by up to 0.8% at some eps (benchmarks/README.md)
FLOAT32_REFINEMENT = 4
SCHEDULES = ("geometric", "paper")


@dataclass(frozen=True)
class AttackSettings:
    """How hard to search, and how. The paper: 100 restarts, both directions, 2*eps then
    eps, its own step schedule (`schedule="paper"`)."""

    steps: int = 20  # gradient steps per phase
    restarts: int = 4
    wide_ball_factor: float = 2.0  # radius of the first phase, in units of eps (1 = one phase)
    schedule: str = "geometric"  # one of SCHEDULES
    final_step: float = 0.1  # geometric: the last step, as a fraction of the phase's radius
    stall_steps: int = 0  # geometric: steps without progress after which a row jumps to a fresh start (0 = never)
    step_decay: float = 0.9  # paper: step multiplier after a step without progress
    norm: str = "l2"  # one of config.NORMS
    chunk_rows: int = 128  # rows per batch: bounds memory; results do not depend on it (tests/test_attack.py)
    precision: str = "float32"  # one of PRECISIONS: bf16 autocast in which search phases
    prune_every: int = 0  # successive halving: gradient steps between prunings of restarts (0 = never)
    prune_keep: float = 0.5  # the fraction of a row's live restarts each pruning keeps (the best ones)
    # transfer to a brain (black-box attacks on site models only; see `white_box`)
    input_diversity: float = 0.0  # probability per step that the gradient is taken on a random resize-and-pad
    momentum: float = 0.0  # decay of the accumulated normalised gradient the step follows (0 = plain gradient)

    def __post_init__(self) -> None:
        for name, allowed in (("precision", PRECISIONS), ("schedule", SCHEDULES), ("norm", NORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r}: use one of {', '.join(allowed)}")
        if not 0 < self.prune_keep <= 1:
            raise ValueError(f"prune_keep {self.prune_keep}: use a fraction in (0, 1]")
        if self.stall_steps < 0:
            raise ValueError(f"stall_steps {self.stall_steps}: use 0 (never jump) or a positive number of steps")
        if self.prune_every < 0:
            raise ValueError(f"prune_every {self.prune_every}: use 0 (never prune) or a positive number of steps")
        for name in ("input_diversity", "momentum"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} {getattr(self, name)}: use a number in [0, 1] (0 = off)")
        if self.transfer_aware and self.schedule == "paper":
            raise ValueError(
                "input_diversity and momentum need the geometric schedule; set them to 0 or schedule: geometric"
            )

    @property
    def transfer_aware(self) -> bool:
        """Whether the search is shaped for transfer to another model (input diversity, momentum)."""
        return self.input_diversity > 0 or self.momentum > 0

    def white_box(self) -> AttackSettings:
        """The same search without the transfer options: for attacks on the model that is
        itself measured (network units, the simulated brain), where nothing needs to transfer."""
        return replace(self, input_diversity=0.0, momentum=0.0)

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

    def passes_per_row(self, device: torch.device | None = None) -> tuple[int, int]:
        """(forward, backward) passes per row, all restarts included: one clean forward,
        then per live restart its gradient evaluations, and two final forwards per survivor
        (its two 8-bit roundings)."""
        survivors = Survivors.of(self, self.segments(device or torch.device("cpu")))
        backward = 0
        for segment in self.segments(device or torch.device("cpu")):
            backward += survivors.alive  # the segment's start
            for _ in range(segment.steps):
                backward += survivors.alive
                survivors.count_step()
        return 1 + backward + 2 * survivors.alive, backward

    def segments(self, device: torch.device) -> list[Segment]:
        """The search on `device`, as segments run one after another. Each segment starts
        with an objective evaluation at the best point so far, projected onto its ball.

        Two phases: the wide ball, then eps. Precision `mixed` searches in bf16 and refines
        in float32: with two phases the wide one is bf16; with one phase all but its last
        FLOAT32_REFINEMENT gradient evaluations are (at least half of them), and those resume
        from the best point in float32 (a start and the steps left, one step fewer, so the
        gradient budget stays `gradient_steps_per_restart`)."""
        precision = self.precision
        if precision == "auto":
            precision = "mixed" if bf16_is_native(device) else "float32"
        if self.phases == 2:
            wide = Segment(self.wide_ball_factor, self.steps, precision in ("mixed", "bf16"), 0)
            return [wide, Segment(1.0, self.steps, precision == "bf16", 0)]
        if precision == "mixed" and self.steps >= 3:
            searched = max(self.steps // 2, self.steps - FLOAT32_REFINEMENT)
            return [Segment(1.0, searched, True, 0), Segment(1.0, self.steps - searched - 1, False, searched + 1)]
        return [Segment(1.0, self.steps, precision == "bf16", 0)]

    def bf16_phases(self, device: torch.device) -> list[bool]:
        """Per search segment, whether it runs under bf16 autocast on `device`."""
        return [segment.bf16 for segment in self.segments(device)]

    def search_precision(self, device: torch.device) -> str:
        """The search segments' precisions on `device`, e.g. "bf16, float32" (recorded with results)."""
        return ", ".join("bf16" if bf16 else "float32" for bf16 in self.bf16_phases(device))


@dataclass(frozen=True)
class Segment:
    """A stretch of one restart's search: ball radius in units of eps, gradient steps,
    bf16 or not, and the index of its first step within its phase (for the step schedule)."""

    radius_factor: float
    steps: int
    bf16: bool
    first_step: int


@dataclass
class Survivors:
    """Successive halving of restarts: after every `every` gradient steps (never after the
    last), each row keeps the best `keep` fraction (rounded up) of its live restarts."""

    alive: int
    every: int
    keep: float
    last: int  # gradient steps per restart, over all segments
    done: int = 0

    @classmethod
    def of(cls, settings: AttackSettings, segments: Sequence[Segment]) -> Survivors:
        total = sum(segment.steps for segment in segments)
        return cls(settings.restarts, settings.prune_every, settings.prune_keep, total)

    def count_step(self) -> int:
        """Count one step; returns how many restarts stay alive after it."""
        self.done += 1
        if self.every and self.done % self.every == 0 and self.done < self.last:
            self.alive = max(1, math.ceil(self.alive * self.keep))
        return self.alive

    def after_step(self, score: Tensor) -> Tensor | None:
        """Count one step; where it prunes, the indices of the surviving row-restarts
        (rows' restarts adjacent, each row's best `score`s, in restart order)."""
        before = self.alive
        if self.count_step() == before:
            return None
        ranked = score.view(-1, before).argsort(dim=1, descending=True, stable=True)[:, : self.alive]
        offsets = torch.arange(ranked.shape[0], device=score.device).unsqueeze(1) * before
        return (ranked.sort(dim=1).values + offsets).flatten()


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
    delta_norm: Tensor  # ||delta|| in the attack's norm (L2 or L-infinity) after quantisation
    perturbed: Tensor  # uint8 (rows, C, H, W): the image that is shown
    objective: Tensor  # best direction * change seen before quantisation
    forward_passes: int  # per row, all restarts included
    backward_passes: int
