"""What the workflow knows before any job runs: the config's cross-checks, the run's plan, its
seeds, downloads and recorded rounds; a DAG that builds without torch, scikit-learn or xarray,
and a library whose modules import each other without a cycle."""

from __future__ import annotations

import ast
import copy
import graphlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from workflow_helpers import REPO, SNAKEMAKE, run_environment

from neuroattack import artifacts, config_checks, downloaded_files, plan, recorded_rounds, seeds
from neuroattack.config import KnownStimuli, known_stimuli, layers_by_depth, split_view
from neuroattack.jobs import network_layer

# What the library's jobs need and the DAG must not load (snakemake itself imports numpy and pandas).
HEAVY = ("torch", "sklearn", "xarray")


def tiny() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    return config


def real_recordings(config: dict[str, Any], perturbed: list[str]) -> dict[str, Any]:
    changed = copy.deepcopy(config)
    changed["recordings"] = {"source": "table", "path": "rig.csv", "perturbed": perturbed}
    changed["stimuli"] = {"source": "folder", "path": "images", "resolution": 16}
    return changed


def test_the_shipped_configs_have_no_problem() -> None:
    for name in ("config.yaml", "tiny.yaml", "paper.yaml"):
        config = yaml.safe_load((REPO / "config" / name).read_text())
        assert config_checks.config_problems(config, known_stimuli(config["stimuli"])) == [], name


def test_every_cross_check_names_its_key_and_what_to_do(tmp_path: Path) -> None:
    config = tiny()
    config["loop"]["ensemble"] = ["standard", "standard", "nowhere"]
    config["surrogate"]["network"] = "alexnet"
    config["screening"]["images"] = config["attack"]["images"] + 1
    config["preference"]["categories"] = 2
    del config["training"]
    problems = config_checks.config_problems(config, KnownStimuli(2, 2, "two photographs"))
    expected = [
        r"^loop\.ensemble = \['standard', 'standard', 'nowhere'\] names networks more than once or outside",
        r"^surrogate\.network = 'alexnet' is not one of networks \(.*\); name a network of the config",
        r"^key 'training' is required because networks \[.*\] are trained",
        r"^key 'training' is required because recordings\.source is 'simulated'",
        r"^attack\.images = 3, but the stimulus set has only 2 images \(two photographs\); lower attack\.images "
        r"to at most 2$",
        r"^preference\.categories = 2, but the stimulus set has 2 categories \(two photographs\); use 1 to 1 "
        r"\(one category stays out as the preferred one\)$",
        r"^screening\.images = 4 is more than attack\.images = 3; lower it to at most 3$",
    ]
    assert len(problems) == len(expected), problems
    for pattern in expected:
        assert any(re.search(pattern, problem) for problem in problems), (pattern, problems)


def test_attack_layers_add_one_depth_view_per_network_and_layer_in_depth_order() -> None:
    config = tiny()
    config["networks"]["standard"]["layer"] = "stages.1"
    config["attack"]["layers"] = ["stages.0", "stages.1", "stages.0"]
    run = plan.run_plan(config)
    assert run.depth_views == ("standard@stages.0", "robust_eps1@stages.0", "robust_eps1@stages.1")
    assert layers_by_depth(config) == {  # a network's own layer where the list names it, else last
        "standard": ["stages.0", "stages.1"],
        "robust_eps1": ["stages.0", "stages.1", "penultimate"],
    }
    assert split_view("robust_eps1@stages.1") == ("robust_eps1", "stages.1")
    assert split_view("robust_eps1") == ("robust_eps1", None)
    assert network_layer(config, "robust_eps1@stages.1") == "stages.1"
    assert network_layer(config, "standard") == "stages.1" and network_layer(config, "robust_eps1") == "penultimate"
    config["attack"]["layers"] = {"robust_eps1": ["stem"], "alexnet": ["features.3"]}
    assert plan.run_plan(config).depth_views == ("robust_eps1@stem",)
    problems = config_checks.config_problems(config, known_stimuli(config["stimuli"]))
    assert len(problems) == 1 and problems[0].startswith("attack.layers names ['alexnet'], which are not networks")
    del config["attack"]["layers"]
    assert plan.run_plan(config).depth_views == () and layers_by_depth(config) == {}


