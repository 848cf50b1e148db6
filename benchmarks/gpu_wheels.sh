#!/usr/bin/env bash
# Wheels of vfsr's packages that a GPU machine's PyTorch image lacks, for benchmarks/gpu_checks.sh (WHEELS=DEST) on a
# machine that cannot reach a package registry. Downloaded for its Python (default 3.12) on x86-64 Linux, without
# their dependencies: torch, torchvision, numpy, scipy, OpenCV, scikit-image, tensorboard and pytest are expected
# there, and nothing here may replace its torch. basicsr has no wheel on PyPI: it is built here (pure Python).
#
#   bash benchmarks/gpu_wheels.sh .whl          # then: WHEELS=.whl bash benchmarks/gpu_checks.sh (on the GPU machine)
set -euo pipefail
DEST=${1:?usage: gpu_wheels.sh DEST [PYTHON_VERSION]}
PYTHON_VERSION=${2:-3.12}
mkdir -p "$DEST"
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    "${platforms[@]}" --platform any -d "$DEST" \
    lmdb av addict yapf platformdirs future facexlib==0.3.0 filterpy facenet-pytorch==2.6.0
python3 -m pip wheel -q --no-deps -w "$DEST" basicsr==1.4.2
ls "$DEST"
