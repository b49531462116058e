"""The MA-52 challenge submission: `prediction.csv` inside `submission.zip`.

`prediction.csv` has the header `vid,action_pred_1,...,action_pred_5,
body_pred_1,...,body_pred_5` and one row per test video in list order: the
listed file name, the ids of the five highest action scores, and the body part
of each of those five actions (so body ids may repeat). Rows end in `\\r\\n`,
as Python's csv writer makes them.

The built test split keeps list order, and each process scores a contiguous
slice of it, so the gathered predictions are in list order on any number of
processes.
"""

import csv
import os
import zipfile

import jax
import numpy as np

from maxmicro import evaluate
from maxmicro import labels as labels_lib
from maxmicro import metrics

CSV_NAME = 'prediction.csv'
ZIP_NAME = 'submission.zip'
HEADER = (['vid'] + [f'action_pred_{k}' for k in range(1, 6)] +
          [f'body_pred_{k}' for k in range(1, 6)])


def write_prediction_csv(path, video_ids, scores):
  """Writes the challenge's `prediction.csv`.

  Args:
    path: the file to write.
    video_ids: the test videos' listed file names (`test0000.mp4`), in list
      order; written verbatim.
    scores: `(N, 52)` action scores in the same order.
  """
  scores = np.asarray(scores)
  if scores.shape != (len(video_ids), labels_lib.NUM_ACTIONS):
    raise ValueError(f'scores have shape {scores.shape}, expected '
                     f'({len(video_ids)}, {labels_lib.NUM_ACTIONS}).')
  actions = metrics.top_k(scores, 5)
  bodies = labels_lib.ACTION_TO_BODY[actions]
  with open(path, 'w', newline='') as file:
    writer = csv.writer(file)
    writer.writerow(HEADER)
    for video_id, action_row, body_row in zip(video_ids, actions, bodies):
      writer.writerow([str(video_id)] + [int(a) for a in action_row] +
                      [int(b) for b in body_row])


def write_submission(directory, video_ids, scores):
  """Writes `directory/prediction.csv` and `directory/submission.zip`.

  The zip holds only `prediction.csv`. Returns the zip's path.
  """
  csv_path = os.path.join(directory, CSV_NAME)
  zip_path = os.path.join(directory, ZIP_NAME)
  write_prediction_csv(csv_path, video_ids, scores)
  with zipfile.ZipFile(zip_path, 'w', zipfile.ZIP_DEFLATED) as archive:
    archive.write(csv_path, arcname=CSV_NAME)
  return zip_path


def submit_checkpoint(workdir, config=None, which='latest', split='test'):
  """`--mode=submit`: scores `split` and writes the submission into `workdir`.

  Returns `(zip_path, number_of_videos, step)`.
  """
  inference = evaluate.load_inference(workdir, config, which)
  predictions = evaluate.predict_split(
      inference.score_fn, inference.variables, inference.iterator(split),
      inference.mesh)
  zip_path = os.path.join(os.path.abspath(workdir), ZIP_NAME)
  if jax.process_index() == 0:
    zip_path = write_submission(workdir, predictions.video_ids,
                                predictions.scores)
  return zip_path, len(predictions.video_ids), inference.step
