rule stimuli:
    output:
        result("stimuli/stimuli.nc"),
    log:
        log_file("stimuli"),
    params:
        settings=config["stimuli"],
        seed=config["seed"],
    script:
        "../scripts/stimuli.py"
