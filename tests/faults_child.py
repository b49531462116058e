"""`run.py` with one fault injected: the child process of the fault tests.

  MAXMICRO_FAULT=sigkill_after_step:1 python tests/faults_child.py <run.py flags>

MAXMICRO_FAULT (empty: none):
  sigkill_after_step:N, sigterm_after_step:N: the process signals itself
    once step N has run;
  sigkill_in_commit:N: SIGKILL while checkpoint N is written but not yet
    committed (in Orbax's rename of its tmp directory);
  sigkill_in_eval: SIGKILL when an evaluation starts;
  one_process_two_shards: one process trains on the batches two processes
    would read together (process 0's rows, then process 1's): the reference
    of the multi-host test.
MAXMICRO_RECORD_READS: a file to which this process appends `split<TAB>id`
  for every record it reads.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
import jax
import numpy as np
from orbax.checkpoint._src.path import atomicity

import run
from maxmicro import checkpoint
from maxmicro import config_checks
from maxmicro import reporting
from maxmicro import train
from maxmicro.data import pipeline
from maxmicro.data import records


def _signal_after_step(number, signum):
  make_step = train.Trainer.jit_train_step

  def jit_train_step(self):
    step_fn = make_step(self)

    def step(state, batch, rng):
      this_step = int(state.step) + 1  # Read before the state is donated.
      outputs = step_fn(state, batch, rng)
      if this_step == number:
        jax.block_until_ready(outputs)
        os.kill(os.getpid(), signum)
      return outputs
    return step
  train.Trainer.jit_train_step = jit_train_step


def _sigkill_in_commit(number):
  finalize = atomicity.AtomicRenameTemporaryPath.finalize

  async def killing_finalize(self):
    if self._final_path.name == str(number):  # pylint: disable=protected-access
      os.kill(os.getpid(), signal.SIGKILL)
    return await finalize(self)
  atomicity.AtomicRenameTemporaryPath.finalize = killing_finalize


def _sigkill_in_eval():
  def evaluate(*args, **kwargs):
    del args, kwargs
    os.kill(os.getpid(), signal.SIGKILL)
  reporting.StepReporter.evaluate = evaluate


class _TwoShards:
  """Batches of two processes' iterators, concatenated as one global batch."""

  def __init__(self, iterators):
    self.iterators = iterators

  def __iter__(self):
    return self

  def __next__(self):
    parts = [next(iterator) for iterator in self.iterators]
    return {key: np.concatenate([part[key] for part in parts])
            for key in parts[0]}


def _one_process_two_shards():
  make_iterator = pipeline.make_train_iterator

  def make_train_iterator(data_config, *, per_process_batch_size,
                          process_index, process_count, **kwargs):
    assert (process_index, process_count) == (0, 1)
    return _TwoShards([make_iterator(
        data_config, per_process_batch_size=per_process_batch_size // 2,
        process_index=index, process_count=2, **kwargs) for index in (0, 1)])
  pipeline.make_train_iterator = make_train_iterator
  save = checkpoint.save
  # The stand-in iterator has no grain state to save; this run never resumes.
  checkpoint.save = lambda *args, iterator=None, **kwargs: save(*args,
                                                                **kwargs)


def _record_reads(path):
  getitem = records.Ma52Records.__getitem__

  def recording_getitem(self, index):
    record = getitem(self, index)
    with open(path, 'a') as file:
      file.write(f'{self.split}\t{record["video_id"]}\n')
    return record
  records.Ma52Records.__getitem__ = recording_getitem


def main():
  fault, _, number = os.environ.get('MAXMICRO_FAULT', '').partition(':')
  if fault == 'sigkill_after_step':
    _signal_after_step(int(number), signal.SIGKILL)
  elif fault == 'sigterm_after_step':
    _signal_after_step(int(number), signal.SIGTERM)
  elif fault == 'sigkill_in_commit':
    _sigkill_in_commit(int(number))
  elif fault == 'sigkill_in_eval':
    _sigkill_in_eval()
  elif fault == 'one_process_two_shards':
    _one_process_two_shards()
  elif fault:
    raise ValueError(f'unknown MAXMICRO_FAULT {fault!r}')
  if os.environ.get('MAXMICRO_RECORD_READS'):
    _record_reads(os.environ['MAXMICRO_RECORD_READS'])
  app.run(run.main, flags_parser=config_checks.parse_flags)


if __name__ == '__main__':
  main()
