"""The predictor: same scores as evaluation on the same frames; top-k rows.

Also what makes `--mode=predict` fast: decoding only the sampled frames
(the same frames as a full decode) and the persistent compilation cache.
"""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from maxmicro import commands
from maxmicro import compile_cache
from maxmicro import evaluate
from maxmicro import labels
from maxmicro import predict
from maxmicro.data import records
from maxmicro.data import synthetic
from maxmicro.data import transforms
from maxmicro.data import video
from tests import sample_videos
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fast_compile = tiny_run.fast_compile


@pytest.fixture(scope='module')
def predictor(built_fake_ma52):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  return predict.load(workdir)


def test_same_top5_as_evaluation(built_fake_ma52, predictor):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  inference = commands.load_inference(workdir)
  predictions = evaluate.predict_split(
      inference.score_fn, inference.variables,
      inference.iterator('validation'), inference.mesh)
  source = records.Ma52Records(str(built_fake_ma52.data_dir),
                               built_fake_ma52.builder_config, 'validation')
  for index in (0, 17, 51):
    record = source[index]
    frames = records.decode_frames(record['jpegs'],
                                   range(len(record['jpegs'])))
    row = predictions.video_ids.index(record['video_id'])
    expected = predictions.scores[row]
    # The predictor and evaluation run the same model, compiled and batched
    # apart: float32 rounding of the softmax (1e-5 relative, 1e-7 near zero).
    np.testing.assert_allclose(predictor.scores(frames), expected,
                               rtol=1e-5, atol=1e-7)
    top5 = [r['action_id'] for r in predictor(frames)]
    assert top5 == list(np.argsort(-expected, kind='stable')[:5])


def test_video_file_gives_named_top_k(built_fake_ma52, predictor):
  path = sorted((built_fake_ma52.manual_dir / 'videos_val').glob('*.mp4'))[0]
  rows = predictor(str(path), top_k=5)
  assert [r['rank'] for r in rows] == [1, 2, 3, 4, 5]
  probabilities = [r['probability'] for r in rows]
  assert probabilities == sorted(probabilities, reverse=True)
  assert 0 < sum(probabilities) <= 1 + 1e-6
  for row in rows:
    action = row['action_id']
    assert row['code'] == labels.ACTION_CODES[action]
    assert row['name'] == labels.ACTION_NAMES[action]
    assert row['body_name'] == labels.BODY_NAMES[row['body_id']]
    assert row['body_id'] == labels.ACTION_TO_BODY[action]
  text = predict.format_text(str(path), rows)
  assert rows[0]['name'] in text and rows[0]['code'] in text


def test_any_size_and_length(predictor):
  frames = np.random.default_rng(0).integers(0, 256, (7, 50, 90, 3),
                                             dtype=np.uint8)
  assert len(predictor(frames, top_k=3)) == 3


def test_bad_inputs(predictor, tmp_path):
  with pytest.raises(video.VideoError, match='missing'):
    predictor(str(tmp_path / 'none.mp4'))
  with pytest.raises(ValueError, match='uint8'):
    predictor(np.zeros((4, 8, 8), np.uint8))
  with pytest.raises(ValueError, match='folder without video files'):
    predict.find_videos(str(tmp_path))
  with pytest.raises(ValueError, match='does not exist'):
    predict.find_videos(str(tmp_path / 'nowhere'))


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
  """mp4 files of 1, 5, 8 and 37 frames, and a real one of 250."""
  folder = tmp_path_factory.mktemp('clips')
  paths = [str(sample_videos.BIKES)]
  for num_frames in (1, 5, 8, 37):
    path = str(folder / f'{num_frames}.mp4')
    video.write_video(path, synthetic.render_clip(
        num_frames % 52, size=(40, 48), num_frames=num_frames,
        rng=np.random.default_rng(num_frames)))
    paths.append(path)
  return paths


def test_sampled_decode_is_the_full_decode_sampled(clips, monkeypatch):
  for path in clips:
    frames = video.read_video(path)
    assert video.count_frames(path) == len(frames)
    for num_segments, num_clips in ((8, 1), (4, 3)):
      sample = functools.partial(transforms.sample_test_indices,
                                 num_segments=num_segments,
                                 num_clips=num_clips)
      expected = frames[sample(len(frames))]
      np.testing.assert_array_equal(
          video.read_sampled_frames(path, sample), expected)
      # A header that miscounts the frames costs a second decode, not a
      # different sample.
      for wrong in (len(frames) + 3, max(1, len(frames) - 2)):
        with monkeypatch.context() as patch:
          patch.setattr(video, 'count_frames', lambda _, n=wrong: n)
          np.testing.assert_array_equal(
              video.read_sampled_frames(path, sample), expected)


def test_video_file_is_read_as_evaluation_reads_it(clips, predictor):
  for path in clips:
    frames = video.read_video(path)
    clip = predictor.read_clip(path)
    np.testing.assert_array_equal(clip, predictor.preprocess(frames))
    np.testing.assert_array_equal(predictor.scores(path),
                                  predictor.scores(frames))


def test_compilation_cache_is_written_per_cpu(tmp_path):
  """A rerun finds the executable that the first run stored."""
  script = (
      'import sys, jax, jax.numpy as jnp\n'
      'from maxmicro import compile_cache\n'
      'compile_cache.enable(sys.argv[1])\n'
      'print(jax.config.jax_compilation_cache_dir)\n'
      'print(jax.jit(lambda x: jnp.sin(x) @ x)(jnp.ones((8, 8)))[0, 0])\n')
  result = subprocess.run(
      [sys.executable, '-c', script, str(tmp_path / 'cache')],
      env=dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS='cpu'),
      capture_output=True, text=True, check=True)
  directory = result.stdout.strip().splitlines()[0]
  assert os.path.dirname(directory) == str(tmp_path / 'cache')
  assert os.path.basename(directory).startswith('cpu-')
  assert os.listdir(directory)  # Cached although it compiled in far < 1 s.


def test_exported_forward_is_saved_and_read_back(built_fake_ma52, predictor,
                                                 monkeypatch, tmp_path):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  frames = np.random.default_rng(1).integers(0, 256, (9, 50, 60, 3),
                                             dtype=np.uint8)
  expected = predictor.scores(frames)
  monkeypatch.setattr(compile_cache, '_export_directory', str(tmp_path))
  # The exported forward is the same computation: equal up to the rounding
  # of another compilation's fusions (1e-6 relative, 1e-8 near zero).
  np.testing.assert_allclose(predict.load(workdir).scores(frames), expected,
                             rtol=1e-6, atol=1e-8)
  [saved] = os.listdir(tmp_path)
  assert saved.startswith('predict-') and saved.endswith('.jaxexport')

  def no_tracing(*_):
    raise AssertionError('traced again instead of reading the export')

  monkeypatch.setattr(compile_cache.jax.export, 'export', no_tracing)
  np.testing.assert_allclose(predict.load(workdir).scores(frames), expected,
                             rtol=1e-6, atol=1e-8)
  (tmp_path / saved).write_bytes(b'not an export')  # Unreadable: traced.
  monkeypatch.undo()
  monkeypatch.setattr(compile_cache, '_export_directory', str(tmp_path))
  np.testing.assert_allclose(predict.load(workdir).scores(frames), expected,
                             rtol=1e-6, atol=1e-8)
