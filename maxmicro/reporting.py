"""What a user watches: a progress line, TensorBoard, `metrics.jsonl`, reports.

Only process 0 writes. `metrics.jsonl` gets one JSON object per line:
- train lines: `{"kind": "train", "step", "epoch", "loss", ...,
  "clips_per_sec"}`;
- evaluation lines: `{"kind": "eval", "split", "step", <the eight
  ma52_metrics keys>, "num_videos"}`.
TensorBoard event files (tensorboardX, no TensorFlow) go to
`WORKDIR/tensorboard` with `train/` and `eval_<split>/` prefixes. After each
evaluation `WORKDIR/eval/` gets a metrics JSON with per-class F1, a confusion
matrix PNG and a per-class F1 chart.
"""

import json
import math
import os
import sys
import time

import jax
import numpy as np

from maxmicro import labels as labels_lib
from maxmicro import metrics as metrics_lib

METRICS_FILE = 'metrics.jsonl'
EVAL_SUBDIR = 'eval'


def _is_writer():
  return jax.process_index() == 0


class MetricWriter:
  """Appends scalars to `metrics.jsonl` and TensorBoard (process 0 only)."""

  def __init__(self, workdir, tensorboard=True):
    self._enabled = _is_writer()
    self._jsonl = None
    self._tensorboard = None
    if not self._enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, METRICS_FILE), 'a')
    if tensorboard:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tensorboard = tensorboardX.SummaryWriter(
          os.path.join(workdir, 'tensorboard'))

  def _write(self, record, prefix):
    if not self._enabled:
      return
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    if self._tensorboard is not None:
      for key, value in record.items():
        if isinstance(value, (int, float)) and key != 'step':
          self._tensorboard.add_scalar(f'{prefix}/{key}', value,
                                       record['step'])
      self._tensorboard.flush()

  def write_train(self, step, scalars):
    """A train line: `step` plus float scalars (loss, lr, clips/s, ...)."""
    record = {'kind': 'train', 'step': int(step)}
    record.update({key: float(value) for key, value in scalars.items()})
    self._write(record, 'train')

  def write_eval(self, step, split, metrics, num_videos):
    """An evaluation line: the eight metrics at top level, split, step."""
    record = {'kind': 'eval', 'split': split, 'step': int(step)}
    record.update({key: float(metrics[key])
                   for key in metrics_lib.METRIC_NAMES})
    record['num_videos'] = int(num_videos)
    self._write(record, f'eval_{split}')

  def close(self):
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tensorboard is not None:
      self._tensorboard.close()


def read_metrics(workdir, kind=None):
  """The records of `WORKDIR/metrics.jsonl` (of one `kind` if given)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as file:
    records = [json.loads(line) for line in file if line.strip()]
  return [r for r in records if kind is None or r.get('kind') == kind]


def _duration(seconds):
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


class Progress:
  """Throughput between reports, time waiting for data, and the ETA."""

  def __init__(self, *, start_step, total_steps, steps_per_epoch,
               global_batch_size, stream=None):
    self.total_steps = total_steps
    self.steps_per_epoch = steps_per_epoch
    self.global_batch_size = global_batch_size
    self._stream = stream or sys.stdout
    self._last_step = start_step
    self._last_time = time.perf_counter()
    self._data_seconds = 0.0
    self._excluded_seconds = 0.0

  def add_data_time(self, seconds):
    """Time the loop spent waiting for the input pipeline."""
    self._data_seconds += seconds

  def exclude(self, seconds):
    """Time (evaluation, first compile) that is not training throughput."""
    self._excluded_seconds += seconds

  def restart(self, step):
    """Measures from here (after the first step, which compiles)."""
    self._last_step, self._last_time = step, time.perf_counter()
    self._data_seconds = self._excluded_seconds = 0.0

  def report(self, step, scalars):
    """Prints the progress line; returns `{clips_per_sec, data_wait}`.

    Throughput and ETA cover the steps since the last report or restart.
    """
    now = time.perf_counter()
    elapsed = max(now - self._last_time - self._excluded_seconds, 1e-9)
    steps = step - self._last_step
    clips_per_sec = steps * self.global_batch_size / elapsed
    data_fraction = min(self._data_seconds / elapsed, 1.0)
    eta = ((self.total_steps - step) * elapsed / steps if steps
           else float('inf'))
    self._last_step, self._last_time = step, now
    self._data_seconds = self._excluded_seconds = 0.0
    if _is_writer():
      epoch = step / self.steps_per_epoch
      total_epochs = self.total_steps / self.steps_per_epoch
      speed = (f'{clips_per_sec:.1f} clips/s | data wait '
               f'{100 * data_fraction:.0f}% | ETA {_duration(eta)}'
               if steps else 'compiled')
      print(f'step {step}/{self.total_steps} | epoch {epoch:.2f}/'
            f'{total_epochs:.3g} | loss {scalars["loss"]:.4f} | lr '
            f'{scalars["learning_rate"]:.3g} | {speed}',
            file=self._stream, flush=True)
    if not steps:
      return {}
    return {'clips_per_sec': clips_per_sec, 'data_wait': data_fraction}


def write_eval_report(workdir, split, step, metrics, predictions):
  """Writes the metrics JSON and the two plots of one evaluation.

  Returns the paths written (none on processes other than 0).
  """
  if not _is_writer():
    return []
  from maxmicro import plots  # pylint: disable=g-import-not-at-top
  directory = os.path.join(workdir, EVAL_SUBDIR)
  os.makedirs(directory, exist_ok=True)
  stem = os.path.join(directory, f'{split}_step{step}')
  action_predictions = np.argmax(predictions.scores, axis=1)
  f1, present = metrics_lib.f1_per_class(
      predictions.labels, action_predictions, labels_lib.NUM_ACTIONS)
  report = {
      'split': split, 'step': int(step),
      'num_videos': int(len(predictions.labels)),
      **{key: float(metrics[key]) for key in metrics_lib.METRIC_NAMES},
      'per_class_f1': {
          f'{labels_lib.ACTION_CODES[i]} {labels_lib.ACTION_NAMES[i]}':
              (float(f1[i]) if present[i] else None)
          for i in range(labels_lib.NUM_ACTIONS)},
  }
  paths = [stem + '_metrics.json', stem + '_confusion.png',
           stem + '_f1.png']
  with open(paths[0], 'w') as file:
    json.dump(report, file, indent=1)
  matrix = metrics_lib.confusion_matrix(
      predictions.labels, action_predictions, labels_lib.NUM_ACTIONS)
  title = f'{split}, step {step}'
  plots.confusion_matrix(matrix, paths[1], title=title)
  plots.per_class_f1(f1, present, paths[2], title=title)
  return paths
