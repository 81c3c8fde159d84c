# The in-silico monkey (neuroattack.brain.simulated): a held-out network read out to sites. Only
# the loop's `record` rule observes it; brain_white_box (attacks.smk) reads its weights for
# validation only. Its network is made as any network of the config is (networks.smk: trained,
# imported or converted), under the name `brain`. A network measured as the brain is built here
# too; beside real recordings it takes their sites' number, reliabilities and repetitions.

from neuroattack.jobs import brain_settings


rule build_brain:
    input:
        unpack(recorded_noise),
        network=brain_network,
        stimuli=artifact("stimuli"),
    output:
        artifact("brain"),
    log:
        log_file("{subject}build_brain"),
    wildcard_constraints:
        subject=IN_SILICO_SUBJECT,
    priority: CHAIN
    conda:
        "../../envs/compute.yaml"
    resources:
        **cpu_job(mem_mb=4000, runtime=20),
    params:
        brain=lambda wildcards: {
            **brain_settings(config, measured_network(wildcards) or BRAIN),
            # only where the noise is matched, so that no other brain reruns for it
            **({"noise_seed": seed("matched_noise")} if matched_noise(wildcards) else {}),
        },
        seed=seed("brain_readout"),
    script:
        "../scripts/build_brain.py"
