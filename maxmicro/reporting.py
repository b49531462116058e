"""What a user watches: a progress line, TensorBoard, `metrics.jsonl`.

`StepReporter` is the train loop's side of it: it fetches step metrics on
logging and saving steps only, and there applies the non-finite policy
(`check_finite`).

Only process 0 writes. `metrics.jsonl` gets one JSON object per line:
- train lines: `{"kind": "train", "step", "epoch", "loss", ...,
  "clips_per_sec"}`;
- evaluation lines: `{"kind": "eval", "split", "step", <the task's
  metrics (the eight ma52_metrics keys for recognition)>, "num_videos"}`.
TensorBoard event files (tensorboardX, no TensorFlow) go to
`WORKDIR/tensorboard` with `train/` and `eval_<split>/` prefixes. A task's
evaluator writes its own report files (recognition: `WORKDIR/eval/`).
"""

import json
import math
import os
import sys
import time

import jax
import numpy as np


METRICS_FILE = 'metrics.jsonl'


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
    """An evaluation line: the task's metrics at top level, split, step."""
    record = {'kind': 'eval', 'split': split, 'step': int(step)}
    record.update({key: float(value) for key, value in metrics.items()})
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


def check_finite(step, scalars, policy='stop', last_saved=None):
  """Under the 'stop' policy, raises FloatingPointError naming the first
  step whose loss or gradients were NaN or Inf.

  `scalars` are fetched step metrics; the state's `first_nonfinite_step`
  names a bad step between two fetches. The loop calls this before every
  evaluation and save, so no checkpoint follows a non-finite step.
  """
  if policy != 'stop':
    return
  first = int(scalars.get('first_nonfinite_step', 0))
  bad = [f'{name} is {scalars[name]}' for name in ('loss', 'grad_norm')
         if not np.isfinite(scalars[name])]
  if not bad and not first:
    return
  what = (', '.join(bad) if bad and first in (0, step) else
          'the loss or gradients were NaN or Inf')
  kept = ('the last good checkpoint is kept in the workdir'
          if last_saved is None else
          f'the last good checkpoint, step {last_saved}, is kept')
  raise FloatingPointError(
      f'{what} at step {first or step}: training diverged and stopped '
      f'({kept}). Lower config.optim.base_learning_rate or check the data, '
      'or set --config.train.nonfinite_policy=skip to skip such steps.')


class StepReporter:
  """Fetches step metrics when asked, applies the non-finite policy, and
  writes the progress line, `metrics.jsonl` and TensorBoard."""

  def __init__(self, config, *, steps_per_epoch, total_steps, workdir, state,
               last_saved, log):
    self.policy = config.train.nonfinite_policy
    self.steps_per_epoch = steps_per_epoch
    self.last_saved = last_saved
    self.log = log
    self.nonfinite_seen = int(jax.device_get(state.nonfinite_steps))
    self.writer = MetricWriter(workdir)
    self.progress = Progress(
        start_step=int(jax.device_get(state.step)), total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        global_batch_size=config.train.global_batch_size)

  def next_batch(self, iterator):
    started = time.perf_counter()
    batch = next(iterator)
    self.progress.add_data_time(time.perf_counter() - started)
    return batch

  def first_step_done(self, step, step_metrics, started):
    jax.block_until_ready(step_metrics)
    self.log(f'first step compiled and ran in '
             f'{time.perf_counter() - started:.1f}s')
    self.progress.restart(step)

  def check(self, step, step_metrics, write):
    """Raises under 'stop' if a step since the last check was non-finite;
    writes the train line if `write`. Called before every evaluation and
    save, so a diverged state is never evaluated or saved."""
    scalars = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
    check_finite(step, scalars, self.policy, self.last_saved)
    if scalars['nonfinite_steps'] > self.nonfinite_seen:
      self.nonfinite_seen = int(scalars['nonfinite_steps'])
      self.log(f'warning: skipped {self.nonfinite_seen} non-finite steps so '
               f'far (first at step {int(scalars["first_nonfinite_step"])})')
    if write:
      scalars.update(self.progress.report(step, scalars))
      scalars['epoch'] = step / self.steps_per_epoch
      self.writer.write_train(step, scalars)

  def evaluate(self, evaluator, state, step):
    """Evaluates, writes the metrics line and logs it; returns the metrics."""
    started = time.perf_counter()
    result = evaluator(state.variables, step)
    self.writer.write_eval(step, result.split, result.metrics,
                           result.num_examples)
    self.log(f'{result.split} at step {step} ({result.num_examples} '
             'videos): ' + ', '.join(f'{k} {100 * v:.2f}'
                                     for k, v in result.metrics.items()))
    self.progress.exclude(time.perf_counter() - started)
    return result.metrics

  def close(self):
    self.writer.close()
