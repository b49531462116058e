"""The mesh: 8 fake CPU devices train like 1, and checkpoints cross meshes.

The 8-device half runs in a subprocess (XLA fixes the device count at start).
"""

import json

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from maxmicro import checkpoint
from maxmicro import evaluate
from maxmicro import reporting
from maxmicro import sharding
from tests import cpu_devices
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile

MESH_OVERRIDES = {'global_batch_size': 8, 'checkpoint_every_steps': 1}


def test_fsdp_spec_splits_large_arrays_only():
  assert sharding._fsdp_spec((3, 3, 64, 256), 8) == P(None, None, None,
                                                      'data')
  assert sharding._fsdp_spec((2048, 52), 8) == P('data', None)
  assert sharding._fsdp_spec((52, 300), 8) == P()  # Small: replicated.
  assert sharding._fsdp_spec((3, 3, 7, 4001), 8) == P()  # Nothing divides.
  assert sharding._fsdp_spec((1024, 1024), 1) == P()


def test_global_batch_keeps_numbers_drops_strings():
  mesh = sharding.make_mesh()
  batch = sharding.global_batch(
      {'video': np.zeros((2, 3), np.uint8), 'label': np.arange(2),
       'video_id': np.asarray(['a', 'b']), 'mask': np.ones(2, bool)}, mesh)
  assert set(batch) == {'video', 'label', 'mask'}
  assert batch['video'].sharding.spec == P('data')


def test_eight_devices_train_like_one_and_restore_on_one(built_fake_ma52,
                                                         tmp_path):
  eight, one = str(tmp_path / 'eight'), str(tmp_path / 'one')
  eight_fsdp = str(tmp_path / 'eight_fsdp')
  output = cpu_devices.run_python(f"""
      import jax
      from absl import flags
      flags.FLAGS.mark_as_parsed()
      jax.config.update('jax_disable_most_optimizations', True)
      from maxmicro import sharding
      from tests import tiny_run
      assert jax.device_count() == 8
      try:
        sharding.check_batch_size(4 + 2, sharding.make_mesh())
        raise AssertionError('a batch of 6 on 8 devices was accepted')
      except ValueError as error:
        assert 'multiple of the device count (8)' in str(error), error
      class Built:
        overrides = {built_fake_ma52.overrides!r}
      config = tiny_run.tiny_config(Built, **{MESH_OVERRIDES!r})
      config.unlock(); config.eval.global_batch_size = 8; config.lock()
      tiny_run.run(config, {eight!r}, stop_at_step=3)
      # FSDP: the tiny model's arrays are small, so lower the threshold.
      sharding.FSDP_MIN_SIZE = 64
      config.unlock(); config.train.fsdp = True; config.lock()
      tiny_run.run(config, {eight_fsdp!r}, stop_at_step=3)
      print('done')
      """)
  assert 'done' in output
  config = tiny_run.tiny_config(built_fake_ma52, **MESH_OVERRIDES)
  tiny_run.run(config, one)
  losses = lambda workdir: {r['step']: r['loss'] for r in  # noqa: E731
                            reporting.read_metrics(workdir, 'train')}
  one_losses = losses(one)
  assert sorted(one_losses) == [1, 2, 3, 4]
  for workdir in (eight, eight_fsdp):
    assert sorted(losses(workdir)) == [1, 2, 3]
    for step in (1, 2, 3):
      # 8 devices split the batch sums and all-reduce them: float32 rounding
      # each step, 1e-5 relative in the losses.
      assert losses(workdir)[step] == pytest.approx(one_losses[step],
                                                    rel=1e-5), (workdir, step)

  # Resume the 8-device run on 1 device: it continues from step 3.
  _, lines = tiny_run.run(config, eight)
  assert 'resuming from step 3' in lines
  # Step 4 on one device from step 3's parameters, which carry that rounding:
  # 1e-5 relative, as above.
  assert losses(eight)[4] == pytest.approx(one_losses[4], rel=1e-5)
  restored = []
  for workdir in (eight, one):
    manager, step, _ = checkpoint.open_for_reading(workdir)
    assert step == 4
    restored.append(jax.device_get(evaluate.restore_variables(
        manager, step, config, sharding.replicated(sharding.make_mesh()))))
    manager.close()
  # The parameters after 4 SGD-momentum steps carry that rounding: 1e-4
  # relative, 1e-6 absolute near zero.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6), *restored)
  eval_lines = reporting.read_metrics(eight, 'eval')
  assert json.loads(json.dumps(eval_lines))[-1]['step'] == 4
