"""The geometry of a perturbation budget: L2 or L-infinity balls in [0, 1] pixel space.

Each norm knows how to measure a perturbation, project onto its ball, take the
steepest-ascent direction of a gradient, draw random starts and random directions,
and quantise a perturbed image to 8 bits without leaving the ball. Every tensor is
batched by row; radii are per row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from neuroattack.config import NORMS

LEVELS = 255.0  # 8-bit images
PROJECTION_SLACK = 1e-6  # keeps float32 round-off from pushing a norm past eps


def per_row(values: Tensor, like: Tensor) -> Tensor:
    """(rows,) values shaped to broadcast against `like` (rows, ...)."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def flat_norm(x: Tensor) -> Tensor:
    """Per-row L2 norm."""
    norm: Tensor = x.flatten(1).norm(dim=1)
    return norm


def project_l2(delta: Tensor, radius: Tensor) -> Tensor:
    """Scale rows whose L2 norm exceeds `radius` back onto the sphere."""
    norm = flat_norm(delta).clamp_min(1e-12)
    factor = torch.clamp(radius * (1 - PROJECTION_SLACK) / norm, max=1.0)
    return delta * per_row(factor, delta)


def normalized(gradient: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return gradient / per_row(flat_norm(gradient).clamp_min(1e-12), gradient)


def clamp_to_box(images: Tensor, delta: Tensor) -> Tensor:
    """The part of delta that keeps images + delta inside [0, 1]."""
    return (images + delta).clamp(0.0, 1.0) - images


def random_in_ball(shape: torch.Size, radius: Tensor, generator: torch.Generator) -> Tensor:
    """Points uniform inside L2 balls (per-row radius): direction x radius x U^(1/d)."""
    direction = torch.randn(shape, generator=generator, device=generator.device)
    dims = direction[0].numel()
    scale = radius * torch.rand(shape[0], generator=generator, device=generator.device) ** (1.0 / dims)
    return normalized(direction) * per_row(scale, direction)


class Norm(ABC):
    """One budget geometry: `L2` and `LINF` below are the two there are (config.NORMS names them)."""

    name: ClassVar[str]

    @abstractmethod
    def measure(self, delta: Tensor) -> Tensor:
        """Per-row norm of a perturbation."""

    @abstractmethod
    def project(self, delta: Tensor, radius: Tensor) -> Tensor:
        """The nearest point of the ball of per-row `radius`."""

    @abstractmethod
    def ascent(self, gradient: Tensor) -> Tensor:
        """The unit-norm direction of steepest ascent."""

    @abstractmethod
    def random_start(self, shape: torch.Size, generator: torch.Generator) -> Tensor:
        """Points uniform inside the unit ball (rows, ...)."""

    def random_direction(self, shape: torch.Size, generator: torch.Generator) -> Tensor:
        """Directions of unit norm, uniform over the sphere (L2) or over the box's corners (L-infinity)."""
        direction = torch.randn(shape, generator=generator, device=generator.device)
        return self.ascent(direction)

    @abstractmethod
    def quantize(self, images: Tensor, delta: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """The 8-bit image shown for `images + delta` whose quantised perturbation still has
        norm <= eps. `images` must lie on the 8-bit grid. Returns (levels, quantised delta)."""

    @abstractmethod
    def quantize_along(self, images: Tensor, delta: Tensor, eps: Tensor, gradient: Tensor) -> tuple[Tensor, Tensor]:
        """Like `quantize`, but each pixel of `images + delta` is rounded up or down to the
        8-bit level its `gradient` favours (steepest ascent of the objective's linear
        approximation), then, where that leaves the ball, the roundings that buy the least
        ascent per unit of norm are turned back toward the clean image. Returns (levels,
        quantised delta) with norm <= eps."""


class L2Norm(Norm):
    """The L2 ball."""

    name = "l2"

    def measure(self, delta: Tensor) -> Tensor:
        return flat_norm(delta)

    def project(self, delta: Tensor, radius: Tensor) -> Tensor:
        return project_l2(delta, radius)

    def ascent(self, gradient: Tensor) -> Tensor:
        """g / ||g||_2."""
        return normalized(gradient)

    def random_start(self, shape: torch.Size, generator: torch.Generator) -> Tensor:
        return random_in_ball(shape, torch.ones(shape[0], device=generator.device), generator)

    def quantize(self, images: Tensor, delta: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        return quantize(images, delta, eps)

    def quantize_along(self, images: Tensor, delta: Tensor, eps: Tensor, gradient: Tensor) -> tuple[Tensor, Tensor]:
        clean_levels, favoured, other = _favoured_rounding(images, delta, gradient)
        change = _fit_l2(favoured, other, gradient, eps * LEVELS)
        # float round-off at a level's edge could leave a row a hair outside: nearest rounding there
        outside = per_row(flat_norm(change) > eps * LEVELS, change)
        change = torch.where(outside, self.quantize(images, delta, eps)[0] - clean_levels, change)
        levels = clean_levels + change
        return levels, change / LEVELS


class LinfNorm(Norm):
    """The L-infinity ball (a box around the image)."""

    name = "linf"

    def measure(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).abs().amax(dim=1)

    def project(self, delta: Tensor, radius: Tensor) -> Tensor:
        bound = per_row(radius * (1 - PROJECTION_SLACK), delta)
        return torch.maximum(torch.minimum(delta, bound), -bound)

    def ascent(self, gradient: Tensor) -> Tensor:
        """sign(g)."""
        return torch.sign(gradient)

    def random_start(self, shape: torch.Size, generator: torch.Generator) -> Tensor:
        return 2 * torch.rand(shape, generator=generator, device=generator.device) - 1

    def quantize(self, images: Tensor, delta: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        clean_levels = torch.round(images * LEVELS)
        change = torch.round((images + delta).clamp(0, 1) * LEVELS) - clean_levels
        levels = clean_levels + _within_steps(change, eps)
        return levels, (levels - clean_levels) / LEVELS

    def quantize_along(self, images: Tensor, delta: Tensor, eps: Tensor, gradient: Tensor) -> tuple[Tensor, Tensor]:
        clean_levels, favoured, _ = _favoured_rounding(images, delta, gradient)
        change = _within_steps(favoured, eps)
        levels = clean_levels + change
        return levels, change / LEVELS


def _within_steps(change: Tensor, eps: Tensor) -> Tensor:
    """Integer level changes (rows, ...) clipped to the whole 8-bit steps within per-row `eps`."""
    steps = per_row(torch.floor(eps * LEVELS + 1e-4), change)
    return torch.maximum(torch.minimum(change, steps), -steps)


def _favoured_rounding(images: Tensor, delta: Tensor, gradient: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(clean levels, the level change of `images + delta` rounded the way `gradient` favours,
    the change rounded the other way) of every pixel."""
    clean_levels = torch.round(images * LEVELS)
    target = (images + delta).clamp(0, 1) * LEVELS - clean_levels
    up, down = torch.ceil(target - 1e-4), torch.floor(target + 1e-4)
    favoured = torch.where(gradient > 0, up, torch.where(gradient < 0, down, torch.round(target)))
    return clean_levels, favoured, torch.where(favoured == up, down, up)


def _fit_l2(favoured: Tensor, other: Tensor, gradient: Tensor, radius: Tensor) -> Tensor:
    """`favoured` integer changes (rows, ...) brought inside the L2 ball of `radius` (levels)
    by switching pixels to `other` (one level closer to 0) in the order of least ascent lost
    per unit of squared norm saved. Switching every such pixel rounds toward 0, which fits
    whenever the unrounded change did."""
    rows = favoured.shape[0]
    flat, alternative = favoured.flatten(1), other.flatten(1)
    saving = flat.square() - alternative.square()
    switchable = saving > 0
    cost = torch.where(switchable, gradient.flatten(1).abs() / saving.clamp_min(1), torch.inf)
    order = cost.argsort(dim=1)
    saving_sorted = torch.where(switchable, saving, 0).gather(1, order)
    excess = flat.square().sum(dim=1) - radius.square() * (1 - PROJECTION_SLACK)
    # switch a pixel while the savings before it still leave the excess uncovered
    switch_sorted = saving_sorted.cumsum(dim=1) - saving_sorted < excess.view(rows, 1)
    switch = torch.zeros_like(switch_sorted).scatter(1, order, switch_sorted) & switchable
    return torch.where(switch, alternative, flat).view_as(favoured)


L2 = L2Norm()
LINF = LinfNorm()


def norm_named(name: str) -> Norm:
    """The norm config.NORMS names `name` (`l2` or `linf`)."""
    for norm in (L2, LINF):
        if norm.name == name:
            return norm
    raise ValueError(f"norm {name!r}: use one of {', '.join(NORMS)}")


def quantize(images: Tensor, delta: Tensor, eps: Tensor, iterations: int = 16) -> tuple[Tensor, Tensor]:
    """8-bit image nearest to images + s * delta with the largest s in [0, 1] whose
    quantised perturbation has L2 norm <= eps."""
    clean_levels = torch.round(images * LEVELS)

    def levels_at(scale: Tensor) -> Tensor:
        return torch.round((images + delta * per_row(scale, delta)).clamp(0, 1) * LEVELS)

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
