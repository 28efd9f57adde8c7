#!/usr/bin/env bash
# Train the Prox-denoiser on a lent GPU machine in one device command.
#
# The device machine (see the device tool's README) has python3 with torch,
# numpy, scipy and safetensors, reaches no network and receives at most 64 MiB:
# the repository (about 10 MiB), the corpus cache packed with xz (about 32 MiB)
# and the wheels of what ctpnp imports that it lacks (ODL, ASTRA: about 16 MiB).
#
#   here:   pipelines/device_train_prox.sh pack
#           (writes .device/: data.tar.xz from the corpus cache, $CTPNP_DATA or
#           ~/.cache/ctpnp/data, after `ctpnp data fetch`; wheels/ for Python 3.12)
#   there:  run "pipelines/device_train_prox.sh train" with carry [".device"]
#           (STEPS_SCALE multiplies PROX_GPU_RECIPE's steps, MINUTES bounds the
#           training; the weights, cards and log come back through $OUT)
#
# A run stopped by MINUTES still returns its checkpoint through $OUT, but it cannot
# travel back for a resume: with the wheels, 57 MiB + 13 MiB is over the limit
# (train_priors imports ODL and ASTRA only through the PnP fine-tuning module).
# Size STEPS_SCALE so that one call finishes. Training on the CPU to try the
# flow: DEVICE=cpu STEPS_SCALE=0.01.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CARRY=.device

pack() {
    local data=${CTPNP_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/ctpnp/data}
    [ -f "$data/lung1.npy" ] || { echo "error: no corpus in $data: run 'ctpnp data fetch'" >&2; exit 2; }
    mkdir -p "$CARRY/wheels"
    echo "packing $data into $CARRY/data.tar.xz" >&2
    tar -C "$data" -cf - . | xz -T0 -6 > "$CARRY/data.tar.xz.part"
    mv "$CARRY/data.tar.xz.part" "$CARRY/data.tar.xz"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/wheels" \
        odl==1.0.0 astra-toolbox==2.5.0 array-api-compat future
    du -sh "$CARRY"/* >&2
}

train() {
    local out=${OUT:?'$OUT is unset: run this through the device tool'}
    local data=/tmp/ctpnp_data site=/tmp/ctpnp_site
    mkdir -p "$data" "$CARRY/trained"
    tar -C "$data" -xJf "$CARRY/data.tar.xz"
    if ! "$PYTHON" -c "import odl, astra" 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$site" "$CARRY"/wheels/*.whl
        export PYTHONPATH=$site
    fi
    export CTPNP_DATA=$data PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    local status=0
    timeout "${MINUTES:-8}m" "$PYTHON" pipelines/train_priors.py --only prox \
        --device "${DEVICE:-cuda}" --steps-scale "${STEPS_SCALE:-1}" --out "$CARRY/trained" \
        2>&1 | tee "$out/train.log" || status=$?
    cp "$CARRY"/trained/* "$out"/ 2>/dev/null || true
    return "$status"
}

case "${1:-}" in
    pack) pack ;;
    train) train ;;
    *) echo "usage: $0 pack|train" >&2; exit 2 ;;
esac
