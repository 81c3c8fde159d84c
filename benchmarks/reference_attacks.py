"""Reference attacks for the quality benchmark and its test: APGD-L2 (Croce & Hein, ICML 2020).

torchattacks' APGD only attacks the rows its classifier wrapper "classifies correctly"
and returns the last fooling iterate rather than the best point seen, so it cannot
stand in for the budget-free schedule here. This is APGD as the paper states it, on
the same objective as the engine (direction * (f(x + delta) - f(x)), per row):

- start on the sphere of radius eps (a random direction), step size 2 * eps;
- normalised-gradient step, projection onto the ball and the image box, then the
  momentum update x + 0.75 (z - x) + 0.25 (x - x_previous) (none on the first step);
- checkpoints at 0.22 n, then intervals shrinking by 0.03 n down to 0.06 n: the step is
  halved, and the row restarted from its best point, where fewer than 75% of the steps
  since the last checkpoint raised the objective, or where the step was not halved at
  the last checkpoint and the best value has not improved since;
- the best point seen is returned.

One restart costs 1 + n_iter gradient evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from neuroattack.attack import _objective as objective_and_gradient
from neuroattack.geometry import LEVELS, clamp_to_box, normalized, per_row, project_l2, quantize

ResponseFn = Callable[[Tensor, Tensor], Tensor]
STEP_WEIGHT = 0.75  # weight of the new gradient step; 1 - STEP_WEIGHT goes to the previous move (momentum)
RHO = 0.75  # halve the step where at most this fraction of the steps since the last checkpoint raised the objective


def checkpoints(n_iter: int) -> list[int]:
    """Iterations after which APGD may halve its step (Croce & Hein's p_j schedule)."""
    points, previous, current = [], 0.0, 0.22
    while current <= 1.0:
        points.append(math.ceil(current * n_iter))
        previous, current = current, current + max(current - previous - 0.03, 0.06)
    return sorted({p for p in points if 0 < p <= n_iter})


def apgd_l2(
    response: ResponseFn,
    images: Tensor,
    target: Tensor,
    eps: Tensor,
    sign: Tensor,
    n_iter: int,
    generator: torch.Generator,
) -> Tensor:
    """One APGD-L2 restart per row; returns the best perturbation seen (not quantised)."""
    with torch.no_grad():
        clean = response(images, target)
    start = normalized(torch.randn(images.shape, generator=generator, device=images.device))
    x = clamp_to_box(images, project_l2(start * per_row(eps, start), eps))
    value, gradient = objective_and_gradient(response, images, x, target, clean, sign, False)
    best, best_value, best_gradient = x, value, gradient
    step = 2 * eps
    previous = x
    values = [value]
    marks = checkpoints(n_iter)
    last_mark, halved_last = 0, torch.ones_like(value, dtype=torch.bool)
    best_at_last_mark = best_value
    for i in range(1, n_iter + 1):
        weight = STEP_WEIGHT if i > 1 else 1.0
        z = clamp_to_box(images, project_l2(x + normalized(gradient) * per_row(step, x), eps))
        z = clamp_to_box(images, project_l2(x + weight * (z - x) + (1 - weight) * (x - previous), eps))
        previous, x = x, z
        value, gradient = objective_and_gradient(response, images, x, target, clean, sign, False)
        better = value > best_value
        best = torch.where(per_row(better, x), x, best)
        best_gradient = torch.where(per_row(better, x), gradient, best_gradient)
        best_value = torch.where(better, value, best_value)
        values.append(value)
        if i in marks:
            window = i - last_mark
            raised = torch.stack([values[j] > values[j - 1] for j in range(last_mark + 1, i + 1)]).float().sum(0)
            halve = (raised <= RHO * window) | (~halved_last & (best_value <= best_at_last_mark))
            step = torch.where(halve, step / 2, step)
            x = torch.where(per_row(halve, x), best, x)
            gradient = torch.where(per_row(halve, x), best_gradient, gradient)
            previous = torch.where(per_row(halve, x), best, previous)
            halved_last, best_at_last_mark, last_mark = halve, best_value, i
    return best


def apgd_change(
    response: ResponseFn,
    images: Tensor,
    target: Tensor,
    eps: Tensor,
    sign: Tensor,
    evaluations: int,
    restarts: int,
    seed: int,
) -> Tensor:
    """Best quantised signed change over `restarts` APGD-L2 runs that share `evaluations`
    gradient evaluations per row in all; returns the change f(x + delta) - f(x) per row."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    n_iter = evaluations // restarts - 1
    with torch.no_grad():
        clean = response(images, target)
    best_objective = torch.full_like(clean, -math.inf)
    best_change = torch.zeros_like(clean)
    for _ in range(restarts):
        delta = apgd_l2(response, images, target, eps, sign, n_iter, generator)
        levels, _ = quantize(images, delta, eps)
        with torch.no_grad():
            change = response(levels / LEVELS, target) - clean
        better = sign * change > best_objective
        best_objective = torch.where(better, sign * change, best_objective)
        best_change = torch.where(better, change, best_change)
    return best_change
