#!/usr/bin/env bash
# Every check that needs a GPU, as one script for a lent GPU machine (CUDA, PyTorch and Triton; no TensorRT, no
# network). About 5 minutes on one H100/H200-class GPU. Results go to $OUT (default ./gpu-check); the last lines
# printed are the summary.
#
#   M2F_TENSORRT_HEADERS=/path/to/third_party/tensorrt bash benchmarks/gpu_check.sh
#
# 1. the gpu-marked tests, required (M2F_REQUIRE=gpu turns a skip into a failure): the Triton kernels compiled for
#    this GPU against the references; the AOT launchers through libcuda; the plugins' enqueue (created through their
#    creators, as TensorRT does) on device buffers at R50 800x1344 sizes against the float64 references, with its
#    median latency; the model on CUDA against the CPU;
# 2. kernel speed at R50 800x1344 sizes vs the PyTorch references (benchmarks/kernels.py);
# 3. where TensorRT is installed: every op flavor at fp32, fp16 and int8 as an engine (m2f plugins build, export,
#    build), all scored by m2f validate against PyTorch on the held-out images, one table (benchmarks/engines.py).
set -u
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export M2F_THREADS=${M2F_THREADS:-8}
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv; python -c \
  "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; } \
  2>&1 | tee "$OUT/machine.txt"
# the package, without touching the machine's torch/triton (no network there)
python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
# one process (-o addopts=: no xdist workers, which would swallow the printed latencies; the machine may lack xdist)
M2F_REQUIRE=gpu timeout 420 python -m pytest -o addopts= -q -s -p no:cacheprovider -m gpu tests/plugins/test_kernels.py \
  tests/plugins/test_launchers_gpu.py tests/plugins/test_plugin_enqueue_gpu.py tests/model/test_devices.py \
  > "$OUT/pytest-gpu.txt" 2>&1
tests_rc=$?
timeout 120 python benchmarks/kernels.py --runs 50 > "$OUT/kernels.txt" 2>&1
if python -c "import tensorrt" 2>/dev/null; then
  timeout 1800 python benchmarks/engines.py -o "$OUT/engines" > "$OUT/engines.txt" 2>&1
else
  echo "engines: not built, no TensorRT on this machine" > "$OUT/engines.txt"
fi
echo "== summary =="
cat "$OUT/machine.txt"
grep -E "^(M2fMSDeformAttn|M2fMaskedAttention) .* ms$" "$OUT/pytest-gpu.txt"
tail -3 "$OUT/pytest-gpu.txt"
echo "pytest exit status $tests_rc"
cat "$OUT/kernels.txt"
cat "$OUT/engines.txt"
