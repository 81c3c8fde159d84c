# The run's state, paths and the input functions shared by the rule files. It imports the
# standard-library modules of neuroattack only (plan, seeds, downloaded_files, artifacts, jobs,
# config, remote), since every job parses the Snakefile again: no torch here.
from neuroattack.artifacts import artifact_path
from neuroattack.config import SURROGATE_MEMBER, TRANSFER_KEYS, config_entry, layers_by_depth, science, split_view
from neuroattack.remote import remote_checksum
from neuroattack.jobs import (
    CHAIN,
    FIRST,
    checkpoint_settings,
    cpu_job,
    gpu_job,
    network_layer,
    network_spec,
    recordings_settings,
    training_priority,
    user_model_settings,
)
from neuroattack.downloaded_files import download_name, downloaded, downloads, weights_file
from neuroattack.plan import name_pattern, run_plan
from neuroattack.seeds import config_seed

RUN = run_plan(config)
DOWNLOADS = downloads(config)


wildcard_constraints:
    index=r"\d{4}",
    round=r"[1-9]\d*",


def seed(stream, *keys):
    """The seed of one named stream of random draws (neuroattack.seeds.SEED_STREAMS)."""
    return config_seed(config, stream, *keys)


def artifact(name, /, **wildcards):
    """Where artifact `name` (neuroattack.artifacts.PATHS) of this run lives."""
    return artifact_path(config["results"], name, **wildcards)


def log_file(name):
    return artifact("log", name=name)


def download_checksum(wildcards):
    """What identifies a downloaded file, and so the only download setting that reruns it:
    its checksum ({algorithm: digest}; null = recorded at first download). URLs are not in it."""
    algorithm, digest = remote_checksum(config_entry(config, DOWNLOADS[wildcards.file]))
    return science({algorithm: digest})


# --- inputs that depend on the configured sources -------------------------------------


def stimuli_inputs(wildcards):
    stimuli = config["stimuli"]
    if stimuli["source"] == "brainscore":
        return {
            "csv": downloaded(config, download_name(stimuli["csv"], "brainscore")),
            "zip": downloaded(config, download_name(stimuli["zip"], "brainscore")),
        }
    if stimuli["source"] == "folder":
        return {"folder": stimuli["path"]}
    return {}


def training_inputs(wildcards):
    data = config.get("training_data", {})
    return {"folder": data["path"]} if data.get("source") == "folder" else {}


def user_model_inputs(wildcards):
    """A user's network's weights file, where its entry names one."""
    local = weights_file(wildcards.network, config["networks"][wildcards.network])
    return {} if local is None else {"weights": downloaded(config, local)}


def recordings_inputs(wildcards):
    """The recordings to import, and the stimulus set their stimulus ids are checked against."""
    recordings = config["recordings"]
    if recordings["source"] == "brainscore":
        source = {"assembly": downloaded(config, download_name(recordings["assembly"], "brainscore"))}
    else:
        source = {"table": recordings["path"]}
    return {**source, "stimuli": artifact("stimuli")}


def network_weights(names=None):
    return {name: artifact("network", network=name) for name in (RUN.networks if names is None else names)}


def network_features(names=None):
    return {name: artifact("features", network=name) for name in (RUN.networks if names is None else names)}


def unit_features():
    """The features of every network and every depth view (attack.layers): whose units are attacked."""
    return network_features(RUN.networks + RUN.depth_views)


def viewed_network_weights(wildcards):
    """The weights a features file is made from: its network's (a depth view's network's)."""
    return artifact("network", network=split_view(wildcards.network)[0])


def figure_outputs(number):
    """Figure `number`'s picture (png, pdf) and the numbers it plots (.nc)."""
    return multiext(artifact("figure", number=number), ".png", ".pdf", ".nc")


def attack_files():
    return [artifact("attack", index=index) for index in RUN.attack_indices]


def surrogate_weights():
    """The surrogate's weights: the named network's, or (surrogate.network: auto) a copy of the chosen one's."""
    if RUN.auto_surrogate:
        return artifact("surrogate_weights")
    return artifact("network", network=config["surrogate"]["network"])


def surrogate_features():
    """The surrogate's features, as surrogate_weights, at its best layer under surrogate.layer: auto."""
    if RUN.auto_surrogate:
        return artifact("surrogate_features")
    return surrogate_network_features(config["surrogate"]["network"])


def surrogate_network_features(name):
    """A network's features as a surrogate (or ensemble member) sees them: at its best layer
    under surrogate.layer: auto (chosen by the screening), else at its own."""
    return artifact("best_layer_features" if RUN.auto_layer else "features", network=name)


