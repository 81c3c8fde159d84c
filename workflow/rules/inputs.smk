# Each stage's own input functions, by stage (the functions several stages share are in
# common.smk): the rule files hold rules only.


# --- public inputs (downloads.smk) ------------------------------------------------


def download_checksum(wildcards):
    """What identifies a downloaded file, and so the only download setting that reruns it:
    its checksum ({algorithm: digest}; null = recorded at first download). URLs are not in it."""
    algorithm, digest = remote_checksum(config_entry(config, DOWNLOADS[wildcards.file]))
    return science({algorithm: digest})


# --- stimuli (stimuli.smk) --------------------------------------------------------


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


# --- networks and their features (networks.smk) -----------------------------------


def training_inputs(wildcards):
    data = config.get("training_data", {})
    return {"folder": data["path"]} if data.get("source") == "folder" else {}


def user_model_inputs(wildcards):
    """A user's network's weights file (the brain's too), where its entry names one."""
    local = weights_file(config, wildcards.network)
    return {} if local is None else {"weights": downloaded(config, local)}


def viewed_network(wildcards):
    """The weights a features file is made from: its network's (a depth view's network's)."""
    return artifact("network", network=split_view(wildcards.network)[0])


# --- a lab's recordings (recordings.smk) ------------------------------------------


def recordings_inputs(wildcards):
    """The recordings to import, and the stimulus set their stimulus ids are checked against."""
    recordings = config["recordings"]
    if recordings["source"] == "brainscore":
        source = {"assembly": downloaded(config, download_name(recordings["assembly"], "brainscore"))}
    else:
        source = {"table": recordings["path"]}
    return {**source, "stimuli": artifact("stimuli")}


# --- the closed loop, every round (loop.smk) --------------------------------------


def loop_members():
    """The networks whose site models attack every round: the ensemble's, or the surrogate
    (named `surrogate` in the loop's files, as it may be chosen only by the screening)."""
    return list(RUN.ensemble) or [SURROGATE_MEMBER]


def member_network(name):
    return surrogate_network() if name == SURROGATE_MEMBER else artifact("network", network=name)


def member_features(name):
    return surrogate_features() if name == SURROGATE_MEMBER else features_as_member(name)


def round_member_network(number, name):
    """The weights of loop member `name` in round `number`: with loop.refit: network, from
    round 2 on, the network fine-tuned on everything recorded before the round."""
    if RUN.refit == "network" and int(number) > 1:
        return artifact("round_network", round=number, network=name)
    return member_network(name)


def round_site_models(number):
    """The site models that attack round `number`, one file per loop member (with
    loop.refit: none, round 1's in every round)."""
    fitted = 1 if RUN.refit == "none" else int(number)
    if RUN.ensemble:
        return [artifact("round_member_site_models", round=fitted, network=name) for name in RUN.ensemble]
    return [artifact("round_site_models", round=fitted)]


def earlier_rounds(wildcards):
    """Every earlier round's stimulus set and recordings: what round `wildcards.round` refits on."""
    files = {}
    for number in range(1, int(wildcards.round)):
        files[f"round_stimuli_{number}"] = artifact("round_stimuli", round=number)
        files[f"recordings_{number}"] = round_recordings(number)
    return files


def refit_inputs(wildcards):
    """What every refit of round `wildcards.round` reads besides the members' networks."""
    return {
        **earlier_rounds(wildcards),
        "first": artifact("round_site_models", round=1),
        "recordings": clean_recordings(),
        "stimuli": artifact("stimuli"),
    }


def recorded_stimuli(wildcards):
    """The stimulus set a recording shows: the clean one, or a round's."""
    if wildcards.stimulus_set == "clean":
        return artifact("stimuli")
    return artifact("round_stimuli", round=wildcards.stimulus_set.removeprefix("round"))


def recording_number(stimulus_set):
    """A recording's place in the recording-noise seed stream: 0 for the clean stimulus set, r for round r's."""
    return 0 if stimulus_set == "clean" else int(stimulus_set.removeprefix("round"))


def attack_round_name(part):
    """One job a round makes every image's file; with loop.images_per_job, one rule per group of images."""
    return "attack_round" if len(RUN.attack_parts) == 1 else f"attack_round_part{part + 1}"


def round_attack_inputs(indices):
    """What a round's attack on the images `indices` reads: the round's site models and their
    networks and, with loop.warm_start, the earlier round's attacks of those images."""

    def inputs(wildcards):
        number = int(wildcards.round)
        files = {
            "stimuli": artifact("stimuli"),
            "site_models": round_site_models(number),
            "members": [round_member_network(number, name) for name in loop_members()],
        }
        if RUN.warm_start and number > 1:
            files["previous"] = [artifact("round_attack", round=number - 1, index=index) for index in indices]
        return files

    return inputs


def image_seeds(number, indices):
    """The seeds of each image's attack in round `number`: its starts and its model-side baseline."""
    return [
        {
            "attack_starts": seed("attack_starts", int(number), int(index)),
            "model_baseline": seed("model_baseline", int(number), int(index)),
        }
        for index in indices
    ]


# --- figures (figures.smk) --------------------------------------------------------


def last_round_responses():
    """The last recorded round's responses, where a round was recorded."""
    return {"responses": artifact("round_responses", round=RUN.figure1_round)} if RUN.recorded_rounds else {}


def coverage_brain_inputs(wildcards):
    """Recordings of the perturbed images (when there are any) and, in silico, the white box."""
    return {**last_round_responses(), **({"white_box": artifact("white_box")} if RUN.simulated else {})}
