rule stimuli:
    output:
        result("stimuli/stimuli.nc"),
    log:
        log_file("stimuli"),
    params:
        settings=config["stimuli"],
        seed=config["seed"],
    resources:
        **cpu_job(mem_mb=4000, runtime=30),
    script:
        "../scripts/stimuli.py"
