#!/bin/bash
# Every GPU measurement of benchmarks/RESULTS.md, in one command.
#
#   bash benchmarks/gpu.sh --fetch-wheels   # once, on a machine with pip and
#                                           # internet: the wheels the GPU
#                                           # image lacks, into .whl/
#   bash benchmarks/gpu.sh OUT [SECONDS]    # on the GPU machine (carry .whl)
#
# On the GPU machine it installs .whl/ into /tmp/site (the image brings JAX,
# Flax, Optax, Orbax and PyTorch with CUDA), then writes into OUT:
#   step.jsonl      the MANet-R50 and TSN-R50 train steps, batch 128 x 8 x
#                   224, bfloat16 (benchmarks/train_step.py), and a
#                   jax.profiler trace of 3 MANet steps (profile/);
#   torch.jsonl     the PyTorch reference's step on the same GPU, bfloat16
#                   autocast, then channels_last, then torch.compile (in its
#                   own process: each framework keeps the memory it takes);
#   vit_step.jsonl  ViT-B (configs/videomae.py:base) at batch 32 x 16 x 224,
#                   bfloat16, with its MFU; vit_torch.jsonl transformers'
#                   VideoMAE ViT-B, SDPA, bf16 autocast then torch.compile;
#   3d_step.jsonl   VSwin-S and I3D-R50 (configs/vswin.py:small,
#                   configs/i3d.py) at batch 16 x 32 x 224, with their MFU;
#                   swin_torch.jsonl / i3d_torch.jsonl torchvision's swin3d_s
#                   and mmaction2's I3D, bf16 autocast then torch.compile;
#   batch256.jsonl  MANet at batch 256, compile time included, or the cut
#                   off; batch256_no_autotune.jsonl the same without XLA's
#                   GPU autotuning;
#   end_to_end.json `run.py`'s loop on MA-52-shaped records, grain workers
#                   decoding on the host (benchmarks/end_to_end.py);
#   summary.md      the table of all of them, clips/s and ratios;
#   log.txt         everything printed.
# Each part has its share of SECONDS (default 560) and is cut off, not
# waited for, when it overruns: the later parts still run.
set -u -o pipefail
cd "$(dirname "$0")/.."

WHEELS=(ml_collections==1.1.0 grain==0.2.18 tensorflow-datasets==4.9.10
        array_record==0.8.6 av==18.1.0 simplejpeg==1.9.0
        tensorboardX==2.6.5 dm-tree==0.1.10 immutabledict==4.3.1
        simple-parsing==0.1.9 docstring_parser==0.18.0
        tensorflow-metadata==1.21.0 termcolor==3.3.0 toml==0.10.2
        promise==2.3 googleapis-common-protos portpicker importlib_resources==7.1.0
        # transformers' VideoMAE (the ViT-B reference) and what it imports.
        transformers==5.23.0 huggingface_hub==2.4.0 tokenizers==0.23.3
        safetensors==0.8.0 regex==2026.12.2 typer==0.29.2 hf-xet==1.8.0
        httpx2==2.17.0 httpcore2==2.17.0 shellingham==1.5.4 click==8.5.1
        rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2
        # mmaction2's I3D (the 3D ResNet reference; tests/mmaction_reference.py).
        mmaction2==1.2.0 mmengine==0.10.7 mmcv-lite==2.1.0 addict==2.4.0
        einops==0.8.2 yapf==0.43.0)

if [[ "${1:-}" == --fetch-wheels ]]; then
  mkdir -p .whl
  for wheel in "${WHEELS[@]}"; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "$wheel" ||
      python3 -m pip wheel --quiet --no-deps -w .whl "$wheel" || exit 1
  done
  du -sh .whl
  exit 0
fi

