"""Fault injection, training side: kills, half-written checkpoints, a full
disk, and NaN steps. Each test ends with the run resumed or its last good
checkpoint restored, compared with the uninterrupted tiny run
(`tiny_run.trained_workdir`: 4 steps, checkpoints at 2 and 4)."""

import errno
import os
import shutil

import jax
import numpy as np
import pytest
from orbax.checkpoint._src.path import async_path

from maxmicro import checkpoint
from maxmicro import ops
from maxmicro import preemption
from maxmicro import reporting
from maxmicro import train
from tests import fault_launch
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile
SIGKILLED = -9


def _assert_bitwise_equal(workdir, reference, step=tiny_run.NUM_STEPS):
  # Both runs on this machine, same config and seed: bit for bit.
  jax.tree.map(np.testing.assert_array_equal, fault_launch.checkpoint_variables(workdir, step),
               fault_launch.checkpoint_variables(reference, step))


def _steps(workdir):
  directory = checkpoint.checkpoint_dir(workdir)
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _losses(workdir):
  return {r['step']: r['loss'] for r in reporting.read_metrics(workdir,
                                                               'train')}


def test_sigkill_three_times_and_sigterm_then_resume_is_bitwise_equal(
    built_fake_ma52, tmp_path):
  reference, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  workdir = tmp_path / 'run'
  flags = fault_launch.tiny_flags(built_fake_ma52, workdir)
  checkpoints = workdir / 'checkpoints'

  # 1. SIGKILL after step 1, before any checkpoint: nothing to resume.
  code, out, err = fault_launch.run(flags, fault='sigkill_after_step:1')
  assert code == SIGKILLED, (out, err)
  assert not _steps(workdir)

  # 2. SIGKILL while committing step 2: written to a tmp directory, never
  # renamed, so it is not a step; the next run starts over.
  code, out, err = fault_launch.run(flags, fault='sigkill_in_commit:2')
  assert code == SIGKILLED, (out, err)
  assert 'resuming' not in out
  assert [p.name for p in checkpoints.iterdir()
          if p.name.startswith('2.orbax-checkpoint-tmp')], list(
              checkpoints.iterdir())
  assert not _steps(workdir)

  # 3. SIGTERM after step 3: step 3 is saved and the run exits 42.
  code, out, err = fault_launch.run(flags, fault='sigterm_after_step:3')
  assert code == preemption.EXIT_PREEMPTED, (out, err)
  assert 'resuming' not in out
  assert 'preempted (SIGTERM): saved checkpoint step 3' in err
  assert 'Traceback' not in err
  assert _steps(workdir) == [2, 3]
  assert not any('orbax-checkpoint-tmp' in p.name
                 for p in checkpoints.iterdir())  # Cleaned up.

  # 4. SIGKILL in the final evaluation: step 4 trained but not saved.
  code, out, err = fault_launch.run(flags, fault='sigkill_in_eval')
  assert code == SIGKILLED, (out, err)
  assert 'resuming from step 3' in out
  assert _steps(workdir) == [2, 3]

  # 5. The last run finishes; nothing of the kills shows in the result.
  code, out, err = fault_launch.run(flags)
  assert code == 0, (out, err)
  assert 'resuming from step 3' in out
  _assert_bitwise_equal(workdir, reference)
  assert _losses(workdir) == _losses(reference)  # Bit for bit, too.


