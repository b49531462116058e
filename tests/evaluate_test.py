"""Evaluation of a checkpoint reproduces training's numbers; test is refused."""

import jax
import numpy as np
import pytest

from maxmicro import checkpoint
from maxmicro import commands
from maxmicro import evaluate
from maxmicro import metrics
from maxmicro import reporting
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile


def test_eval_reproduces_the_training_evaluation(built_fake_ma52):
  workdir, result, _ = tiny_run.trained_workdir(built_fake_ma52)
  got, step, split = commands.evaluate_checkpoint(workdir)
  assert (step, split) == (tiny_run.NUM_STEPS, 'validation')
  # The checkpoint scored again as training scored it, on this machine: bit
  # for bit.
  assert got == result
  (line,) = reporting.read_metrics(workdir, 'eval')
  assert {k: line[k] for k in metrics.METRIC_NAMES} == got


def test_test_split_is_refused_before_data(built_fake_ma52):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  with pytest.raises(ValueError, match='no ground-truth labels'):
    commands.evaluate_checkpoint(workdir, split='test')


def test_config_with_another_model_is_refused(built_fake_ma52):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  config = tiny_run.tiny_config(built_fake_ma52)
  config.unlock()
  config.model.width = 16
  with pytest.raises(ValueError, match=r'model.width \(16 vs saved 8\)'):
    commands.evaluate_checkpoint(workdir, config)


def test_missing_checkpoint_is_named(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match='no checkpoint in'):
    commands.evaluate_checkpoint(str(tmp_path))
  with pytest.raises(checkpoint.CheckpointError, match='does not exist'):
    commands.evaluate_checkpoint(str(tmp_path / 'nowhere'))


class _ClipLogits:
  """A stand-in model: clip i of the batch gets the logits `variables[i]`."""

  def apply(self, variables, clips, train):
    assert not train and clips.shape[1:] == (2, 4, 4, 3), clips.shape
    return {'action_logits': variables}


def test_clips_are_averaged_after_the_softmax():
  """`average_clips='prob'`: C=2 clips whose mean logit and mean probability
  rank the classes differently."""
  logits = np.zeros((2, 52), np.float32)
  logits[0, :2] = (8.0, 0.0)   # Clip 1: sure of class 0.
  logits[1, :2] = (-8.0, 2.0)  # Clip 2: leans to class 1, rejects class 0.
  video = np.zeros((1, 2 * 2, 4, 4, 3), np.uint8)  # B=1, C=2 clips of T=2.
  scores = np.asarray(evaluate.score_videos(
      jax.numpy.asarray(logits), video, model=_ClipLogits(), num_segments=2))
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  # jax's float32 softmax (the max subtracted first) against numpy's float32
  # formula: a few ulps of each mean (1e-5 relative; 1e-8 absolute is ten
  # ulps of the smallest, 0.009).
  np.testing.assert_allclose(scores[0], probabilities.mean(0), rtol=1e-5,
                             atol=1e-8)
  assert np.argmax(scores[0]) == 0
  mean_logits = logits.mean(0)  # What averaging logits would rank first.
  assert np.argmax(mean_logits) == 1


@pytest.mark.parametrize('overlap, expected', [
    (True, ['read 0', 'read 1', 'fetch 0', 'read 2', 'fetch 1', 'fetch 2']),
    (False, ['read 0', 'fetch 0', 'read 1', 'fetch 1', 'read 2', 'fetch 2']),
])
def test_overlap_reads_the_next_batch_before_fetching_scores(
    monkeypatch, overlap, expected):
  """Overlapped, the host reads batch i+1 while the device scores batch i."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  events = []

  def batches():
    for index in range(3):
      events.append(f'read {index}')
      yield {'video': np.full((1, 2, 4, 4, 3), index, np.uint8),
             'label': np.array([index]), 'video_id': np.array([b'v']),
             'mask': np.array([True])}

  def fetch(array, mesh):
    del mesh
    events.append(f'fetch {int(np.asarray(array)[0, 0])}')
    return np.asarray(array)

  monkeypatch.setattr(evaluate.sharding, 'to_local', fetch)
  score_fn = jax.jit(lambda _, video: video.reshape(1, -1)[:, :2])
  predictions = evaluate.predict_split(score_fn, {}, batches(), mesh,
                                       overlap=overlap)
  assert events == expected
  np.testing.assert_array_equal(predictions.scores[:, 0], [0, 1, 2])
