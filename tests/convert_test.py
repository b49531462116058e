"""Tests for maxmicro.convert against pure-PyTorch reference models.

The full ResNet-50 comparisons run 2 clips of 8 frames at 64x64; the error
and CLI cases use the `:tiny` model.
"""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import flax
import jax
import numpy as np
import torch

from configs import manet
from configs import tsm
from configs import tsn
from maxmicro import convert
from maxmicro import labels
from maxmicro import models
from maxmicro import predict
from tests import sample_videos
from tests import torch_reference

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Relative to the largest output magnitude: XLA and torch sum the same float32
# products in other orders through the trunk's 50 layers, a few 1e-7 of the
# outputs' scale; 1e-4 bounds it with margin.
TOLERANCE = 1e-4
CONFIG_MODULES = {'manet': manet, 'tsm': tsm, 'tsn': tsn}


def _config(name, arg='paper', image_size=64):
  config = CONFIG_MODULES[name].get_config(arg)
  config.model.dtype = 'float32'
  config.data.image_size = image_size
  return config


def _reference(config):
  """A randomised `MANetReference` with the architecture of `config`."""
  model_config = config.model
  return torch_reference.randomize(torch_reference.MANetReference(
      stage_sizes=model_config.stage_sizes or (3, 4, 6, 3),
      width=model_config.width,
      num_segments=model_config.num_segments,
      num_classes=model_config.num_classes,
      embedding_dim=model_config.embedding_dim,
      use_shift=model_config.use_shift,
      use_se=model_config.use_se), seed=0)


def _video(config, clips=2):
  size = config.data.image_size
  return np.random.default_rng(0).normal(
      size=(clips, config.model.num_segments, size, size, 3)).astype(
          np.float32)


def _torch_frames(video):
  """`(N, T, H, W, 3)` -> torch `(N*T, 3, H, W)`."""
  frames = video.reshape((-1,) + video.shape[2:]).transpose(0, 3, 1, 2)
  return torch.from_numpy(np.ascontiguousarray(frames))


def _relative_error(got, want):
  want = np.asarray(want)
  return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


def _temp_path(test, name):
  """A path `name` in a directory that lives as long as `test`.

  Not absltest's create_tempfile: under pytest its flags are unparsed.
  """
  return os.path.join(test.enterContext(tempfile.TemporaryDirectory()), name)


def _fresh_variables(config, fill):
  """Variables of the model of `config`, every value `fill`."""
  return flax.traverse_util.unflatten_dict({
      path: np.full(leaf.shape, fill, leaf.dtype)
      for path, leaf in flax.traverse_util.flatten_dict(
          models.abstract_variables(config)).items()})


class MatchesReferenceTest(parameterized.TestCase):

  @parameterized.parameters('manet', 'tsm', 'tsn')
  def test_logits_and_embedding_match(self, name):
    config = _config(name)
    reference = _reference(config)
    video = _video(config)
    with torch.no_grad():
      want_logits, want_embedding = reference(_torch_frames(video))

    # The clips' logits differ far beyond the tolerance: the comparison sees
    # the trunk, not only the head biases.
    self.assertGreater(_relative_error(want_logits[0], want_logits[1]),
                       20 * TOLERANCE)

    variables = convert.torch_to_variables(reference.state_dict(), config)
    outputs = jax.jit(models.build_model(config).apply)(variables, video)

    logits_error = _relative_error(outputs['action_logits'], want_logits)
    embedding_error = _relative_error(outputs['embedding'], want_embedding)
    print(f'{name}: relative error logits {logits_error:.2e}, '
          f'embedding {embedding_error:.2e}')
    self.assertLess(logits_error, TOLERANCE)
    self.assertLess(embedding_error, TOLERANCE)

  def test_torchvision_backbone_features_match(self):
    config = _config('tsn')
    reference = torch_reference.randomize(
        torch_reference.TorchvisionResNetReference(), seed=1)
    path = _temp_path(self, 'resnet50.pth')
    torch.save(reference.state_dict(), path)
    video = _video(config)
    with torch.no_grad():
      want = reference.features(_torch_frames(video)).numpy()
    want = want.reshape(video.shape[:2] + (-1,)).mean(axis=1)

    variables = convert.load_backbone_init(
        path, _fresh_variables(config, 0.0), config)
    outputs = jax.jit(models.build_model(config).apply)(variables, video)

    error = _relative_error(outputs['features'], want)
    print(f'torchvision: relative error features {error:.2e}')
    self.assertLess(error, TOLERANCE)