OUT=${1:?usage: bash benchmarks/gpu.sh OUT [SECONDS] | --fetch-wheels}
BUDGET=${2:-560}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
if [[ -d .whl ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
date -u; nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
python3 -c 'import jax, flax, torch; print("jax", jax.__version__, "flax",
    flax.__version__, "torch", torch.__version__, jax.devices())'

part() {  # part SHARE_PERCENT OUTPUT COMMAND...: runs within its share.
  local share=$1 output=$2; shift 2
  local seconds=$((BUDGET * share / 100))
  echo "== $* (at most ${seconds}s) -> $output"
  timeout --kill-after=10 "$seconds" "$@" | tee "$OUT/$output"
  local status=$?
  [[ $status == 124 || $status == 137 ]] &&
    echo "{\"cut_off_after_s\": $seconds, \"command\": \"$*\"}" \
        >> "$OUT/$output"
}

# The end-to-end run's records, written and built on the host's cores while
# the GPU runs the step benchmarks.
nice python3 benchmarks/end_to_end.py --root=/tmp/end_to_end --prepare_only \
    > "$OUT/prepare.log" 2>&1 &
preparing=$!

part 18 step.jsonl python3 benchmarks/train_step.py --batch=128 \
    --models=manet,tsn --steps=20 --torch=no --profile="$OUT/profile"
part 18 torch.jsonl python3 benchmarks/train_step.py --batch=128 \
    --models= --steps=20 --torch=yes
# Batch 256 did not compile within 190 s before; without autotuning (cuDNN
# and Triton try every algorithm of every convolution) tells whether it is
# the autotuner.
part 9 vit_step.jsonl python3 benchmarks/train_step.py --batch=32 \
    --models=vit-b --steps=20 --torch=no
part 9 vit_torch.jsonl python3 benchmarks/train_step.py --batch=32 \
    --models= --torch_model=vit-b --steps=20 --torch=yes \
    --torch_variants=bf16,bf16-compile
part 6 3d_step.jsonl python3 benchmarks/train_step.py --batch=16 \
    --models=vswin-s,i3d --steps=10 --torch=no
part 4 swin_torch.jsonl python3 benchmarks/train_step.py --batch=16 \
    --models= --torch_model=vswin-s --steps=10 --torch=yes \
    --torch_variants=bf16,bf16-compile
part 4 i3d_torch.jsonl python3 benchmarks/train_step.py --batch=16 \
    --models= --torch_model=i3d --steps=10 --torch=yes \
    --torch_variants=bf16,bf16-compile
part 6 batch256.jsonl python3 benchmarks/train_step.py --batch=256 \
    --models=manet --steps=10 --torch=no
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" \
part 6 batch256_no_autotune.jsonl python3 benchmarks/train_step.py \
    --batch=256 --models=manet --steps=10 --torch=no
wait "$preparing" || echo "preparing the end-to-end records failed: prepare.log"
part 20 end_to_end.json python3 benchmarks/end_to_end.py \
    --root=/tmp/end_to_end --batch=128

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = []
for name in ('step.jsonl', 'torch.jsonl', 'vit_step.jsonl',
             'vit_torch.jsonl', '3d_step.jsonl', 'swin_torch.jsonl',
             'i3d_torch.jsonl', 'batch256.jsonl',
             'batch256_no_autotune.jsonl'):
  path = out / name
  for line in path.read_text().splitlines() if path.exists() else []:
    if line.startswith('{') and 'clips_per_s' in line:
      rows.append(dict(json.loads(line), file=name))
print('| what | batch | compile s | s/step | clips/s | MFU |')
print('| --- | --- | --- | --- | --- | --- |')
for row in rows:
  what = f"{row['framework']} {row['model']} {row.get('variant', '')}"
  what += ' (no autotuning)' if 'no_autotune' in row['file'] else ''
  print(f"| {what} | {row['batch']} | {row.get('compile_s', '-')} | "
        f"{row['step_s']} | {row['clips_per_s']} | {row.get('mfu', '-')} |")
jax_manet = [r for r in rows if r['framework'] == 'jax' and
             r['model'] == 'manet-r50' and r['batch'] == 128]
for row in rows:
  if row['framework'] != 'torch':
    continue
  mine = jax_manet if row['model'] == 'manet-r50' else [
      r for r in rows if r['framework'] == 'jax' and
      r['model'] == row['model']]
  if mine:
    print(f"\nJAX {row['model']} over torch {row['variant']}: "
          f"{mine[0]['clips_per_s'] / row['clips_per_s']:.2f}x")
path = out / 'end_to_end.json'
lines = [l for l in path.read_text().splitlines() if l.startswith('{')] \
    if path.exists() else []
if lines:
  result = json.loads(lines[-1])
  print(f"\nEnd to end: {result.get('clips_per_sec_median')} clips/s, "
        f"data wait {result.get('data_wait_median')}, "
        f"{result.get('grain_workers')} grain workers")
EOF
