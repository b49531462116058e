"""Reading weight files: mmengine checkpoints' training state is read inert,
and nothing in a file runs."""

import os

import numpy as np
import pytest
import torch

from maxmicro import state_dict_files


class HistoryBuffer:
  """Like mmengine's `message_hub` entries: a class of its own, pickled."""

  def __init__(self):
    self.values = np.arange(3.0)


def touch(path):
  with open(path, 'w'):
    pass


class Payload:
  """A pickle that, unpickled with code, would call `function(path)`."""

  def __init__(self, function, path):
    self.function, self.path = function, path

  def __reduce__(self):
    return (self.function, (str(self.path),))


def test_an_mmengine_checkpoint_gives_its_weights(tmp_path):
  weights = {'backbone.conv1.conv.weight': torch.ones(2, 3)}
  path = tmp_path / 'epoch_40.pth'
  torch.save({'meta': {'epoch': 40, 'best': np.float64(0.6)},
              'state_dict': weights,
              'message_hub': {'log_scalars': {'train/loss': HistoryBuffer()}},
              'param_schedulers': [{'base_lrs': [0.001]}]}, path)
  state_dict = state_dict_files.read_state_dict(path)
  assert list(state_dict) == ['backbone.conv1.conv.weight']
  np.testing.assert_array_equal(state_dict['backbone.conv1.conv.weight'],
                                np.ones((2, 3), np.float32))


def test_code_in_a_file_does_not_run(tmp_path):
  """A function the file calls is an inert stand-in; one of a module torch
  blocks (os) makes the file unreadable, named."""
  touched = tmp_path / 'touched'
  path = tmp_path / 'evil.pth'
  torch.save({'state_dict': {'w': torch.zeros(1)},
              'meta': {'hook': Payload(touch, touched)}}, path)
  assert list(state_dict_files.read_state_dict(path)) == ['w']
  assert not touched.exists()
  torch.save({'state_dict': {'w': torch.zeros(1)},
              'meta': {'hook': Payload(os.system, f'touch {touched}')}}, path)
  with pytest.raises(state_dict_files.ConversionError, match='evil.pth'):
    state_dict_files.read_state_dict(path)
  assert not touched.exists()
