#!/usr/bin/env bash
# The GPU checks in one call of a GPU machine that has PyTorch but no network (the workplace's
# device machine): the CUDA tests, training to 98 % (train_default_seconds beside plain torch),
# the eval pass against its floor, and the whole reference experiment from an empty cache. Each
# step runs under its own time limit (seconds x LIMIT_SCALE) so that one hang leaves the others'
# figures; the figures (JSON lines) and logs go to $OUT.
#
# Before (here, with ../shared beside the checkout):  rm -rf .mnist && cp -r ../shared/data/mnist .mnist
# Then, on the GPU machine, from the repository root: bash benchmarks/device.sh
# Other settings: DEVICE (default cuda), DATA (default .mnist), PYTHON (default python3),
# WORKERS (the reference experiment's --workers, default 1), LIMIT_SCALE (default 1; a CPU dry
# run needs ~4), STEPS (default "tests core refexp").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
DATA=${DATA:-.mnist}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
WORKERS=${WORKERS:-1}
LIMIT_SCALE=${LIMIT_SCALE:-1}
STEPS=${STEPS:-tests core refexp}
mkdir -p "$OUT"
# The package from this checkout without installing it (no network there); an empty cache.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_WAIT_POLICY=passive PYTHONUNBUFFERED=1
AANNTWIN_CACHE=$(mktemp -d)
export AANNTWIN_CACHE

failed=0
step() {  # step NAME LIMIT_S COMMAND...: its output in $OUT/NAME.log, its JSON lines in $OUT/NAME.jsonl
    local name=$1 limit=$2 rc
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name (limit $((limit * LIMIT_SCALE)) s): $*"
    timeout "$((limit * LIMIT_SCALE))" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    grep '^{"figure"' "$OUT/$name.log" >"$OUT/$name.jsonl"
    tail -n 25 "$OUT/$name.log"
    echo "== $name: exit $rc"
    [ "$rc" -eq 0 ] || failed=1
}

{
    date -u +%FT%TZ
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
    nproc
} | tee "$OUT/machine.txt"
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || { echo "no MNIST at $DATA (see the header)"; exit 2; }

# The tests that need a GPU (the rest run on the CPU in CI).
step tests 120 "$PYTHON" -m pytest -q -p no:cacheprovider -k cuda tests/test_cuda.py tests/test_normalize.py
step core 150 "$PYTHON" benchmarks/run.py --device "$DEVICE" --data-dir "$DATA" --only train --only eval
step refexp 300 "$PYTHON" benchmarks/studies.py --device "$DEVICE" --data-dir "$DATA" \
    --only reference_experiment --workers "$WORKERS"
exit "$failed"
