"""The predictor: same scores as evaluation on the same frames; top-k rows."""

import numpy as np
import pytest

from maxmicro import commands
from maxmicro import evaluate
from maxmicro import labels
from maxmicro import predict
from maxmicro.data import records
from maxmicro.data import video
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
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
