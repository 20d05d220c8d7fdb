#!/usr/bin/env bash
# The CUDA checks, run on a lent GPU machine (not in CI: CI has no GPU). Two stages, because the
# tree that travels to such a machine is limited to 64 MiB and faiss's wheel (18 MB) and the ant/bee
# photos (45 MB) do not fit together:
#   bash benchmarks/gpu_checks.sh bench    # wheels in .whl/: installs them, then the CUDA path:
#       the digits demo twice (crash-free, determinism), probe throughput vs a plain loop (smallcnn
#       28x28 and resnet18 224x224)
#   bash benchmarks/gpu_checks.sh speeds   # wheels in .whl/: training-step times vs probes/cost.py's
#       CUDA constants
#   bash benchmarks/gpu_checks.sh audits   # photos and MNIST in .devdata/: full default audits of
#       torchvision resnet18 at 224 px on the ant/bee photos and the MNIST example net on CUDA
# Results go to $OUT (or ./gpu-out). Needs the packages the GPU image lacks as wheels in .whl/
# (umap-learn, pynndescent, cleanlab, termcolor, faiss-cpu for Python 3.12).
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
log="$OUT/$1.log"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import sys, torch, torchvision, faiss, umap, cleanlab; print(sys.version.split()[0], torch.__version__, torchvision.__version__, torch.cuda.is_available())"
} 2>&1 | tee "$log"
run() {
    echo "== $*" | tee -a "$log"
    local start=$SECONDS
    "$@" 2>&1 | tee -a "$log"
    echo "== exit ${PIPESTATUS[0]}, $((SECONDS - start)) s" | tee -a "$log"
}
case "$1" in
bench)
    run python3 -m dnncheck audit sklearn:digits --device cuda --quiet --json "$OUT/digits1.json"
    run python3 benchmarks/bench_throughput.py --device cuda
    run python3 benchmarks/bench_throughput.py --device cuda --model resnet18 --size 224
    run python3 -m dnncheck audit sklearn:digits --device cuda --quiet --json "$OUT/digits2.json"
    ;;
speeds)
    run python3 benchmarks/bench_clients.py --speeds --device cuda
    ;;
audits)
    # tests/clients/corpus.py reads ../shared/data
    mkdir -p ../shared && ln -sfn "$PWD/.devdata" ../shared/data
    run python3 benchmarks/bench_clients.py --only tv_resnet18,mnist_net --work /tmp/clients
    cp /tmp/clients/tv_resnet18.json /tmp/clients/mnist_net.json "$OUT/" 2>/dev/null
    ;;
esac
