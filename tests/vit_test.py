"""The ViT family: sizes and scale (FSDP, remat).

Conversion from PyTorch and equality with transformers' VideoMAE are in
convert_vit_test.py; training, resuming and serving in
clip_backbones_test.py; the detector on ViT features in
detection_clip_backbones_test.py.
"""

from unittest import mock

import jax
import numpy as np
import pytest

from configs import videomae
from maxmicro import models
from maxmicro import sharding
from maxmicro import tasks
from maxmicro import train
from maxmicro.models import vit
from tests import cpu_devices


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('size, expected', [('small', 21_899_956),
                                            ('base', 86_267_188)])
def test_parameter_counts_are_the_official_modules(size, expected):
  # VideoMAE V2's `vit_{small,base}_patch16_224(num_classes=52)` at 16x224
  # (the fixed position table is a buffer there and not a parameter here).
  config = videomae.get_config(f'size={size}')
  assert config.model.num_segments == 16 and config.data.image_size == 224
  variables = models.abstract_variables(config)
  assert _count(variables['params']) == expected
  assert not variables['batch_stats']


def test_head_outputs_and_step_features():
  config = videomae.get_config('tiny')
  model = models.build_model(config)
  video = jax.random.normal(jax.random.key(0), models.input_shape(config, 2))
  variables = model.init(jax.random.key(1), video)
  outputs = model.apply(variables, video)
  assert set(outputs) == {'action_logits', 'features'}
  assert outputs['action_logits'].shape == (2, 52)
  trunk = models.build_trunk(config)
  frames = trunk.apply({'params': variables['params']['backbone']}, video)
  assert frames.shape == (2, config.model.num_segments, config.model.embed_dim)
  # A tubelet's feature stands for both of its frames (repeated: exact).
  np.testing.assert_array_equal(frames[:, 0], frames[:, 1])
  assert not np.array_equal(frames[:, 1], frames[:, 2])
  # The label-embedding branch is a switch on any backbone.
  config.model.embedding_head = True
  outputs = models.build_model(config).apply(
      models.build_model(config).init(jax.random.key(1), video), video)
  assert outputs['embedding'].shape == (2, config.model.embedding_dim)


def test_remat_gives_the_same_gradients():
  config = videomae.get_config('tiny')
  config.model.drop_path_rate = 0.2
  video = jax.random.normal(jax.random.key(0), models.input_shape(config, 2))
  params = models.build_model(config).init(jax.random.key(1), video)['params']

  def grads(remat):
    config.model.remat = remat
    model = models.build_model(config)
    loss = lambda p: model.apply(  # noqa: E731
        {'params': p}, video, train=True,
        rngs={'dropout': jax.random.key(2)})['action_logits'].sum()
    return jax.grad(loss)(params)
  # Recomputing the same float32 forward in the backward pass: the same
  # operations on the same values, up to XLA fusing them differently
  # (a few ulps of the largest gradient).
  plain, recomputed = grads(False), grads(True)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(recomputed)):
    np.testing.assert_allclose(a, b, rtol=1e-5,
                               atol=1e-6 * np.abs(a).max())


def _fsdp_config():
  """ViT-B widths at two blocks on 4 frames of 32x32 (2x2 patches)."""
  config = videomae.get_config('size=base')
  config.model.depth = 2
  config.model.num_segments = 4
  config.model.dtype = 'float32'
  config.model.dropout_rate = 0.0
  config.data.image_size = 32
  config.train.global_batch_size = 8
  return config


def _one_step(config):
  """Loss and updated params of one train step on a fixed batch."""
  mesh = sharding.make_mesh()
  trainer = train.make_trainer(config, tasks.get_task(config), mesh,
                               num_train_examples=64)
  state = trainer.init_state(jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = sharding.global_batch(
      {'video': rng.integers(0, 256, (8, 4, 32, 32, 3), dtype=np.uint8),
       'label': np.arange(8, dtype=np.int32)}, mesh)
  state, step_metrics = trainer.jit_train_step()(state, batch,
                                                 jax.random.key(1))
  return state, float(step_metrics['loss'])


def test_fsdp_on_eight_devices_equals_one_device(tmp_path):
  output = cpu_devices.run_python(f"""
      import jax, numpy as np
      from tests import vit_test
      assert jax.device_count() == 8
      state, loss = vit_test._one_step(vit_test._fsdp_config_fsdp())
      qkv = state.params['model']['backbone']['blocks_0']['attn']['qkv']
      assert len(qkv['kernel'].sharding.device_set) == 8
      assert qkv['kernel'].addressable_shards[0].data.size * 8 == \\
          qkv['kernel'].size, 'not split over the devices'
      np.savez({str(tmp_path / 'eight.npz')!r}, loss=loss,
               **vit_test._flat(jax.device_get(state.params)))
      print('done')
      """)
  assert 'done' in output
  state, loss = _one_step(_fsdp_config())
  eight = np.load(tmp_path / 'eight.npz')
  # Float32 sums split over 8 devices and gathered: another summation order
  # for the batch mean and the gradient reductions.
  assert float(eight['loss']) == pytest.approx(loss, rel=1e-6)
  for name, value in _flat(jax.device_get(state.params)).items():
    # AdamW's first step moves each parameter by about lr * sign(g): the
    # order of the gradients' float32 sums only shows in g's last bits.
    np.testing.assert_allclose(eight[name], value, rtol=1e-5, atol=1e-7,
                               err_msg=name)


def _fsdp_config_fsdp():
  config = _fsdp_config()
  config.train.fsdp = True
  return config


def _flat(tree):
  return {'/'.join(str(k.key) for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_vit_g_state_per_device_is_about_an_eighth():
  output = cpu_devices.run_python("""
      import jax, numpy as np
      from configs import videomae
      from maxmicro import sharding, tasks, train
      config = videomae.get_config('size=giant')
      config.train.fsdp = True
      trainer = train.make_trainer(config, tasks.get_task(config),
                                   sharding.make_mesh(), 1000)
      total = per_device = 0
      for leaf in jax.tree.leaves(trainer.abstract_state):
        size = np.dtype(leaf.dtype).itemsize
        total += size * int(np.prod(leaf.shape))
        per_device += size * int(np.prod(
            leaf.sharding.shard_shape(leaf.shape)))
      print('ratio', per_device / total, 'total_gib', total / 2**30)
      """)
  ratio = float(output.split('ratio ')[1].split()[0])
  total_gib = float(output.split('total_gib ')[1].split()[0])
  # Parameters and both Adam moments of about 1.0e9 parameters.
  assert 10 < total_gib < 14
  # Only small leaves (norms, biases) stay replicated.
  assert 1 / 8 <= ratio < 1 / 8 * 1.02


def test_attention_is_the_same_on_every_backend():
  """The heads-first attention XLA:CPU runs equals the one GPUs and TPUs run
  (`jax.nn.dot_product_attention`), computed here on the CPU."""
  config = videomae.get_config('tiny')
  model = models.build_model(config)
  video = np.random.default_rng(0).normal(
      size=models.input_shape(config, 2)).astype(np.float32)
  variables = model.init(jax.random.key(0), video)
  cpu = model.apply(variables, video)['action_logits']
  with mock.patch.object(vit.jax, 'default_backend', lambda: 'gpu'):
    fused = model.apply(variables, video)['action_logits']
  # The same float32 products, summed in another order: a few ulps.
  scale = np.abs(np.asarray(cpu)).max()
  np.testing.assert_allclose(fused, cpu, rtol=1e-5, atol=1e-5 * scale)
