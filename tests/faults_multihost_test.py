"""Multi-host: processes on this machine (`jax.distributed` on localhost, gloo
CPU collectives). Two train the tiny model together, each reading only its
shard, and match one process that trains on the same global batches; SIGTERM
to one of them stops both at the same step, and they resume; three evaluate
and submit a split that does not divide by three and match one."""

import collections
import csv
import json
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from maxmicro import commands
from maxmicro import metrics
from maxmicro import preemption
from maxmicro import reporting
from maxmicro import submit
from maxmicro.data import records
from tests import cpu_devices
from tests import fault_launch
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile


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


@pytest.fixture(scope='module')
def compilation_cache(tmp_path_factory):
  """A persistent compilation cache for this module's launches: they compile
  the same programs again and again (the same step in every run, the same
  scoring in eval and submit), and share them through it."""
  return str(tmp_path_factory.mktemp('jit_cache'))


@pytest.fixture(scope='module')
def two_process_run(built_fake_ma52, compilation_cache, tmp_path_factory):
  """The tiny run trained by two processes, uninterrupted: its workdir and
  the files of the record ids each process read."""
  directory = tmp_path_factory.mktemp('two_processes')
  reads = [directory / f'reads_{index}.txt' for index in (0, 1)]
  outcomes = fault_launch.launch(
      2, fault_launch.tiny_flags(built_fake_ma52, directory / 'run'),
      compilation_cache, env_of=lambda index: {'MAXMICRO_RECORD_READS': str(reads[index])})
  for code, out, err in outcomes:
    assert code == 0, (out, err)
  return directory / 'run', reads


def test_two_processes_match_one_with_the_same_global_batch(
    built_fake_ma52, two_process_run, tmp_path):
  workdir, reads = two_process_run
  reference = tmp_path / 'one'
  code, out, err = fault_launch.run(
      fault_launch.tiny_flags(built_fake_ma52, reference),
      fault='one_process_two_shards')
  assert code == 0, (out, err)
  # Same global batches, so the same losses, parameters and metrics up to
  # float rounding (gradients and BatchNorm statistics are all-reduced over
  # two processes instead of summed on one).
  two = reporting.read_metrics(str(workdir))
  one = reporting.read_metrics(str(reference))
  losses = lambda records: [r['loss'] for r in records  # noqa: E731
                            if r['kind'] == 'train']
  assert len(losses(two)) == tiny_run.NUM_STEPS
  # Float32 partial sums all-reduced instead of summed at once: a few ulps a
  # step (losses 1e-5); SGD momentum carries them into the parameters (1e-4
  # relative, 1e-6 absolute near zero).
  np.testing.assert_allclose(losses(two), losses(one), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               fault_launch.checkpoint_variables(workdir, tiny_run.NUM_STEPS),
               fault_launch.checkpoint_variables(reference, tiny_run.NUM_STEPS))
  (eval_two,) = [r for r in two if r['kind'] == 'eval']
  (eval_one,) = [r for r in one if r['kind'] == 'eval']
  assert eval_two['num_videos'] == eval_one['num_videos'] == 52
  # Float64 ratios of counts over the same 52 videos, from scores equal to
  # rounding: equal unless a near tie flips a prediction; 1e-6 is margin for
  # the float64 means.
  for name in metrics.METRIC_NAMES:
    assert eval_two[name] == pytest.approx(eval_one[name], abs=1e-6)
  # Each process read only its own shard of train and of validation.
  reads = [_reads(path) for path in reads]
  for split in ('train', 'validation'):
    shards = [_slice_ids(built_fake_ma52, split, index) for index in (0, 1)]
    assert not shards[0] & shards[1]
    for index in (0, 1):
      assert reads[index][split], (index, split)
      assert reads[index][split] <= shards[index], (index, split)
  assert reads[0]['validation'] | reads[1]['validation'] == (
      _slice_ids(built_fake_ma52, 'validation', 0) |
      _slice_ids(built_fake_ma52, 'validation', 1))