class ConvertTest(parameterized.TestCase):
  """Layouts, skipped keys and errors, on the tiny model."""

  def setUp(self):
    super().setUp()
    self.config = _config('manet', arg='tiny', image_size=32)
    self.state_dict = _reference(self.config).state_dict()

  @parameterized.named_parameters(
      ('torch_tensors', lambda state: state),
      ('numpy_arrays', lambda state: {k: v.numpy() for k, v in state.items()}),
      ('mmcv_checkpoint', lambda state: {'meta': {'epoch': 40},
                                         'state_dict': state}),
      ('data_parallel', lambda state: {'module.' + k: v
                                       for k, v in state.items()}))
  def test_accepts_state_dict_forms(self, wrap):
    variables = convert.torch_to_variables(wrap(self.state_dict), self.config)
    kernel = variables['params']['backbone']['layer1_0']['conv1']['kernel']
    torch_kernel = self.state_dict['backbone.layer1.0.conv1.conv.net.weight']
    # Weights are moved (transposed), not computed: exact.
    np.testing.assert_array_equal(kernel,
                                  torch_kernel.numpy().transpose(2, 3, 1, 0))

  def test_reports_skipped_keys(self):
    conversion = convert.convert_state_dict(self.state_dict, self.config)
    skipped = {reason.split()[0]: keys
               for reason, keys in conversion.skipped.items()}
    self.assertLen(skipped['action_p2_*'], 3 * 2)  # 3 layers x 2 blocks.
    self.assertLen(skipped['num_batches_tracked'], 1 + 2 * 4)
    self.assertIn('action_p2_*', conversion.summary())
    self.assertLen(conversion.variables,
                   len(jax.tree.leaves(models.abstract_variables(self.config))))

  def test_lists_missing_extra_and_misshaped_keys(self):
    state_dict = dict(self.state_dict)
    del state_dict['backbone.layer2.0.conv2.bn.running_var']
    state_dict['backbone.layer3.0.conv1.conv.net.weight'] = torch.zeros(1)
    state_dict['cls_head.fc_cls.weight'] = torch.zeros(51, 64)
    with self.assertRaises(convert.ConversionError) as raised:
      convert.torch_to_variables(state_dict, self.config)
    message = str(raised.exception)
    self.assertIn('1 missing: backbone.layer2.0.conv2.bn.running_var', message)
    self.assertIn('1 unexpected: backbone.layer3.0.conv1.conv.net.weight',
                  message)
    self.assertIn('cls_head.fc_cls.weight (51, 64) (the model wants (52, 64))',
                  message)

  def test_tsm_checkpoint_does_not_fit_manet(self):
    tsm_config = _config('tsm', arg='tiny', image_size=32)
    with self.assertRaisesRegex(convert.ConversionError,
                                r'missing: .*conv1\.conv\.fcce\.0\.weight'):
      convert.torch_to_variables(_reference(tsm_config).state_dict(),
                                 self.config)

  def test_torchvision_layout_needs_init_from(self):
    state_dict = torch_reference.TorchvisionResNetReference(
        stage_sizes=(1, 1), width=8).state_dict()
    with self.assertRaisesRegex(convert.ConversionError,
                                r'no weights for .*fc_cls.*init_from'):
      convert.torch_to_variables(state_dict, self.config)

  def test_unknown_layout(self):
    with self.assertRaisesRegex(convert.ConversionError, 'known layout'):
      convert.torch_to_variables({'encoder.weight': np.zeros(3)}, self.config)


class LoadBackboneInitTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.config = _config('manet', arg='tiny', image_size=32)

  def _save_torchvision(self, stage_sizes):
    state_dict = torch_reference.randomize(
        torch_reference.TorchvisionResNetReference(stage_sizes, width=8),
        seed=2).state_dict()
    path = _temp_path(self, 'resnet.pth')
    torch.save(state_dict, path)
    return path, state_dict

  def test_replaces_backbone_keeps_se_and_heads(self):
    path, state_dict = self._save_torchvision((1, 1))
    fresh = _fresh_variables(self.config, 7.0)
    variables = convert.load_backbone_init(path, fresh, self.config)
    params = variables['params']
    # Moved from the file, or kept as given: exact.
    np.testing.assert_array_equal(
        params['backbone']['layer2_0']['downsample_conv']['kernel'],
        state_dict['layer2.0.downsample.0.weight'].numpy().transpose(
            2, 3, 1, 0))
    np.testing.assert_array_equal(
        variables['batch_stats']['backbone']['bn1']['var'],
        state_dict['bn1.running_var'].numpy())
    for kept in (params['backbone']['layer1_0']['mix']['se']['fc1']['kernel'],
                 params['fc_cls']['kernel'], params['fc_emb_t']['bias']):
      np.testing.assert_array_equal(kept, np.full(kept.shape, 7.0))

  def test_takes_the_backbone_of_an_official_checkpoint(self):
    state_dict = _reference(self.config).state_dict()
    path = _temp_path(self, 'manet.pth')
    torch.save({'state_dict': state_dict}, path)
    variables = convert.load_backbone_init(
        path, _fresh_variables(self.config, 7.0), self.config)
    params = variables['params']
    # Moved from the file, or kept as given: exact.
    np.testing.assert_array_equal(
        params['backbone']['layer1_0']['mix']['se']['fc2']['kernel'],
        state_dict['backbone.layer1.0.conv1.conv.fcce.2.weight'].numpy().T)
    np.testing.assert_array_equal(params['fc_cls']['bias'],
                                  np.full(52, 7.0))

  def test_wrong_depth_names_the_file(self):
    path, _ = self._save_torchvision((1, 1, 1))
    with self.assertRaisesRegex(
        convert.ConversionError,
        f'init_from={path}: .*unexpected: layer3.0.conv1.weight'):
      convert.load_backbone_init(path, _fresh_variables(self.config, 0.0),
                                 self.config)

  def test_missing_file_names_the_file(self):
    path = _temp_path(self, 'absent.pth')
    with self.assertRaisesRegex(convert.ConversionError,
                                f'init_from={path}: no such file'):
      convert.load_backbone_init(path, {}, self.config)


class CommandLineTest(absltest.TestCase):

  def _run(self, *args):
    return subprocess.run(
        [sys.executable, '-m', 'maxmicro.convert', *args], cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS='cpu'),
        capture_output=True, text=True, check=False)

  def test_writes_a_restorable_workdir(self):
    config = _config('manet', arg='tiny', image_size=32)
    state_dict = _reference(config).state_dict()
    checkpoint = _temp_path(self, 'manet.pth')
    # mmcv keeps numpy scalars in `meta`; weights_only loading must allow them.
    meta = {'epoch': 40, 'hook_msgs': {'best_score': np.float64(0.61)}}
    torch.save({'meta': meta, 'state_dict': state_dict}, checkpoint)
    out = _temp_path(self, 'workdir')

    result = self._run(f'--torch_checkpoint={checkpoint}',
                       '--config=configs/manet.py:tiny', f'--out={out}')
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn('skipped', result.stdout)

    predictor = predict.load(out)
    self.assertEqual(predictor.config.model.width, 8)
    want = convert.torch_to_variables(state_dict, config)
    # The same conversion, saved and restored: exact.
    jax.tree.map(np.testing.assert_array_equal,
                 jax.device_get(predictor.variables), want)
    # run.py reads the converted workdir as it reads a training one.
    video = str(sample_videos.BIKES)
    predicted = subprocess.run(
        [sys.executable, 'run.py', f'--workdir={out}', '--mode=predict',
         f'--video={video}'], cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS='cpu'),
        capture_output=True, text=True, check=False)
    self.assertEqual(predicted.returncode, 0, predicted.stderr)
    top1 = labels.ACTION_NAMES[int(np.argmax(predictor.scores(video)))]
    self.assertIn(top1, predicted.stdout)

    again = self._run(f'--torch_checkpoint={checkpoint}',
                      '--config=configs/manet.py:tiny', f'--out={out}')
    self.assertNotEqual(again.returncode, 0)
    self.assertIn('already holds checkpoints', again.stderr)
    self.assertNotIn('Traceback', again.stderr)

  def test_bad_checkpoint_is_one_message(self):
    result = self._run('--torch_checkpoint=/nonexistent/manet.pth',
                       '--config=configs/manet.py:tiny',
                       f'--out={_temp_path(self, "workdir")}')
    self.assertNotEqual(result.returncode, 0)
    self.assertIn('/nonexistent/manet.pth: no such file', result.stderr)
    self.assertNotIn('Traceback', result.stderr)


if __name__ == '__main__':
  absltest.main()