def test_an_auto_layer_scores_every_network_that_may_attack_at_the_listed_layers() -> None:
    config = tiny()
    config["surrogate"].update({"layer": "auto", "layers": ["stages.0", "penultimate"]})
    run = plan.run_plan(config)
    assert run.auto_layer and run.layer_views == ("robust_eps1@stages.0",)  # the named surrogate's; own left out
    config["loop"]["ensemble"] = ["standard"]
    assert plan.run_plan(config).layer_views == ("robust_eps1@stages.0", "standard@stages.0")
    config["surrogate"]["network"] = "auto"
    config["loop"]["ensemble"] = None
    config["surrogate"]["layers"] = {"standard": ["stem"]}
    config["attack"]["layers"] = ["stem"]
    run = plan.run_plan(config)
    assert run.layer_views == ("standard@stem",) and run.views == ("standard@stem", "robust_eps1@stem")
    config["surrogate"]["layers"] = {"robust_eps1": ["penultimate"]}
    problems = config_checks.config_problems(config, known_stimuli(config["stimuli"]))
    assert problems == [
        "surrogate.layer is auto but surrogate.layers names no layer besides the surrogate's own; list the "
        "candidate layers in surrogate.layers (e.g. [stages.1, stages.2]), or leave surrogate.layer out"
    ]


def test_a_simulated_brain_needs_the_embedded_stimuli_and_no_time_window() -> None:
    config = tiny()
    config["stimuli"] = {"source": "folder", "path": "images", "resolution": 16}
    config["recordings"]["time_window_ms"] = [70, 170]
    assert config_checks.config_problems(config) == [
        "recordings.source 'simulated' needs stimuli.source 'embedded' (the brain is calibrated on them)",
        "recordings.time_window_ms selects a time bin of real recordings; the simulated brain has none",
    ]


def test_real_recordings_name_every_round_table_that_is_missing_or_too_many(tmp_path: Path) -> None:
    recorded = tmp_path / "round1.csv"
    recorded.write_text("stimulus_id,neuroid_id,repetition,response\n")
    missing = tmp_path / "round2.csv"
    config = real_recordings(tiny(), [str(recorded), str(missing), str(recorded)])
    assert config_checks.config_problems(config) == [
        f"recordings.perturbed lists 3 tables but loop.rounds = {config['loop']['rounds']}; "
        "give one table per round, or raise loop.rounds",
        f"recordings.perturbed entry 2 names {missing}, which does not exist; "
        "give the path of that round's recordings table",
    ]
    config["surrogate"]["network"] = "auto"
    config["screening"]["criterion"] = "transfer"
    config["recordings"]["perturbed"] = str(recorded)  # one path: round 1's table
    assert [problem.split(" ")[0] for problem in config_checks.config_problems(config)] == ["screening.criterion"]


def test_every_download_has_one_local_name_from_its_entry() -> None:
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    files = downloaded_files.downloads(config)
    checkpoints = [name for name, spec in config["networks"].items() if "checkpoint" in spec]
    assert len(files) == 3 + len(checkpoints)  # the stimulus CSV and ZIP, the assembly, every checkpoint
    assert files["brainscore/stimulus_hvm-public.csv"] == ["stimuli", "csv"]
    assert files[f"checkpoints/{checkpoints[0]}.ckpt"] == ["networks", checkpoints[0], "checkpoint"]
    config["recordings"]["assembly"]["name"] = "stimulus_hvm-public.csv"
    assert config_checks.config_problems(config) == [
        "recordings.assembly and stimuli.csv would both be downloaded to brainscore/stimulus_hvm-public.csv; "
        "give one of them a different 'name'"
    ]


def test_the_first_unrecorded_round_and_what_the_lab_is_told() -> None:
    assert recorded_rounds.first_unrecorded_round([], 3) == 1
    assert recorded_rounds.first_unrecorded_round(["a.csv", "b.csv"], 3) == 3
    assert recorded_rounds.first_unrecorded_round(["a.csv", "b.csv", "c.csv"], 3) is None
    assert recorded_rounds.perturbed_tables({"perturbed": "a.csv"}) == ["a.csv"]
    assert recorded_rounds.perturbed_tables({"perturbed": None}) == []
    message = recorded_rounds.missing_round_message(2, "results/rig/round2/stimuli.csv", "columns x, y")
    assert "results/rig/round2/stimuli.csv" in message and "recordings.perturbed" in message
    assert "entry 2" in message and "columns x, y" in message


