"""Video Swin: torchvision's swin3d_t and mmaction2's own SwinTransformer3D
(1.x names, and 0.x's) through the converter, 2D ImageNet inflation,
parameter counts, an mmaction2 checkpoint served untrained."""

import csv
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
import torchvision

from configs import vswin
from maxmicro import convert
from maxmicro import models
from maxmicro import ops
from maxmicro import predict
from maxmicro.models import swin
from maxmicro.models import swin_names
from tests import cpu_devices
from tests import mmaction_reference
from tests import tiny_run
from tests import torch_reference


def _config(size='tiny', num_segments=32):
  config = vswin.get_config(size)
  config.model.dtype = 'float32'
  config.model.num_segments = num_segments
  return config


@pytest.fixture(scope='module')
def reference():
  """torchvision's swin3d_t with 52 classes and drawn weights, as numpy."""
  module = torch_reference.draw_every_tensor(
      torchvision.models.video.swin3d_t(num_classes=52))
  state_dict = {key: value.numpy() for key, value in
                module.state_dict().items()}
  return module, state_dict


def _torch_logits(module, video):
  with torch.no_grad():
    return module(torch.from_numpy(video).permute(0, 4, 1, 2, 3)).numpy()


def _logits(state_dict, config, video):
  variables = convert.torch_to_variables(state_dict, config)
  return np.asarray(models.build_model(config).apply(
      variables, video)['action_logits'])


def _assert_close(ours, theirs):
  # XLA and torch sum the same float32 products in other orders (dots of up
  # to 3072 terms, softmaxes over windows of up to 392 tokens, 12 blocks):
  # each differs by a few ulps, a few 1e-7 of the logits' scale after the
  # blocks; 1e-4 of that scale bounds it with margin.
  scale = np.abs(theirs).max()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


# (T, H, W): 20 frames give 10 patch steps (a shifted temporal window and
# temporal padding); 56 and 64x48 pad windows over space, clip windows at
# the later stages and merge odd sizes.
@pytest.mark.parametrize('shape', [(20, 56, 56), (8, 64, 48)])
def test_logits_equal_torchvision_swin3d_t(reference, shape):
  module, state_dict = reference
  assert swin_names.detect_layout(state_dict) == swin_names.TORCHVISION
  config = _config(num_segments=shape[0])
  video = np.random.default_rng(1).normal(
      size=(2,) + shape + (3,)).astype(np.float32)
  _assert_close(_logits(state_dict, config, video),
                _torch_logits(module, video))


class MmactionSwin(torch.nn.Module):
  """mmaction2's Recognizer3D of the MAC baseline: `SwinTransformer3D`, then
  `I3DHead`; `arch` a size name or `{embed_dims, depths, num_heads}`."""

  def __init__(self, arch='tiny', window_size=(8, 7, 7), out_indices=(3,)):
    super().__init__()
    self.backbone = mmaction_reference.swin().SwinTransformer3D(
        arch=arch, pretrained=None, pretrained2d=False,
        window_size=window_size, out_indices=out_indices)
    width = self.backbone.num_features[out_indices[-1]]
    self.cls_head = mmaction_reference.i3d_head().I3DHead(
        num_classes=52, in_channels=width)

  def forward(self, video):  # (N, 3, T, H, W)
    return self.cls_head(self.backbone(video))


@pytest.mark.parametrize('version', ['1.x', '0.x'])
def test_mmaction2_swin_gives_the_same_logits(version):
  """mmaction2 1.x's state dict (final norm `backbone.norm3`) and the same
  weights in 0.x's names (`backbone.norm`)."""
  module = torch_reference.draw_every_tensor(MmactionSwin())
  state_dict = _mmaction_state_dict(module)
  layout = swin_names.MMACTION
  if version == '0.x':
    state_dict = {key.replace('backbone.norm3.', 'backbone.norm.'): value
                  for key, value in state_dict.items()}
    layout = swin_names.MMACTION0
  assert swin_names.detect_layout(state_dict) == layout
  config = _config(num_segments=20)
  video = np.random.default_rng(2).normal(
      size=(1, 20, 56, 56, 3)).astype(np.float32)
  _assert_close(_logits(state_dict, config, video),
                _torch_logits(module, video))


def _mmaction_state_dict(module):
  return {key: value.numpy() for key, value in module.state_dict().items()}


