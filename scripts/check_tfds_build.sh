#!/usr/bin/env bash
# Checks that `tfds build tfds_builders/ma52` (the TensorFlow-based CLI) builds
# MA-52 from a manual directory and that both TFDS readers read it back.
#
# Usage: scripts/check_tfds_build.sh PYTHON
#   PYTHON: the python of a venv with requirements.txt and
#   requirements-tfds.txt installed (its bin/ holds the `tfds` command).
# Writes a tiny fake MA-52 to a temporary directory, builds `ma52/small` with
# the CLI, checks the split sizes and the array_record shards, and reads
# examples back with `tfds.data_source` and with maxmicro's record reader.
# (TFDS' tf.data reader, `as_dataset`, does not read array_record files.)
set -euo pipefail

PYTHON=${1:?usage: scripts/check_tfds_build.sh PYTHON}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2

"$PYTHON" -c "
from maxmicro.data import synthetic
synthetic.write_fake_ma52('$WORK/manual', videos_per_class=(2, 1, 1),
                          size=(40, 48), num_frames=(10, 20))
"
"$(dirname "$PYTHON")/tfds" build tfds_builders/ma52 --config=small \
  --manual_dir="$WORK/manual" --data_dir="$WORK/data"

"$PYTHON" - "$WORK/data" <<'PY'
import pathlib
import sys

import numpy as np
import tensorflow_datasets as tfds

from maxmicro import labels
from tfds_builders.ma52 import ma52

data_dir = pathlib.Path(sys.argv[1])
shards = sorted(p.name for p in data_dir.glob('ma52/small/1.0.0/*array_record*'))
assert len(shards) == 3, shards
builder = ma52.Ma52(config='small', data_dir=data_dir)
sizes = {split: info.num_examples for split, info in builder.info.splits.items()}
assert sizes == {'train': 104, 'validation': 52, 'test': 52}, sizes
assert builder.info.metadata['splits_without_labels'] == ['test']

source = tfds.data_source('ma52/small', split='validation', data_dir=data_dir,
                          download=False)
assert len(source) == 52
for index in (0, 25, 51):
  example = source[index]
  video = np.stack(example['video'])
  assert video.dtype == np.uint8, video.dtype
  assert video.shape[1:] == (77, 64, 3) and 10 <= len(video) <= 16, video.shape
  assert example['video_id'] == f'0000_{index:02d}_val.mp4'.encode()
  assert example['label'] == index
  assert example['body_label'] == labels.ACTION_TO_BODY[index]
from maxmicro.data import records
record = records.Ma52Records(data_dir, 'small', 'train')[0]
assert record['video_id'] == '0000_00_train.mp4' and record['label'] == 0
print(f'tfds build check passed: {sizes}, shards {shards}')
PY
