"""The challenge submission file, byte for byte."""

import zipfile

import numpy as np
import pytest

from maxmicro import labels
from maxmicro import submit


def test_prediction_csv_format(tmp_path):
  scores = np.zeros((2, 52), np.float32)
  scores[0, [10, 3, 40, 0, 51]] = [5, 4, 3, 2, 1]   # head, body, head-hand..
  scores[1, [24, 25, 26, 27, 28]] = [9, 8, 7, 6, 5]  # all lower limb
  path = tmp_path / 'prediction.csv'
  submit.write_prediction_csv(path, ['test0000.mp4', 'test0001.mp4'], scores)
  assert path.read_bytes() == (
      b'vid,action_pred_1,action_pred_2,action_pred_3,action_pred_4,'
      b'action_pred_5,body_pred_1,body_pred_2,body_pred_3,body_pred_4,'
      b'body_pred_5\r\n'
      b'test0000.mp4,10,3,40,0,51,1,0,5,0,6\r\n'
      b'test0001.mp4,24,25,26,27,28,3,3,3,3,3\r\n')


def test_body_predictions_follow_actions(tmp_path):
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(30, 52))
  ids = [f'test{i:04d}.mp4' for i in range(30)]
  path = tmp_path / 'prediction.csv'
  submit.write_prediction_csv(path, ids, scores)
  rows = [line.split(',') for line in path.read_text().splitlines()[1:]]
  assert [row[0] for row in rows] == ids  # List order, names verbatim.
  for row, score in zip(rows, scores):
    actions = [int(x) for x in row[1:6]]
    assert actions == list(np.argsort(-score)[:5])
    assert [int(x) for x in row[6:]] == [
        int(labels.ACTION_TO_BODY[a]) for a in actions]


def test_submission_zip_holds_only_the_csv(tmp_path):
  zip_path = submit.write_submission(tmp_path, ['a.mp4'], np.eye(52)[:1])
  assert zip_path == str(tmp_path / 'submission.zip')
  with zipfile.ZipFile(zip_path) as archive:
    assert archive.namelist() == ['prediction.csv']
    assert archive.read('prediction.csv') == (
        tmp_path / 'prediction.csv').read_bytes()


def test_shape_mismatch_raises(tmp_path):
  with pytest.raises(ValueError, match='expected'):
    submit.write_prediction_csv(tmp_path / 'x.csv', ['a', 'b'],
                                np.zeros((3, 52)))
