#!/usr/bin/env bash
# Every speed figure l2o quotes for an accelerator, in one command, JSON out and a markdown table:
#   1. meta-training throughput of the DM LSTM on the MNIST-shaped MLP, l2o (JAX) against the
#      PyTorch-eager reference on the same device, in one run (meta_train_throughput.py); on a GPU
#      first a check that the reference computes there what l2o computes (torch_equivalence.py);
#   2. PES throughput on the fast_velo distribution with augmentation (distribution_throughput.py);
#   3. the per-step cost of applying each architecture against optax Adam at 1M and 100M
#      parameters (optimizer_step_cost.py), with peak device memory;
#   4. the same in PyTorch, l2o.torch against torch.optim.Adam (torch_step_cost.py).
# On a GPU it runs the full sizes (within 8 minutes, compilation included, on an H200); on a CPU
# it runs the same scripts at small sizes, so that CI keeps it working.
#
# Usage: L2O_DATA_DIR=../shared/data bash benchmarks/accelerator.sh [OUT_DIR]  (default accelerator-results)
set -euo pipefail
OUT=$(realpath -m "${1:-accelerator-results}")
mkdir -p "$OUT"
if [ -n "${L2O_DATA_DIR:-}" ]; then export L2O_DATA_DIR=$(realpath "$L2O_DATA_DIR"); fi
cd "$(dirname "$0")"

BACKEND=$(python -c "import jax; print(jax.default_backend())")
if [ "$BACKEND" = cpu ]; then
  echo "no accelerator: small sizes (a check that the script works, not figures to quote)"
  QUICK=(--repeats 1)
  META=(--shapes mlp --meta-steps 1 --warmup 1 --mlp-population 1)
  PES=(--pairs 1 --unroll 5 --meta-steps 1)
  SIZES=(32,16,10)
  STEP=(--optimizers Adam,AdafacMLP,DM)
  TORCH=(--layers 32,16,10 --steps 1)
else
  QUICK=(--repeats 5)
  META=(--shapes mlp --meta-steps 3 --mlp-population 8)
  PES=(--pairs 8 --unroll 50 --meta-steps 3)
  SIZES=(784,1024,256,10 784,10000,10000,10)
  STEP=()
  TORCH=(--layers 784,1024,256,10 --steps 10)
fi

run() {  # NAME SCRIPT ARGS...: one script, its output in OUT/NAME.txt and OUT/NAME.json
  local name=$1 script=$2
  shift 2
  echo "== $name"
  python "$script" "$@" --json "$OUT/$name.json" | tee "$OUT/$name.txt"
}

if [ "$BACKEND" != cpu ] && python -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  # CPU runs of the same check are in the test suite (tests/test_torch_equivalence.py).
  run torch_equivalence torch_equivalence.py --shapes quadratic,mlp --quadratic-population 2 --unroll 5 --device cuda
fi
run meta_train meta_train_throughput.py "${QUICK[@]}" "${META[@]}"
run pes_fast_velo distribution_throughput.py "${QUICK[@]}" "${PES[@]}"
for LAYERS in "${SIZES[@]}"; do
  run "step_cost_${LAYERS//,/-}" optimizer_step_cost.py "${QUICK[@]}" "${STEP[@]}" --steps 5 --layers "$LAYERS"
done
if python -c "import torch" 2>/dev/null; then
  run torch_step_cost torch_step_cost.py "${QUICK[@]}" "${TORCH[@]}"
fi
python accelerator_table.py "$OUT" | tee "$OUT/table.md"