def test_imagenet_2d_swin_is_inflated_as_mmaction2_does(tmp_path):
  """A 2D Swin's file (`layers.*`, 4-D patch kernel, 13x13-offset tables)
  initialises the backbone: the kernel repeated over the tubelet's 2 frames
  and halved, each table repeated over the 15 temporal offsets."""
  rng = np.random.default_rng(3)
  three_d = _mmaction_state_dict(
      torch_reference.draw_every_tensor(MmactionSwin()))
  two_d = {}
  for key, value in three_d.items():
    if key.startswith('cls_head.'):
      key = 'head.' + key.removeprefix('cls_head.fc_cls.')
      value = rng.normal(size=(1000,) + value.shape[1:])  # ImageNet's.
    key = key.removeprefix('backbone.').replace('norm3.', 'norm.')
    if key == 'patch_embed.proj.weight':
      value = rng.normal(size=value.shape[:2] + value.shape[3:])
    elif key.endswith('relative_position_bias_table'):
      value = rng.normal(size=(13 * 13, value.shape[1]))
    elif key.endswith('relative_position_index'):
      value = rng.integers(0, 169, size=(49, 49))
    two_d[key] = np.asarray(value, np.float32)
  assert swin_names.detect_layout(two_d) == swin_names.IMAGENET_2D
  path = tmp_path / 'swin_tiny_patch4_window7_224.pth'
  torch.save({'model': {k: torch.from_numpy(v) for k, v in two_d.items()}},
             path)
  # Swin-T's variables do not depend on the clip's size: a small one.
  config = _config(num_segments=4)
  fresh = jax.device_get(models.build_model(config).init(
      jax.random.key(0), np.zeros((1, 4, 32, 32, 3), np.float32)))
  variables = convert.load_backbone_init(str(path), fresh, config)
  backbone = variables['params']['backbone']
  kernel = two_d['patch_embed.proj.weight'].transpose(2, 3, 1, 0) / 2
  for frame in range(2):
    np.testing.assert_array_equal(
        backbone['patch_embed_proj']['kernel'][frame], kernel)
  table = backbone['layers_2_blocks_3']['attn']['relative_position_bias_table']
  assert table.shape == (15 * 13 * 13, 12)
  table_2d = two_d['layers.2.blocks.3.attn.relative_position_bias_table']
  np.testing.assert_array_equal(table, np.tile(table_2d, (15, 1)))
  np.testing.assert_array_equal(backbone['norm']['scale'],
                                two_d['norm.weight'])
  # The head is ImageNet's: the classifier keeps its fresh one.
  np.testing.assert_array_equal(variables['params']['fc_cls']['kernel'],
                                fresh['params']['fc_cls']['kernel'])


def test_a_2d_window_of_another_size_is_refused():
  config = _config()
  table = np.zeros((23 * 23, 3), np.float32)  # A 12x12 window's.
  with pytest.raises(ValueError, match='12x12|other than'):
    swin_names.prepare(
        {'layers.0.blocks.0.attn.relative_position_bias_table': table},
        swin_names.IMAGENET_2D, config)


@pytest.mark.parametrize('size, builder, expected', [
    ('tiny', torchvision.models.video.swin3d_t, 27_890_458),
    ('small', torchvision.models.video.swin3d_s, 49_549_066)])
def test_parameter_counts_are_the_reference_modules(size, builder, expected):
  """The MAC baseline's VSwin-S (and -T) with 52 classes, as mmaction2's
  `SwinTransformer3D` + `I3DHead` and torchvision's swin3d count them."""
  shapes = models.abstract_variables(vswin.get_config(size))['params']
  assert sum(leaf.size for leaf in jax.tree.leaves(shapes)) == expected
  assert sum(p.numel() for p in MmactionSwin(size).parameters()) == expected
  assert sum(p.numel() for p in builder(num_classes=52).parameters()) == \
      expected


def test_window_mask_separates_the_shifted_regions():
  """On a 4x4 plane (one frame) with 2x2 windows shifted by 1, the last
  window holds four regions; the first none but its own."""
  mask = swin.shifted_window_mask((1, 4, 4), (1, 2, 2), (0, 1, 1))
  assert mask.shape == (4, 4, 4)
  assert not mask[0].any()
  np.testing.assert_array_equal(mask[3] == 0, np.eye(4, dtype=bool))


def test_an_mmaction2_checkpoint_evaluates_and_submits_untrained(
    built_fake_ma52, tmp_path):
  """The MAC baseline's use: an mmaction2 Video Swin checkpoint converted
  into a workdir, then `run.py --mode=eval|submit|predict` with no training;
  predict's probabilities are the reference module's on the same clip."""
  reference = torch_reference.draw_every_tensor(MmactionSwin(
      arch=dict(embed_dims=16, depths=[2, 2], num_heads=[1, 2]),
      window_size=(2, 4, 4), out_indices=(1,)))
  state_dict = reference.state_dict()
  path = tmp_path / 'best_acc_top1_epoch_39.pth'
  torch.save({'meta': {'epoch': 39}, 'state_dict': state_dict}, path)
  out = str(tmp_path / 'workdir')
  overrides = [f'--config.{key}={value}'
               for key, value in built_fake_ma52.overrides.items()]
  converted = subprocess.run(
      [sys.executable, '-m', 'maxmicro.convert', f'--torch_checkpoint={path}',
       '--config=configs/vswin.py:micro', *overrides, f'--out={out}'],
      cwd=cpu_devices.REPO_ROOT, capture_output=True, text=True, check=False,
      env=dict(os.environ, PYTHONPATH=cpu_devices.REPO_ROOT,
               JAX_PLATFORMS='cpu'))
  assert converted.returncode == 0, converted.stderr
  assert swin_names.MMACTION in converted.stdout

  evaluated = tiny_run.run_py(f'--workdir={out}', '--mode=eval')
  assert evaluated.returncode == 0, evaluated.stderr
  assert 'f1_mean' in evaluated.stdout
  submitted = tiny_run.run_py(f'--workdir={out}', '--mode=submit')
  assert submitted.returncode == 0, submitted.stderr
  with open(os.path.join(out, 'prediction.csv'), newline='') as file:
    assert len(list(csv.reader(file))) == 1 + 52

  video = sorted((built_fake_ma52.manual_dir / 'videos_val').glob('*.mp4'))[0]
  predictor = predict.load(out)
  assert predictor.config.data.frame_interval == 2
  clip = np.array(ops.normalise(predictor.read_clip(str(video))[None]))
  with torch.no_grad():
    logits = reference(torch.from_numpy(clip).permute(0, 4, 1, 2, 3))
  expected = torch.softmax(logits, -1).numpy()[0]
  # Probabilities through a 4-block Swin, in two float32 implementations:
  # a few ulps each; 1e-5 absolute on values in [0, 1] bounds them.
  np.testing.assert_allclose(predictor.scores(str(video)), expected,
                             rtol=0, atol=1e-5)
