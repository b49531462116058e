"""3D ResNets (I3D, SlowOnly): mmaction2's own ResNet3d / ResNet3dSlowOnly
and I3DHead through the converter, 2D ImageNet inflation, parameter
counts."""

import jax
import numpy as np
import pytest
import torch
import torchvision

from configs import i3d
from configs import slowonly
from maxmicro import convert
from maxmicro import models
from maxmicro.models import resnet3d_names
from tests import mmaction_reference
from tests import torch_reference

# mmaction2 keyword arguments of each config's backbone, as the official
# I3D config and mmaction2's SlowOnly define them.
REFERENCE_BACKBONES = {
    'i3d': lambda: mmaction_reference.resnet3d().ResNet3d(
        depth=50, pretrained=None, pretrained2d=False, conv1_kernel=(5, 7, 7),
        conv1_stride_t=2, pool1_stride_t=2, inflate=i3d.I3D_INFLATE,
        zero_init_residual=False),
    'slowonly': lambda: mmaction_reference.resnet3d_slowonly()
                .ResNet3dSlowOnly(depth=50, pretrained=None, lateral=False),
}
CONFIGS = {'i3d': i3d.get_config, 'slowonly': slowonly.get_config}


class Recognizer(torch.nn.Module):
  """mmaction2's Recognizer3D forward: backbone, then I3DHead."""

  def __init__(self, name):
    super().__init__()
    self.backbone = REFERENCE_BACKBONES[name]()
    self.cls_head = mmaction_reference.i3d_head().I3DHead(
        num_classes=52, in_channels=2048)

  def forward(self, video):  # (N, 3, T, H, W)
    return self.cls_head(self.backbone(video))


def _config(name, num_segments):
  config = CONFIGS[name]()
  config.model.dtype = 'float32'
  config.model.num_segments = num_segments
  return config


@pytest.mark.parametrize('name, shape', [('i3d', (16, 64, 64)),
                                         ('slowonly', (4, 64, 48))])
def test_logits_equal_mmaction2(name, shape):
  reference = torch_reference.randomize(Recognizer(name), seed=0)
  state_dict = {key: value.numpy()
                for key, value in reference.state_dict().items()}
  assert resnet3d_names.detect_layout(state_dict) == resnet3d_names.MMACTION
  config = _config(name, shape[0])
  video = np.random.default_rng(1).normal(
      size=(2,) + shape + (3,)).astype(np.float32)
  variables = convert.torch_to_variables(state_dict, config)
  ours = np.asarray(models.build_model(config).apply(
      variables, video)['action_logits'])
  with torch.no_grad():
    theirs = reference(torch.from_numpy(video).permute(0, 4, 1, 2, 3)).numpy()
  # XLA and torch sum the same float32 products in other orders (3D
  # convolutions of up to 4,608 terms over 50 layers, BatchNorm folded or
  # not): a few ulps each, a few 1e-6 of the logits' scale after the
  # stages; 1e-4 of that scale bounds it with margin.
  scale = np.abs(theirs).max()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


def test_imagenet_resnet50_is_inflated_as_mmaction2_does(tmp_path):
  """torchvision's ResNet-50 initialises I3D's backbone: each 2D kernel
  repeated over the 3D kernel's frames and divided by their count."""
  state_dict = torch_reference.randomize(torchvision.models.resnet50(),
                                         seed=0).state_dict()
  assert resnet3d_names.detect_layout(state_dict) == \
      resnet3d_names.IMAGENET_2D
  path = tmp_path / 'resnet50.pth'
  torch.save(state_dict, path)
  config = i3d.get_config()
  fresh = jax.device_get(models.build_model(config).init(
      jax.random.key(0), np.zeros((1, 32, 32, 32, 3), np.float32)))
  variables = convert.load_backbone_init(str(path), fresh, config)
  backbone = variables['params']['backbone']
  stats = variables['batch_stats']['backbone']
  two_d = {key: value.numpy() for key, value in state_dict.items()}
  stem = two_d['conv1.weight'].transpose(2, 3, 1, 0) / 5  # (5, 7, 7) stem.
  for frame in range(5):
    np.testing.assert_allclose(backbone['conv1']['conv']['kernel'][frame],
                               stem, rtol=1e-6)
  # layer2.1 is not inflated (a 1x1x1 conv1), layer2.0 is (3x1x1).
  np.testing.assert_array_equal(
      backbone['layer2_1']['conv1']['conv']['kernel'][0, 0, 0],
      two_d['layer2.1.conv1.weight'][:, :, 0, 0].T)
  np.testing.assert_allclose(
      backbone['layer2_0']['conv1']['conv']['kernel'][:, 0, 0],
      np.repeat(two_d['layer2.0.conv1.weight'][None, :, :, 0, 0].transpose(
          0, 2, 1), 3, axis=0) / 3, rtol=1e-6)
  np.testing.assert_array_equal(stats['layer4_2']['conv3']['bn']['var'],
                                two_d['layer4.2.bn3.running_var'])
  np.testing.assert_array_equal(
      backbone['layer1_0']['downsample']['bn']['scale'],
      two_d['layer1.0.downsample.1.weight'])


@pytest.mark.parametrize('name, expected', [('i3d', 27_330_420),
                                            ('slowonly', 31_741_044)])
def test_parameter_counts_are_the_mmaction2_modules(name, expected):
  """The official I3D-R50 MA-52 config and mmaction2's SlowOnly-R50, each
  with a 52-class I3DHead."""
  shapes = models.abstract_variables(CONFIGS[name]())['params']
  assert sum(leaf.size for leaf in jax.tree.leaves(shapes)) == expected
  reference = Recognizer(name)
  assert sum(p.numel() for p in reference.parameters()) == expected
