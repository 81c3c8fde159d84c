# Config validation, paths and input functions shared by every rule file.
import os
import re

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

NETWORKS = list(config["networks"])
if config["surrogate"]["network"] not in NETWORKS:
    raise ValueError(
        f"config key surrogate.network = {config['surrogate']['network']!r} is not one of "
        f"networks ({', '.join(NETWORKS)}); name a network the workflow trains"
    )
ATTACK_INDICES = [f"{i:04d}" for i in range(config["attack"]["images"])]
NETWORK_PATTERN = "|".join(re.escape(name) for name in NETWORKS)


wildcard_constraints:
    index=r"\d{4}",


def gpu_job(mem_mb, runtime):
    """Resources of a rule that uses a GPU when one is there (CPU otherwise): one GPU,
    CPUs to feed it, memory (MB) and runtime (minutes) that grow with each retry."""
    return {
        "gpu": 1,
        "cpus_per_gpu": 2,
        "mem_mb": lambda wildcards, attempt: mem_mb * attempt,
        "runtime": lambda wildcards, attempt: runtime * attempt,
    }


def cpu_job(mem_mb, runtime):
    """Resources of a CPU rule, growing with each retry."""
    return {
        "mem_mb": lambda wildcards, attempt: mem_mb * attempt,
        "runtime": lambda wildcards, attempt: runtime * attempt,
    }


def result(path):
    return os.path.join(config["results"], path)


def log_file(name):
    return os.path.join(config["results"], "logs", f"{name}.log")


def network_spec(name):
    """Training settings of a network of the config, or of the brain's held-out network."""
    if name == "brain":
        spec = config["brain"]["network"]
        return {"eps": spec["eps"], "seed": spec["seed"], "widths": spec["widths"], "blocks": spec["blocks"]}
    spec = config["networks"][name]
    arch = config["architecture"]
    return {"eps": spec["eps"], "seed": spec["seed"], "widths": arch["widths"], "blocks": arch["blocks"]}


def network_weights(names=None):
    return {name: result(f"networks/{name}.nc") for name in (names or NETWORKS)}


def network_features(names=None):
    return {name: result(f"features/{name}.nc") for name in (names or NETWORKS)}


def attack_files():
    return [result(f"attacks/image{index}.nc") for index in ATTACK_INDICES]


def figure1_outputs():
    return multiext(result("figures/figure1"), ".png", ".pdf", ".nc")