def screening_inputs(wildcards):
    inputs = {
        "stimuli": artifact("stimuli"),
        "recordings": artifact("clean_recordings"),
        **{f"weights_{name}": path for name, path in network_weights().items()},
        **{f"features_{name}": path for name, path in network_features().items()},
        **{f"layer_features_{view}": path for view, path in network_features(RUN.layer_views).items()},
    }
    if RUN.simulated:
        inputs["brain"] = artifact("brain")
    return inputs


def final_outputs():
    """Rule all's inputs: figures 1-5, the report's s~ table, with rounds recorded figure 6, with
    attack.layers figure 7;
    in silico the brain's white box, else the screening's and the next round's rig stimulus sets."""
    outputs = [figure_outputs(number) for number in (1, 2, 3, 4, 5)]
    outputs.append(artifact("sensitivity_table"))
    if RUN.simulated:
        outputs.append(artifact("white_box"))
    else:
        outputs.append(multiext(artifact("screening_rig_stimuli"), ".csv", ".zip"))
    if RUN.recorded_rounds:
        outputs += [figure_outputs(6), figure_outputs(8)]
    if RUN.depth_views:
        outputs.append(figure_outputs(7))
    if RUN.next_round is not None:
        outputs.append(rig_stimuli(RUN.next_round))
    return outputs


def coverage_brain_inputs(wildcards):
    """Recordings of the perturbed images (when there are any) and, in silico, the white box."""
    return {
        **({"responses": artifact("round_responses", round=RUN.figure1_round)} if RUN.recorded_rounds else {}),
        **({"white_box": artifact("white_box")} if RUN.simulated else {}),
    }


# --- the closed loop over recording rounds (workflow/rules/loop.smk) -------------------


def rig_stimuli(number):
    return multiext(artifact("round_rig_stimuli", round=number), ".csv", ".zip")


def round_site_models(number):
    """The site models that attack round `number` (one file per ensemble member): round 1's
    are fitted on the clean recordings."""
    number = int(number)
    if RUN.ensemble:
        fitted = 1 if RUN.refit == "none" else number
        return [artifact("round_member_site_models", round=fitted, network=name) for name in RUN.ensemble]
    if number == 1 or RUN.refit == "none":
        return [artifact("site_models")]
    return [artifact("round_site_models", round=number)]


def loop_members():
    """The networks whose site models attack every round: the ensemble's, or the surrogate
    (named `surrogate` in the loop's files, as it may be chosen only by the screening)."""
    return list(RUN.ensemble) or [SURROGATE_MEMBER]


def member_weights(name):
    return surrogate_weights() if name == SURROGATE_MEMBER else artifact("network", network=name)


def member_features(name):
    return surrogate_features() if name == SURROGATE_MEMBER else surrogate_network_features(name)


def round_member_weights(number, name):
    """The weights of loop member `name` in round `number`: with loop.refit: network, from
    round 2 on, the network fine-tuned on everything recorded before the round."""
    if RUN.refit == "network" and int(number) > 1:
        return artifact("round_network", round=number, network=name)
    return member_weights(name)


def round_surrogates(number):
    """The networks whose site models attack round `number`, in round_site_models' order."""
    return [round_member_weights(number, name) for name in loop_members()]


def round_attack_file(number, index):
    """Round `number`'s attack on clean image `index`: round 1's is attack_image's (which
    attacks round 1's site models, the ensemble's mean with loop.ensemble); later rounds' are
    attack_round's."""
    if int(number) == 1:
        return artifact("attack", index=index)
    return artifact("round_attack", round=number, index=index)


def round_attack_inputs(wildcards):
    """What round `wildcards.round`'s attack reads: round 1's attack of every image (its
    network units and eps grid), and with loop.warm_start the earlier round's, where each row starts."""
    number = int(wildcards.round)
    inputs = {
        "stimuli": artifact("stimuli"),
        "site_models": round_site_models(number),
        "surrogate": round_surrogates(number),
        "first": round_attack_files(1),
    }
    if RUN.warm_start and number > 1:
        inputs["previous"] = round_attack_files(number - 1)
    return inputs


def round_attack_files(number):
    return [round_attack_file(number, index) for index in RUN.attack_indices]


def earlier_rounds(wildcards):
    """Every earlier round's stimulus set and recordings: what round `wildcards.round` refits on."""
    files = {}
    for number in range(1, int(wildcards.round)):
        files[f"shown_{number}"] = artifact("round_stimuli", round=number)
        files[f"recordings_{number}"] = artifact("round_recordings", round=number)
    return files


def round_sensitivity_files():
    return [artifact("round_sensitivity", round=number) for number in range(1, RUN.recorded_rounds + 1)]
