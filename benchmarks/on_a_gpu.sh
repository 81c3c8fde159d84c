#!/usr/bin/env bash
# What only a GPU node can show, in one go (about 8 minutes on one H100 or H200): the device,
# attack throughput on ResNet-50 at 224 px against torchattacks' PGDL2 at 64, 256 and 1024 rows
# per batch, one unit's attack at config/paper.yaml's settings (restart pruning included), and
# the tiny config end to end on CUDA. Every step's output goes to its own file in the folder
# given (default gpu-check/); a step that fails is said and the next one runs.
#
#     bash benchmarks/on_a_gpu.sh [folder]
#
# Needs the project's environment with the bench extra (`make bench` installs it) and a CUDA
# device visible to torch.
set -u
out=${1:-gpu-check}
mkdir -p "$out"
python=${PYTHON:-.venv/bin/python}
snakemake=${SNAKEMAKE:-.venv/bin/snakemake}
export PYTHONUNBUFFERED=1
failed=0

step() {  # step NAME COMMAND...: run it, its output in $out/NAME.txt, its seconds and status said
    local name=$1
    shift
    local start=$SECONDS
    if "$@" >"$out/$name.txt" 2>&1; then
        echo "$name: done in $((SECONDS - start)) s ($out/$name.txt)"
    else
        echo "$name: FAILED (exit $?) after $((SECONDS - start)) s; the end of $out/$name.txt:"
        tail -n 20 "$out/$name.txt"
        failed=1
    fi
}

step device "$python" -c "
import torch
assert torch.cuda.is_available(), 'no CUDA device visible to torch'
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
print('bf16 native:', torch.cuda.is_bf16_supported(including_emulation=False))
"
if [ "$failed" = 1 ]; then
    echo "no CUDA device visible: the other steps measure a GPU, so they were not run"
    exit 1
fi
step throughput "$python" benchmarks/attack_throughput.py --device cuda --arch resnet50 --images 8 \
    --chunk-rows 64 --also-chunk-rows 256 1024 --repeats 3
step paper_unit "$python" benchmarks/network_cost.py --device cuda --config config/paper.yaml \
    --networks resnet50 --repeats 2
tiny=$(mktemp -d)
step tiny_run "$snakemake" --profile workflow/profiles/default --cores 4 --configfile config/tiny.yaml \
    --config "results=$tiny/results"
# its jobs use the GPU (runtime.device: CUDA wherever torch sees it); what they wrote:
step tiny_outputs "$python" -c "
import glob, xarray as xr
attacks = sorted(glob.glob('$tiny/results/attacks/*.nc'))
figures = sorted(glob.glob('$tiny/results/figures/*.png'))
assert attacks and figures, 'the tiny run wrote no attack files or no figures'
print(len(attacks), 'attack files,', len(figures), 'figures; search precision:',
      {xr.open_dataset(f).attrs['attack_search_precision'] for f in attacks})
"
exit $failed
