# The run's state, paths and the input functions shared by several stages; each stage's own
# input functions live in its rule file. It imports the standard-library modules of
# neuroattack only (plan, seeds, downloaded_files, artifacts, jobs, config, remote), since every
# job parses the Snakefile again: no torch here.
import re

from neuroattack.artifacts import artifact_path
from neuroattack.config import (
    BRAIN,
    SURROGATE_MEMBER,
    TRANSFER_KEYS,
    config_entry,
    layers_by_depth,
    science,
    split_view,
)
from neuroattack.remote import remote_checksum
from snakemake.exceptions import WorkflowError
from neuroattack.jobs import (
    CHAIN,
    FIRST,
    checkpoint_settings,
    cpu_job,
    gpu_job,
    network_layer,
    network_spec,
    recorded_gradient_settings,
    recordings_settings,
    round_part_threads,
    training_priority,
    user_model_settings,
)
from neuroattack.downloaded_files import download_name, downloaded, downloads, weights_file
from neuroattack.plan import name_pattern, run_plan, subject_folder, subject_network, subject_pattern
from neuroattack.seeds import config_seed

RUN = run_plan(config)
DOWNLOADS = downloads(config)


def given_cores():
    """--cores of this run; None where none was given (a cluster run, a dry run without it)."""
    try:
        return workflow.cores
    except WorkflowError:
        return None


wildcard_constraints:
    index=r"\d{4}",
    round=r"[1-9]\d*",
    subject=subject_pattern(RUN.subjects),


BRAIN_SUBJECT = subject_folder(None)  # the {subject} of the brain's own files: ""
# What is recorded in silico: the simulated brain and every network measured as the brain;
# beside real recordings the measured networks only.
IN_SILICO = RUN.simulated or bool(RUN.subjects)
IN_SILICO_SUBJECT = subject_pattern(RUN.subjects, brain=RUN.simulated)


def in_silico(wildcards):
    """Whether a job's {subject} is recorded in silico (so has a white box)."""
    return RUN.simulated or measured_network(wildcards) is not None


def seed(stream, *keys):
    """The seed of one named stream of random draws (neuroattack.seeds.SEED_STREAMS)."""
    return config_seed(config, stream, *keys)


def artifact(name, /, **wildcards):
    """Where artifact `name` (neuroattack.artifacts.PATHS) of this run lives."""
    return artifact_path(config["results"], name, **wildcards)


def log_file(name):
    return artifact("log", name=name)


def clean_recordings(**subject):
    """The recordings of the clean stimulus set (recorded in silico, else imported); the job's
    {subject}'s unless `subject=` names one."""
    return artifact("recordings", stimulus_set="clean", **subject)


def round_recordings(number="{round}", **subject):
    """The recordings of round `number`'s stimulus set (recorded in silico, else ingested from the
    rig); the job's {subject}'s unless `subject=` names one."""
    return artifact("recordings", stimulus_set=f"round{number}", **subject)


def brain_file(name, /, **wildcards):
    """Artifact `name` of the brain's own (not of a network measured as the brain)."""
    return artifact(name, subject=BRAIN_SUBJECT, **wildcards)


def measured_network(wildcards):
    """What a job's {subject} measures as if it were the brain: a network, or a network at another
    layer ("<network>@<layer>"); None: the brain."""
    return subject_network(wildcards.subject)


def rule_suffix(name):
    """`name` (a network or a view, "<network>@<layer>") as part of a rule's name."""
    return re.sub(r"\W", "_", name)


def measured_base(measured):
    """The network a measured subject reads out (a view's network); None for the brain."""
    return None if measured is None else split_view(measured)[0]


# --- networks and their features --------------------------------------------------------


def network_files(names=None):
    return {name: artifact("network", network=name) for name in (RUN.networks if names is None else names)}


def network_features(names=None):
    return {name: artifact("features", network=name) for name in (RUN.networks if names is None else names)}


def unit_features():
    """The features of every network and every depth view (attack.layers): whose units are attacked."""
    return network_features(RUN.networks + RUN.depth_views)


def surrogate_network():
    """The surrogate's weights: the named network's, or (surrogate.network: auto) a copy of the chosen one's."""
    if RUN.auto_surrogate:
        return artifact("surrogate_network")
    return artifact("network", network=config["surrogate"]["network"])


def surrogate_features():
    """The surrogate's features, as surrogate_network, at its best layer under surrogate.layer: auto."""
    if RUN.auto_surrogate:
        return artifact("surrogate_features")
    return features_as_member(config["surrogate"]["network"])


def features_as_member(name):
    """A network's features as a surrogate (or ensemble member) sees them: at its best layer
    under surrogate.layer: auto (chosen by the screening), else at its own."""
    return artifact("best_layer_features" if RUN.auto_layer else "features", network=name)


def screening_inputs(wildcards):
    inputs = {
        "stimuli": artifact("stimuli"),
        "recordings": clean_recordings(subject=BRAIN_SUBJECT),
        **{f"network_{name}": path for name, path in network_files().items()},
        **{f"features_{name}": path for name, path in network_features().items()},
        **{f"layer_features_{view}": path for view, path in network_features(RUN.layer_views).items()},
    }
    if RUN.simulated:
        inputs["brain"] = brain_file("brain")
    return inputs


# --- the loop's files that other stages read ----------------------------------------------


def round_attack_files(number, **subject):
    """Round `number`'s attack on every clean image (one file per image); the job's {subject}'s
    unless `subject=` names one."""
    return [artifact("round_attack", round=number, index=index, **subject) for index in RUN.attack_indices]


def rig_stimuli(number):
    return multiext(artifact("round_rig_stimuli", round=number), ".csv", ".zip")


def figure_outputs(number):
    """Figure `number`'s picture (png, in the report with its caption, report/figure<number>.rst),
    the same as pdf, and the numbers it plots (.nc)."""
    path = artifact("figure", number=number)
    caption = f"../report/figure{number}.rst"
    return {
        "png": report(path + ".png", caption=caption, category="Figures"),
        "pdf": path + ".pdf",
        "numbers": path + ".nc",
    }


# --- rule all ---------------------------------------------------------------------------


def figure_files(number):
    """Figure `number`'s files as plain paths (its png's report mark belongs to its own rule)."""
    return [str(path) for path in figure_outputs(number).values()]


def final_outputs():
    """Rule all's inputs: figures 1-5, the report's s~ table, with rounds recorded figures 6 and 8,
    with attack.layers figure 7; in silico the brain's white box, else the screening's and the
    next round's rig stimulus sets."""
    outputs = [figure_files(number) for number in (1, 2, 3, 4, 5)]
    outputs.append(artifact("sensitivity_table"))
    if RUN.simulated:
        outputs.append(brain_file("white_box"))
    else:
        outputs.append(multiext(artifact("screening_rig_stimuli"), ".csv", ".zip"))
    if RUN.recorded_rounds:
        outputs += [figure_files(6), figure_files(8)]
    if RUN.depth_views:
        outputs.append(figure_files(7))
    if RUN.next_round is not None:
        outputs.append(rig_stimuli(RUN.next_round))
    return outputs