@pytest.mark.parametrize("config_file", ["config/config.yaml", "config/paper.yaml", "config/tiny.yaml"])
def test_every_seed_stream_of_a_run_has_a_seed_of_its_own(config_file: str) -> None:
    config = yaml.safe_load((REPO / config_file).read_text())
    drawn = seeds.run_seeds(config)
    assert len(drawn) >= len(seeds.SEED_STREAMS) + 2 * config["attack"]["images"]
    shared = {value: [name for name, other in drawn.items() if other == value] for value in drawn.values()}
    assert len(set(drawn.values())) == len(drawn), {v: n for v, n in shared.items() if len(n) > 1}
    assert all(0 <= value < 2**32 for value in drawn.values())  # scikit-learn's random_state range


def test_the_rules_draw_from_named_streams_only_and_every_stream_is_drawn() -> None:
    text = "\n".join(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))
    used = set(re.findall(r'\bseed\("(\w+)"', text))
    assert used == set(seeds.SEED_STREAMS)
    # no seed derived by arithmetic in a rule, a rule script or the library (`seed + 1`)
    sources = [*(REPO / "workflow").rglob("*.smk"), *(REPO / "workflow" / "scripts").glob("*.py")]
    sources += list((REPO / "src" / "neuroattack").rglob("*.py"))
    derived = [str(p.relative_to(REPO)) for p in sources if re.search(r"seed\w*\]? *[+*] *\w", p.read_text())]
    assert derived == []


def test_a_stream_seed_depends_on_master_stream_and_keys_only() -> None:
    assert seeds.stream_seed(0, "attack_starts", 1, 2) == seeds.stream_seed(0, "attack_starts", 1, 2)
    assert seeds.stream_seed(0, "attack_starts", 1, 2) != seeds.stream_seed(0, "attack_starts", 2, 1)
    assert seeds.stream_seed(0, "units") != seeds.stream_seed(1, "units")
    with pytest.raises(KeyError, match="no seed stream 'unit'"):
        seeds.stream_seed(0, "unit")


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level packages in the `python -X importtime` log."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/tiny.yaml", "config/paper.yaml"])
def test_building_the_dag_imports_no_torch_sklearn_or_xarray(tmp_path: Path, configfile: str) -> None:
    command = [sys.executable, "-X", "importtime", SNAKEMAKE, "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(tmp_path), "--configfile", str(REPO / configfile), "--dry-run", "--cores", "1"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=run_environment(), check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    modules = imported_modules(run.stderr)
    assert "neuroattack" in modules and "snakemake" in modules  # the log is read right
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_every_path_comes_from_the_artifact_registry() -> None:
    netcdf = {name for name, path in artifacts.PATHS.items() if path.endswith(".nc")}
    kinds_of = {name: [kind for kind, spec in artifacts.INTERMEDIATES.items() if name in spec.paths] for name in netcdf}
    assert all(len(kinds) == 1 for kinds in kinds_of.values()), kinds_of  # each netCDF artifact has one schema
    listed = {name for spec in artifacts.INTERMEDIATES.values() for name in spec.paths}
    assert listed == netcdf
    rules = "\n".join(path.read_text() for path in (REPO / "workflow").rglob("*.smk"))
    assert re.findall(r'"[^"\n]+\.(?:nc|png|pdf|html|log)"', rules) == []  # no path spelled out in a rule file
    assert (
        artifacts.artifact_path("out", "round_attack", round=2) == "out/{subject}rounds/round2/attacks/image{index}.nc"
    )
    assert (
        artifacts.artifact_path("out", "brain", subject="subjects/standard/") == "out/subjects/standard/brain/brain.nc"
    )
    with pytest.raises(KeyError, match="no artifact 'attacks'"):
        artifacts.artifact_path("out", "attacks")


@pytest.mark.parametrize(
    "script", ["attack_units", "attack_round", "brain_white_box", "figure1", "train_network", "features"]
)
def test_attack_training_and_figure_jobs_load_neither_scikit_learn_nor_torchvision(script: str) -> None:
    # scikit-learn is for fitting, torchvision for ImageNet networks: the jobs that make most of
    # a run (attacks, training, figures) start without them
    source = (REPO / "workflow" / "scripts" / f"{script}.py").read_text()
    tree = ast.parse(source)
    imports = "\n".join(
        ast.get_source_segment(source, node) or ""
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    )
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", imports], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    modules = imported_modules(run.stderr)
    assert "neuroattack" in modules
    assert not modules & {"sklearn", "torchvision"}, sorted(modules & {"sklearn", "torchvision"})


# --- the library's structure --------------------------------------------------------------

LIBRARY = REPO / "src" / "neuroattack"
# What the Snakefile and its rules import (every job parses them again): the standard library only.
RUN_STATE_MODULES = (
    "neuroattack.artifacts",
    "neuroattack.config",
    "neuroattack.config_checks",
    "neuroattack.downloaded_files",
    "neuroattack.jobs",
    "neuroattack.plan",
    "neuroattack.recorded_rounds",
    "neuroattack.remote",
    "neuroattack.seeds",
)


def library_modules() -> dict[str, ast.Module]:
    """Every module of the library by dotted name, parsed."""
    modules = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text(), str(path))
    return modules


