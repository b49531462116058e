"""mmaction2 1.2's own modules as test references, imported one by one.

mmaction2 1.2.0's wheel lacks `mmaction/models/localizers/drn`, so importing
`mmaction.models` (whose `__init__` imports every model) fails. The modules
the tests compare with (backbones, heads, their loss) import nothing of it:
their parent packages are registered as bare namespaces, so that each module
loads alone. mmaction2, mmengine and mmcv-lite are test-only dependencies
(`requirements-dev-nodeps.txt`).
"""

import importlib
import os
import sys
import types

_PACKAGES = ('mmaction.models', 'mmaction.models.backbones',
             'mmaction.models.heads', 'mmaction.models.losses')


def _load(name):
  import mmaction  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(mmaction.__file__)
  for package in _PACKAGES:
    if package not in sys.modules:
      module = types.ModuleType(package)
      module.__path__ = [os.path.join(root, *package.split('.')[1:])]
      sys.modules[package] = module
  importlib.import_module('mmaction.models.losses.cross_entropy_loss')
  return importlib.import_module(name)


def resnet3d():
  """`mmaction.models.backbones.resnet3d` (ResNet3d)."""
  return _load('mmaction.models.backbones.resnet3d')


def resnet3d_slowonly():
  """`mmaction.models.backbones.resnet3d_slowonly` (ResNet3dSlowOnly)."""
  return _load('mmaction.models.backbones.resnet3d_slowonly')


def swin():
  """`mmaction.models.backbones.swin` (SwinTransformer3D)."""
  return _load('mmaction.models.backbones.swin')


def i3d_head():
  """`mmaction.models.heads.i3d_head` (I3DHead)."""
  return _load('mmaction.models.heads.i3d_head')