def test_sigterm_to_one_of_two_processes_stops_both_at_one_step(
    built_fake_ma52, two_process_run, compilation_cache, tmp_path):
  """SIGTERM to process 0 after step 1: JAX's preemption service tells
  process 1, both save the same step and exit 42; rerun, both resume from
  it and finish with the losses of the uninterrupted run."""
  reference, _ = two_process_run
  workdir = tmp_path / 'run'
  flags = fault_launch.tiny_flags(built_fake_ma52, workdir)
  outcomes = fault_launch.launch(
      2, flags, compilation_cache, env_of=lambda index: (
          {'fault': 'sigterm_after_step:1'} if index == 0 else {}))
  stops = set()
  for index, (code, out, err) in enumerate(outcomes):
    assert code == preemption.EXIT_PREEMPTED, (index, out, err)
    assert 'Traceback' not in err, (index, err)
    (step,) = re.findall(r'preempted \(SIGTERM\): saved checkpoint step '
                         r'(\d+)', err)
    stops.add(step)
  (stop,) = stops  # The same step on both.
  print(f'SIGTERM to process 0 after step 1: both stopped at step {stop}')
  # The service picks the step after the furthest one any process reached
  # when the notice went round: 2 or 3 here, the last (4) on a slow machine.
  assert 1 <= int(stop) <= tiny_run.NUM_STEPS
  saved = max(int(r['step']) for r in reporting.read_metrics(str(workdir),
                                                             'train'))
  assert saved == int(stop)
  assert (workdir / 'checkpoints' / stop).is_dir()
  outcomes = fault_launch.launch(2, flags, compilation_cache)
  for index, (code, out, err) in enumerate(outcomes):
    assert code == 0, (index, out, err)
  assert (f'resuming from step {stop}' in outcomes[0][1] or
          int(stop) == tiny_run.NUM_STEPS), outcomes[0][1]
  losses = lambda workdir: {r['step']: r['loss'] for r in  # noqa: E731
                            reporting.read_metrics(str(workdir), 'train')}
  # Two two-process runs on this machine, one resumed: bit for bit.
  assert losses(workdir) == losses(reference)


def _csv_rows(path):
  with open(path, newline='') as file:
    return list(csv.reader(file))


def test_three_processes_evaluate_and_submit_as_one(
    built_fake_ma52, compilation_cache, tmp_path):
  """52 validation and 52 test videos over 3 processes (18/17/17): the
  processes gather padded outputs and masks of equal shapes and drop the
  padding afterwards, so metrics and prediction.csv are one process's."""
  trained, result, _ = tiny_run.trained_workdir(built_fake_ma52)
  three, one = tmp_path / 'three', tmp_path / 'one'
  shutil.copytree(trained, three)
  shutil.copytree(trained, one)
  # The eval batch divides over 3 processes: 2 videos per process and batch.
  flags = fault_launch.tiny_flags(built_fake_ma52, three,
                                  **{'eval.global_batch_size': 6})
  for mode in ('eval', 'submit'):
    outcomes = fault_launch.launch(3, flags + [f'--mode={mode}'],
                                   compilation_cache)
    for index, (code, out, err) in enumerate(outcomes):
      assert code == 0, (mode, index, out, err)
  with open(three / 'eval' / f'validation_step{tiny_run.NUM_STEPS}'
            '_metrics.json') as file:
    report = json.load(file)
  assert report['num_videos'] == 52
  # The same checkpoint scored in batches of 6 over three processes and of 4
  # on one: scores equal to rounding, so as above (1e-6 is float64 margin).
  for name in metrics.METRIC_NAMES:
    assert report[name] == pytest.approx(result[name], abs=1e-6), name
  commands.submit_checkpoint(str(one))
  rows = _csv_rows(three / submit.CSV_NAME)
  assert len(rows) == 1 + 52
  assert rows == _csv_rows(one / submit.CSV_NAME)


_GATHER_CHILD = """
import sys
import jax
import numpy as np
from maxmicro import sharding
sharding.maybe_initialize_distributed()
index = jax.process_index()
even = sharding.gather_to_all({'x': np.full((2, 3), index)}, what='rows')
assert even['x'][:, 0].tolist() == [0, 0, 1, 1], even
try:
  sharding.gather_to_all({'x': np.zeros((3 - index, 3))}, what='test rows')
except sharding.CollectiveError as error:
  print(error)
  sys.exit(3)
"""


def test_gathering_unequal_shapes_is_one_paragraph_on_every_process():
  """What `gather_to_all` needs (equal shapes everywhere) is checked with a
  fixed-shape collective first: unequal shapes end every process with one
  paragraph naming the shapes and the launch, not an abort in gloo."""
  port = fault_launch.free_port()
  children = [subprocess.Popen(
      [sys.executable, '-c', _GATHER_CHILD], cwd=cpu_devices.REPO_ROOT,
      env=fault_launch.environment(
          JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES='2',
          JAX_PROCESS_ID=str(index)),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for index in (0, 1)]
  outputs = [child.communicate(timeout=120) for child in children]
  for index, (child, (out, err)) in enumerate(zip(children, outputs)):
    assert child.returncode == 3, (index, out, err)
    assert ('cannot gather the test rows: the processes hold different '
            'shapes (process 0: (3, 3); process 1: (2, 3))') in out
    assert (f'process {index} of 2 (JAX_COORDINATOR_ADDRESS=localhost:{port}, '
            f'JAX_NUM_PROCESSES=2, JAX_PROCESS_ID={index})') in out
