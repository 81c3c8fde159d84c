"""neuroattack: adversarial sensitivity of biological and artificial visual neurons.

The Python entry point (defined in `neuroattack.api`, loaded on first use so that importing
the package, as the workflow's DAG does, loads no torch):

    sensitivity(model, images, eps, ...)  s~(eps) of a model object's units, as the workflow gives it
    load_run(results)                     a finished run's Figure 1 populations
    plot_sensitivity(*sources)            Figure 1 of any of these, side by side
    AttackSettings, default_attack()      the attack's settings; the workflow's defaults
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "sensitivity": "neuroattack.api",
    "load_run": "neuroattack.api",
    "plot_sensitivity": "neuroattack.api",
    "default_attack": "neuroattack.api",
    "AttackSettings": "neuroattack.attacks.settings",
}

__all__ = ["AttackSettings", "__version__", "default_attack", "load_run", "plot_sensitivity", "sensitivity"]


def __getattr__(name: str) -> Any:
    """The API's names, imported from their modules when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'neuroattack' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