def imported_names(tree: ast.Module) -> set[str]:
    """Every module an import anywhere in `tree` names (at the top, in a function, under
    TYPE_CHECKING alike), and each `from x import y` as both x and x.y."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, "the library imports by absolute names only"
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def import_graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    """{module: the library's modules it imports}; `from package import module` counts as the
    module only (the package's __init__ is not what it uses)."""
    graph = {}
    for name, tree in modules.items():
        named = imported_names(tree) & set(modules)
        graph[name] = {module for module in named if not any(other.startswith(f"{module}.") for other in named)}
    return graph


def test_no_modules_of_the_library_import_each_other_even_through_others() -> None:
    graph = import_graph(library_modules())
    assert "neuroattack.networks.build" in graph["neuroattack.networks.features"]  # the graph is read right
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


# The library's rooms, each importing only from the rooms before it (and the top-level plumbing),
# as README.md's layout section lists them.
ROOMS = ("data", "networks", "brain", "attacks", "analysis", "loop", "figures")
PUBLIC_API = ("neuroattack", "neuroattack.api")  # the façade over every room


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in ROOMS else None


def test_every_room_imports_only_from_the_rooms_before_it() -> None:
    upward = []
    for module, imported in import_graph(library_modules()).items():
        room = room_of(module)
        for other in imported:
            other_room = room_of(other)
            if room is None and other_room is not None and module not in PUBLIC_API:
                upward.append(f"{module} (plumbing) -> {other}")
            elif room and other_room and ROOMS.index(other_room) > ROOMS.index(room):
                upward.append(f"{module} -> {other}")
    assert not upward, "imports up the rooms' order (README.md, 'Layout'): " + "; ".join(sorted(upward))


def test_the_run_state_modules_import_the_standard_library_only() -> None:
    modules = library_modules()
    graph = import_graph(modules)
    reached, stack = set(), list(RUN_STATE_MODULES)
    while stack:
        module = stack.pop()
        if module not in reached:
            reached.add(module)
            stack.extend(graph[module])
    assert reached <= {"neuroattack", *RUN_STATE_MODULES}, sorted(reached - set(RUN_STATE_MODULES))
    outside = {name.split(".")[0] for module in reached for name in imported_names(modules[module])}
    outside -= {"neuroattack", "jsonschema", *sys.stdlib_module_names}  # config validates with jsonschema
    assert outside == set(), sorted(outside)


def constant_collections(tree: ast.Module) -> Iterator[tuple[str, object]]:
    """(name, value) of every module-level constant (an upper-case name) bound to a literal
    tuple, list or set of two or more items."""
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if value is not None else []
        for target in targets:
            if (
                isinstance(target, ast.Name)
                and target.id.isupper()
                and isinstance(value, ast.Tuple | ast.List | ast.Set)
            ):
                try:
                    literal = ast.literal_eval(value)
                except ValueError:  # names other constants: not a definition of its own
                    continue
                if len(literal) > 1:
                    yield target.id, literal


def test_every_collection_of_constants_is_defined_once() -> None:
    # the torch side imports the standard-library side's names (config.NORMS, config.DIRECTIONS, ...)
    defined: dict[str, list[str]] = {}
    for module, tree in library_modules().items():
        for name, value in constant_collections(tree):
            defined.setdefault(repr(sorted(map(repr, value))), []).append(f"{module}.{name}")
    assert [names for names in defined.values() if len(names) > 1] == []


def test_a_rounds_attack_jobs_ask_for_their_share_of_the_cores() -> None:
    from neuroattack.jobs import round_part_threads

    assert round_part_threads(10, 1, 2) == 2  # one job a round: every core
    assert round_part_threads(5, 2, 2) == 1  # two jobs on two cores: side by side
    assert round_part_threads(5, 2, 16) == 5  # no more threads than images
    assert round_part_threads(5, 4, 2) == 1  # never none
    assert round_part_threads(6, 7, None) == 6  # cores unknown (a cluster): one thread an image
