"""Reference attacks for the quality benchmark and its test: APGD-L2 (Croce & Hein, ICML 2020).

torchattacks' APGD only attacks the rows its classifier wrapper "classifies correctly"
and returns the last fooling iterate rather than the best point seen, so it cannot
stand in for the budget-free schedule here. This is APGD as the paper states it, on
the same objective as the engine (direction * (f(x + delta) - f(x)), per row):

- start on the sphere of radius eps (a random direction), step size 2 * eps;
- normalised-gradient step, projection onto the ball and the image box, then the
  momentum update x + 0.75 (z - x) + 0.25 (x - x_previous) (none on the first step);
- checkpoints w_j = ceil(p_j n) with p_0 = 0, p_1 = 0.22 and
  p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (`checkpoints`, in exact integers);
- at a checkpoint the step is halved, and the row restarted from its best point, where
  at most 75% of the steps since the last checkpoint raised the objective (the paper
  writes "fewer than"; its official code, like this one, counts "at most"), or where
  the step was not halved at the last checkpoint and the best value has not improved
  since (`halve_at_checkpoint`); a restart keeps the momentum term, as the paper's
  iterate x_previous is not reset;
- the best point seen, and the gradient there, are returned.

The shown image is chosen as ours chooses it (`attack.shown_image`: the better of the
best point's nearest 8-bit rounding and its rounding along the gradient there), so
every engine gets the same final step. One restart costs 1 + n_iter gradient evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from neuroattack.attacks.engine import _objective as objective_and_gradient
from neuroattack.attacks.engine import shown_image
from neuroattack.geometry import clamp_to_box, normalized, per_row, project_l2

ResponseFn = Callable[[Tensor, Tensor], Tensor]
STEP_WEIGHT = 0.75  # weight of the new gradient step; 1 - STEP_WEIGHT goes to the previous move (momentum)
RHO = 0.75  # halve the step where at most this fraction of the steps since the last checkpoint raised the objective
# p_j in hundredths, so that the schedule is exact: 0.22, then intervals shrinking by 0.03 down to 0.06
FIRST_POINT, INTERVAL_DECREASE, MIN_INTERVAL = 22, 3, 6


def checkpoints(n_iter: int) -> list[int]:
    """Iterations w_j = ceil(p_j * n_iter) after which APGD may halve its step."""
    points, previous, current = [], 0, FIRST_POINT
    while current <= 100:
        points.append(-(-current * n_iter // 100))  # ceil in integers: no float round-off
        previous, current = current, current + max(current - previous - INTERVAL_DECREASE, MIN_INTERVAL)
    return sorted({p for p in points if 0 < p <= n_iter})


def halve_at_checkpoint(values: Tensor, halved_last: Tensor, best_value: Tensor, best_at_last_mark: Tensor) -> Tensor:
    """Croce & Hein's two conditions, per row. `values` (window + 1, rows): the objective
    at the last checkpoint and at every iterate since; `halved_last`: whether the step was
    halved there; `best_value`, `best_at_last_mark`: the best objective now and then."""
    window = values.shape[0] - 1
    raised = (values[1:] > values[:-1]).sum(dim=0)
    oscillating = raised <= RHO * window
    stuck = ~halved_last & (best_value <= best_at_last_mark)
    return oscillating | stuck


def apgd_l2(
    response: ResponseFn,
    images: Tensor,
    target: Tensor,
    eps: Tensor,
    sign: Tensor,
    n_iter: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """One APGD-L2 restart per row. Returns the best perturbation seen (not quantised), the
    objective's gradient there, and the step size after every iteration (for tests)."""
    with torch.no_grad():
        clean = response(images, target)
    start = normalized(torch.randn(images.shape, generator=generator, device=images.device))
    x = clamp_to_box(images, project_l2(start * per_row(eps, start), eps))
    value, gradient = objective_and_gradient(response, images, x, target, clean, sign, False)
    best, best_value, best_gradient = x, value, gradient
    step = 2 * eps
    previous = x
    values = [value]
    steps = []
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
            halve = halve_at_checkpoint(torch.stack(values[last_mark:]), halved_last, best_value, best_at_last_mark)
            step = torch.where(halve, step / 2, step)
            # restart from the best point; `previous` stays, so the momentum term carries over
            x = torch.where(per_row(halve, x), best, x)
            gradient = torch.where(per_row(halve, x), best_gradient, gradient)
            halved_last, best_at_last_mark, last_mark = halve, best_value, i
        steps.append(step)
    return best, best_gradient, steps


def best_of_restarts(
    response: ResponseFn,
    images: Tensor,
    target: Tensor,
    eps: Tensor,
    sign: Tensor,
    restarts: int,
    run: Callable[[int], tuple[Tensor, Tensor]],
) -> Tensor:
    """Best shown change f(x + q) - f(x) per row over `restarts` calls of `run(restart)`,
    each returning (best perturbation, objective gradient there), every one rounded to
    8 bits by `attack.shown_image`, as ours is."""
    with torch.no_grad():
        clean = response(images, target)
    best_objective = torch.full_like(clean, -math.inf)
    best_change = torch.zeros_like(clean)
    for restart in range(restarts):
        delta, gradient = run(restart)
        change, _, _ = shown_image(response, images, target, eps, sign, clean, delta, gradient)
        better = sign * change > best_objective
        best_objective = torch.where(better, sign * change, best_objective)
        best_change = torch.where(better, change, best_change)
    return best_change


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
    """Best shown signed change over `restarts` APGD-L2 runs that share `evaluations`
    gradient evaluations per row in all; returns the change f(x + q) - f(x) per row."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    n_iter = evaluations // restarts - 1

    def run(restart: int) -> tuple[Tensor, Tensor]:
        delta, gradient, _ = apgd_l2(response, images, target, eps, sign, n_iter, generator)
        return delta, gradient

    return best_of_restarts(response, images, target, eps, sign, restarts, run)
