#!/usr/bin/env bash
# The GPU checks in one run, under 10 minutes (the step limits add up to 595 s), for a machine with CUDA and PyTorch
# but none of vfsr's other packages: the CUDA tests (tests/test_cuda.py), then the network benchmarks in fp32 / bf16 /
# bf16-fast / fp16 with channels_last, KEEP streaming and its memory over 4x the frames, VidFace, the agreement of the
# low precisions with fp32, vfsr-restore on a 1080p clip, and a compiled CodeFormer. Every step has its own time
# limit; a failing step is reported and the next one runs.
#
#   WHEELS=.whl OUT=results/gpu bash benchmarks/gpu_checks.sh
#
# WHEELS: a folder of wheels installed first with --no-deps into a scratch folder (basicsr, facexlib, lmdb, av, ...;
# never torch); unset: use what is installed. OUT: where each step's output goes (one .txt per step, summary.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vfsr_site \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/vfsr_site"
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to $OUT/NAME.txt and the console
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local status=${PIPESTATUS[0]}
    echo "$name: exit $status after $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/summary.txt"
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' | tee -a "$OUT/summary.txt"
step tests 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
step codeformer 60 python3 benchmarks/bench_codeformer.py --runs 20 \
    --configs cuda:fp32:cl cuda:bf16:cl cuda:bf16-fast:cl cuda:fp16:cl cuda:bf16:nchw
step keep 130 python3 benchmarks/bench_keep.py --device cuda --sizes 512 --frames 8 --modes stream --layouts cl \
    --dtypes fp32 bf16 fp16
step vidface 50 python3 benchmarks/bench_vidface.py --device cuda --batches 16 --precisions fp32 bf16 --skip-train
step agreement 40 python3 benchmarks/bench_bf16_agreement.py --device cuda --precisions bf16 bf16-fast fp16
step detection 35 python3 benchmarks/bench_restore.py --detection --device cuda --frames 40
step restore 90 python3 benchmarks/bench_restore.py --device cuda --precision bf16 --size 1920x1080 --frames 30 \
    --face-width 400
step codeformer_compiled 90 python3 benchmarks/bench_codeformer.py --runs 20 --compile --configs cuda:bf16:cl
