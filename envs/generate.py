"""Write the conda environments of the workflow's rules (envs/*.yaml) from envs/constraints.txt.

    .venv/bin/python envs/generate.py          # rewrite envs/*.yaml and envs/*.post-deploy.sh
    .venv/bin/python envs/generate.py --check  # exit 1 if they differ from what it would write

constraints.txt is the one source of truth: an environment names the packages its rules' scripts
import (KINDS below); the generator adds their dependencies (read from the metadata of the
packages installed in this virtual environment, which `make` installs from constraints.txt) and
pins every one to its version in constraints.txt. So `--sdm conda` runs the rules with the
versions `make` installs. The environments target Linux x86_64 with Python 3.11 (the markers of
the dependencies are evaluated for that platform), the platform CI and the clusters run on.

Conda installs Python and pip; every package comes from PyPI through the environment's pip
section, under the same names and versions as in the virtual environment. The neuroattack
package itself is installed by <kind>.post-deploy.sh (Snakemake runs it once, in the new
environment) with `pip install --no-deps`: from NEUROATTACK_SOURCE, which workflow/Snakefile
sets to the repository of a local copy of the workflow (installed editable, as `make` does);
a user of a remote copy sets it to a pip requirement, e.g. a git URL with a tag.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ENVS = Path(__file__).resolve().parent
CONSTRAINTS = ENVS / "constraints.txt"
PYTHON = "3.11"
# The platform the environments are resolved for (markers of dependencies evaluated against it).
TARGET = {
    "python_version": PYTHON,
    "python_full_version": f"{PYTHON}.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
# One environment per kind of job: the packages its rules' scripts import (directly or through
# neuroattack's modules), and why. Only the computing stages use torch: neuroattack.runtime
# imports it inside the functions that need it, and the download and figure jobs never load
# it (tests/test_figures.py checks the figure scripts' imports), so their environments hold no
# torch, no CUDA wheels, and none of torchvision or scikit-learn.
KINDS: dict[str, tuple[str, list[str]]] = {
    "download": (
        "rule download: fetches public inputs (neuroattack.download, neuroattack.runtime)",
        ["numpy", "pandas", "xarray", "tqdm"],
    ),
    "compute": (
        "the computing stages: stimuli, training, features, site models, attacks, brain, loop, screening",
        [
            "torch",
            "torchvision",
            "numpy",
            "scipy",
            "pandas",
            "xarray",
            "netCDF4",
            "scikit-learn",
            "scikit-image",
            "timm",
            "safetensors",
            "tqdm",
        ],
    ),
    "figures": (
        "figures 1-8 and the s~ table of the report (neuroattack.figures, neuroattack.analysis, neuroattack.io)",
        ["numpy", "scipy", "pandas", "xarray", "netCDF4", "matplotlib", "seaborn", "tqdm"],
    ),
}
# What conda's python and pip bring along (not pinned in constraints.txt, which `make` installs with pip).
INSTALLER = {"pip", "setuptools", "wheel"}
POST_DEPLOY = """\
#!/usr/bin/env bash
# Written by envs/generate.py. Snakemake runs this once in the new environment {kind}.yaml:
# it installs the neuroattack package (its dependencies are the environment's pins).
# NEUROATTACK_SOURCE: the repository's folder (workflow/Snakefile sets it for a local copy of
# the workflow; installed editable, as `make` does) or a pip requirement such as a git URL.
set -euo pipefail
source="${{NEUROATTACK_SOURCE:?the neuroattack repository or a pip requirement of it (README.md)}}"
if [ -d "$source" ]; then
    python -m pip install --no-deps --editable "$source"
else
    python -m pip install --no-deps "$source"
fi
"""


def constraints() -> dict[str, tuple[str, str]]:
    """{normalized name: (name as written, version)} of envs/constraints.txt."""
    pins: dict[str, tuple[str, str]] = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"{CONSTRAINTS}: not an exact pin: {raw!r}")
        pins[canonicalize_name(name)] = (name.strip(), version.strip())
    return pins


def closure(roots: list[str], pins: dict[str, tuple[str, str]]) -> dict[str, str | None]:
    """{normalized name: marker or None} of `roots` and everything they require on TARGET
    (the marker of the requirement that first reached a package, None when unconditional)."""
    found: dict[str, str | None] = {}
    queue: list[tuple[str, str | None]] = [(root, None) for root in roots]
    while queue:
        name, marker = queue.pop(0)
        key = canonicalize_name(name)
        if key in found:
            if marker is None:
                found[key] = None  # needed unconditionally through another path
            continue
        if key in INSTALLER:
            continue
        if key not in pins:
            raise SystemExit(f"{name} is needed by an environment but not pinned in {CONSTRAINTS}")
        found[key] = marker
        for text in metadata.requires(pins[key][0]) or []:
            requirement = Requirement(text)
            condition = requirement.marker
            if condition is not None and not condition.evaluate(TARGET):
                continue
            edge = str(condition) if condition is not None and not _always(condition) else None
            queue.append((requirement.name, marker if edge is None else edge))
    return found


def _always(marker: Marker) -> bool:
    """Whether a marker holds on every platform an environment is made for (only python_version)."""
    return "platform" not in str(marker) and "sys_" not in str(marker) and "os_name" not in str(marker)


def environment(kind: str) -> str:
    why, roots = KINDS[kind]
    pins = constraints()
    lines = [
        f"# Written by envs/generate.py from envs/constraints.txt: do not edit. {why[0].upper()}{why[1:]}.",
        f"# Pins: {', '.join(roots)} and their dependencies; neuroattack itself: {kind}.post-deploy.sh.",
        f"name: neuroattack-{kind}",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
        f"  - python ={PYTHON}",
        "  - pip",
        "  - pip:",
    ]
    for key, marker in sorted(closure(roots, pins).items()):
        name, version = pins[key]
        pin = f"{name}=={version}" + (f"; {marker}" if marker else "")
        lines.append(f"      - '{pin}'")
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    files = {}
    for kind in KINDS:
        files[ENVS / f"{kind}.yaml"] = environment(kind)
        files[ENVS / f"{kind}.post-deploy.sh"] = POST_DEPLOY.format(kind=kind)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 on a difference")
    args = parser.parse_args()
    stale = []
    for path, text in expected_files().items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
            if path.suffix == ".sh":
                path.chmod(0o755)
    if args.check and stale:
        print(f"out of date with {CONSTRAINTS.name} (run envs/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    print("envs: " + (", ".join(stale) + (" rewritten" if stale else "") if stale else "up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
