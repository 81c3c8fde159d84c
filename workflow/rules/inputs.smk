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


def loop_members(measured=None):
    """The networks whose site models attack every round: the ensemble's, or the surrogate
    (named `surrogate` in the loop's files, as it may be chosen only by the screening); for a
    network `measured` as the brain (or a view of it), every one but that network (the config's
    checks leave one)."""
    return [name for name in list(RUN.ensemble) or [SURROGATE_MEMBER] if name != measured_base(measured)]


def first_site_models_features(wildcards):
    """The features round 1's site models (which choose the attacked sites) read: the
    surrogate's, or for a network measured as the brain its first loop member's."""
    measured = measured_network(wildcards)
    return surrogate_features() if measured is None else member_features(loop_members(measured)[0])


def measured_networks_sensitivity(number):
    """Round `number`'s s~ of every network measured as the brain, by name (none before the
    brain has a recorded round to compare with)."""
    if not RUN.recorded_rounds:
        return {}
    return {
        f"measured_{name}": artifact("round_sensitivity", round=number, subject=subject_folder(name))
        for name in RUN.subjects
    }


def transfer_ratio_inputs(wildcards):
    """Every recorded round's s~ of the brain and of each network measured as the brain."""
    rounds = range(1, RUN.recorded_rounds + 1)
    subjects = {BRAIN: None, **{name: name for name in RUN.subjects}}
    return {
        name: [artifact("round_sensitivity", round=number, subject=subject_folder(network)) for number in rounds]
        for name, network in subjects.items()
    }


def matched_noise(wildcards):
    """Whether a job's {subject} is recorded with noise matched to the brain's recorded sites: a
    network measured as the brain beside real recordings, or in silico with like_for_like.noise: matched."""
    return measured_network(wildcards) is not None and RUN.matched_noise


def recorded_noise(wildcards):
    """What a network measured as the brain with matched noise takes it from: the brain's clean
    recordings (repetitions) and round 1's site models (the sites kept, with their reliabilities)."""
    if not matched_noise(wildcards):
        return {}
    return {
        "recorded": clean_recordings(subject=BRAIN_SUBJECT),
        "recorded_sites": brain_file("round_site_models", round=1),
    }


def brain_network(wildcards):
    """The network a {subject}'s brain reads its sites from: the simulated brain's, or the measured one."""
    return artifact("network", network=measured_base(measured_network(wildcards)) or BRAIN)


def member_network(name):
    return surrogate_network() if name == SURROGATE_MEMBER else artifact("network", network=name)


def member_features(name):
    return surrogate_features() if name == SURROGATE_MEMBER else features_as_member(name)


def round_member_network(number, name, subject="{subject}"):
    """The weights of loop member `name` in round `number`: with loop.refit: network, from
    round 2 on, the network fine-tuned on everything recorded before the round (of the job's
    {subject}'s recordings, or of `subject`'s)."""
    if RUN.refit == "network" and int(number) > 1:
        return artifact("round_network", round=number, network=name, subject=subject)
    return member_network(name)


def round_site_models(number, measured=None):
    """The site models that attack round `number`, one file per loop member (with
    loop.refit: none, round 1's in every round); for a network `measured` as the brain, not its own."""
    fitted = 1 if RUN.refit == "none" else int(number)
    if RUN.ensemble:
        members = loop_members(measured)
        return [artifact("round_member_site_models", round=fitted, network=name) for name in members]
    return [artifact("round_site_models", round=fitted)]


def earlier_rounds(wildcards, subject="{subject}"):
    """Every earlier round's stimulus set and recordings: what round `wildcards.round` refits on
    (of the job's {subject}, or of `subject`)."""
    files = {}
    for number in range(1, int(wildcards.round)):
        files[f"round_stimuli_{number}"] = artifact("round_stimuli", round=number, subject=subject)
        files[f"recordings_{number}"] = round_recordings(number, subject=subject)
    return files


def refit_inputs(wildcards, subject="{subject}"):
    """What every refit of round `wildcards.round` reads besides the members' networks (the job's
    {subject}'s recordings, or `subject`'s)."""
    return {
        **earlier_rounds(wildcards, subject),
        "first": artifact("round_site_models", round=1, subject=subject),
        "recordings": clean_recordings(subject=subject),
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
    networks; with loop.warm_start, the earlier round's attacks of those images; with
    loop.recorded_gradient, every earlier round's stimulus set and recordings."""

    def inputs(wildcards):
        number, measured = int(wildcards.round), measured_network(wildcards)
        files = {
            "stimuli": artifact("stimuli"),
            "site_models": round_site_models(number, measured),
            "members": [round_member_network(number, name) for name in loop_members(measured)],
        }
        if RUN.warm_start and number > 1:
            files["previous"] = [artifact("round_attack", round=number - 1, index=index) for index in indices]
        if recorded_gradient_settings(config) and number > 1:
            files.update(earlier_rounds(wildcards))  # every site's changes recorded so far
        return files

    return inputs


def recording_seed(wildcards):
    """The recording noise's seed: the brain's by recording; a measured network's also by its name."""
    measured = measured_network(wildcards)
    return seed("recording_noise", recording_number(wildcards.stimulus_set), *([] if measured is None else [measured]))


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
    return {"responses": brain_file("round_responses", round=RUN.figure1_round)} if RUN.recorded_rounds else {}


def coverage_brain_inputs(wildcards):
    """Recordings of the perturbed images (when there are any) and, in silico, the white box."""
    return {**last_round_responses(), **({"white_box": brain_file("white_box")} if RUN.simulated else {})}
