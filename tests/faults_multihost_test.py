"""Multi-host: two processes on this machine (`jax.distributed` on localhost,
gloo CPU collectives) train the tiny model together, each reading only its
shard, and match one process that trains on the same global batches."""

import collections
import re
import socket

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from maxmicro import metrics
from maxmicro import reporting
from maxmicro.data import records
from tests import fault_launch
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile


def _free_port():
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


def _reads(path):
  """split -> set of video ids a process read."""
  seen = collections.defaultdict(set)
  with open(path) as file:
    for line in file:
      split, video_id = line.rstrip('\n').split('\t')
      # The records' split is tfds' per-process `_EvenSplit(split='train', ...)`.
      seen[re.search(r"split='(\w+)'", split).group(1)].add(video_id)
  return seen


def _slice_ids(built, split, index):
  source = records.Ma52Records(
      str(built.data_dir), 'small',
      tfds.split_for_jax_process(split, process_index=index, process_count=2))
  return {source[i]['video_id'] for i in range(len(source))}


def test_two_processes_match_one_with_the_same_global_batch(built_fake_ma52,
                                                            tmp_path):
  port = _free_port()
  workdir, reference = tmp_path / 'two', tmp_path / 'one'
  children = [fault_launch.start(
      fault_launch.tiny_flags(built_fake_ma52, workdir),
      MAXMICRO_RECORD_READS=str(tmp_path / f'reads_{index}.txt'),
      JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES='2',
      JAX_PROCESS_ID=str(index)) for index in (0, 1)]
  code, out, err = fault_launch.run(
      fault_launch.tiny_flags(built_fake_ma52, reference),
      fault='one_process_two_shards')
  assert code == 0, (out, err)
  for child in children:
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, (out, err)
  # Same global batches, so the same losses, parameters and metrics up to
  # float rounding (gradients and BatchNorm statistics are all-reduced over
  # two processes instead of summed on one).
  two = reporting.read_metrics(str(workdir))
  one = reporting.read_metrics(str(reference))
  losses = lambda records: [r['loss'] for r in records  # noqa: E731
                            if r['kind'] == 'train']
  assert len(losses(two)) == tiny_run.NUM_STEPS
  np.testing.assert_allclose(losses(two), losses(one), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               fault_launch.checkpoint_variables(workdir, tiny_run.NUM_STEPS),
               fault_launch.checkpoint_variables(reference, tiny_run.NUM_STEPS))
  (eval_two,) = [r for r in two if r['kind'] == 'eval']
  (eval_one,) = [r for r in one if r['kind'] == 'eval']
  assert eval_two['num_videos'] == eval_one['num_videos'] == 52
  for name in metrics.METRIC_NAMES:
    assert eval_two[name] == pytest.approx(eval_one[name], abs=1e-6)
  # Each process read only its own shard of train and of validation.
  reads = [_reads(tmp_path / f'reads_{index}.txt') for index in (0, 1)]
  for split in ('train', 'validation'):
    shards = [_slice_ids(built_fake_ma52, split, index) for index in (0, 1)]
    assert not shards[0] & shards[1]
    for index in (0, 1):
      assert reads[index][split], (index, split)
      assert reads[index][split] <= shards[index], (index, split)
  assert reads[0]['validation'] | reads[1]['validation'] == (
      _slice_ids(built_fake_ma52, 'validation', 0) |
      _slice_ids(built_fake_ma52, 'validation', 1))