def _damage(path):
  """Overwrites every file under `path` with garbage of the same size."""
  for root, _, names in os.walk(path):
    for name in names:
      file_path = os.path.join(root, name)
      size = os.path.getsize(file_path)
      with open(file_path, 'wb') as file:
        file.write(b'\x00garbage' * (size // 8 + 1))


def test_half_written_and_damaged_steps_are_skipped(built_fake_ma52,
                                                    tmp_path):
  reference, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  checkpoints = workdir / 'checkpoints'
  # Step 6: all written, commit marker missing (a kill on a file system
  # without atomic rename). Step 8: an Orbax tmp directory, half written.
  shutil.copytree(checkpoints / '4', checkpoints / '6')
  (checkpoints / '6' / checkpoint.COMMIT_MARKER).unlink()
  shutil.copytree(checkpoints / '4' / 'variables',
                  checkpoints / '8.orbax-checkpoint-tmp-1' / 'variables')

  # Readers (eval, predict, submit) skip the uncommitted step.
  manager, step, _ = checkpoint.open_for_reading(str(workdir))
  manager.close()
  assert step == 4

  # Step 4 committed but its arrays damaged: training falls back to 2.
  _damage(checkpoints / '4' / 'variables')
  config = tiny_run.tiny_config(built_fake_ma52)
  _, lines = tiny_run.run(config, str(workdir))
  text = '\n'.join(lines)
  assert 'checkpoint step 6 is incomplete' in text
  assert 'checkpoint step 4 does not restore' in text
  assert 'resuming from step 2' in lines
  assert 'unreadable checkpoint step 4' in text
  set_aside = sorted(p.name for p in checkpoints.iterdir()
                     if not p.name.isdigit())
  assert set_aside[0].startswith('4.unreadable-')
  assert set_aside[1].startswith('6.incomplete-')
  _assert_bitwise_equal(workdir, reference)


def test_a_config_that_fits_no_checkpoint_is_not_a_fresh_start(
    built_fake_ma52, tmp_path):
  reference, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  shutil.copytree(reference, tmp_path / 'run')
  config = tiny_run.tiny_config(built_fake_ma52)
  config.unlock()
  config.model.width = 16  # Every checkpoint has other shapes.
  with pytest.raises(checkpoint.CheckpointError,
                     match='no checkpoint in .* restores into this config'):
    tiny_run.run(config, str(tmp_path / 'run'))
  assert _steps(tmp_path / 'run') == [2, 4]  # Nothing moved aside.


def test_no_space_left_stops_and_keeps_the_last_checkpoint(
    built_fake_ma52, tmp_path, monkeypatch):
  write_text = async_path.write_text

  async def full_disk(path, *args, **kwargs):
    if '2.orbax-checkpoint-tmp' in str(path):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return await write_text(path, *args, **kwargs)
  monkeypatch.setattr(async_path, 'write_text', full_disk)
  config = tiny_run.tiny_config(built_fake_ma52, checkpoint_every_steps=1)
  with pytest.raises(checkpoint.CheckpointError) as raised:
    tiny_run.run(config, str(tmp_path))
  message = str(raised.value)
  assert 'saving checkpoint step 2' in message
  assert 'No space left on device' in message
  assert 'the last complete checkpoint, step 1, is intact' in message
  assert [r['step'] for r in reporting.read_metrics(
      str(tmp_path), 'train')][-1] <= 3  # Stopped at the next save.
  monkeypatch.undo()
  manager, step, _ = checkpoint.open_for_reading(str(tmp_path))
  manager.close()
  assert step == 1
  variables = fault_launch.checkpoint_variables(tmp_path, 1)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(variables))


def _poison_step(monkeypatch, number):
  """Makes step `number`'s gradients NaN: its batch is all 255, which the
  patched normalisation turns into NaN frames (no clip of the fake data is
  all white). The loss itself stays finite (XLA's max-pool drops the NaNs
  going forward, not going back), so this is a NaN in the gradients only."""
  normalise = ops.normalise
  monkeypatch.setattr(ops, 'normalise', lambda video: jax.numpy.where(
      jax.numpy.all(video == 255), jax.numpy.nan, normalise(video)))
  make_step = train.Trainer.jit_train_step

  def jit_train_step(self):
    step_fn = make_step(self)

    def step(state, batch, rng):
      if int(state.step) + 1 == number:
        batch = dict(batch, video=jax.numpy.full_like(batch['video'], 255))
      return step_fn(state, batch, rng)
    return step
  monkeypatch.setattr(train.Trainer, 'jit_train_step', jit_train_step)
  # jit reuses the trace of an equal step function traced earlier in this
  # process, which would not see the patched normalisation.
  jax.clear_caches()


def test_nan_step_stops_naming_it_and_keeps_the_last_checkpoint(
    built_fake_ma52, tmp_path, monkeypatch):
  reference, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  _poison_step(monkeypatch, 3)
  config = tiny_run.tiny_config(built_fake_ma52)
  with pytest.raises(FloatingPointError,
                     match='grad_norm is nan at step 3.*checkpoint, step 2, is '
                     'kept.*nonfinite_policy=skip'):
    tiny_run.run(config, str(tmp_path))
  assert _steps(tmp_path) == [2]
  _assert_bitwise_equal(tmp_path, reference, step=2)


def test_nan_step_is_skipped_and_counted(built_fake_ma52, tmp_path,
                                         monkeypatch):
  _poison_step(monkeypatch, 3)
  config = tiny_run.tiny_config(built_fake_ma52, nonfinite_policy='skip',
                                checkpoint_every_steps=1)
  _, lines = tiny_run.run(config, str(tmp_path))
  assert 'warning: skipped 1 non-finite steps so far (first at step 3)' in lines
  records = {r['step']: r for r in reporting.read_metrics(str(tmp_path),
                                                          'train')}
  assert np.isnan(records[3]['grad_norm'])
  assert [records[s]['nonfinite_steps'] for s in (1, 2, 3, 4)] == [0, 0, 1, 1]
  assert records[4]['first_nonfinite_step'] == 3
  assert np.isfinite(records[4]['loss'])
  # The skipped step changed nothing: checkpoint 3 holds step 2's model, its
  # arrays selected unchanged (jnp.where), so bit for bit.
  jax.tree.map(np.testing.assert_array_equal, fault_launch.checkpoint_variables(tmp_path, 3),
               fault_launch.checkpoint_variables(tmp_path, 2))
  assert _steps(tmp_path)[-1] == 4
