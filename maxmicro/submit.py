"""The MA-52 challenge submission: `prediction.csv` inside `submission.zip`.

`prediction.csv` has the header `vid,action_pred_1,...,action_pred_5,
body_pred_1,...,body_pred_5` and one row per test video in list order: the
listed file name, the ids of the five highest action scores, and the body part
of each of those five actions (so body ids may repeat). Rows end in `\\r\\n`,
as Python's csv writer makes them.

The built test split keeps list order, and each process scores a contiguous
slice of it, so the gathered predictions are in list order on any number of
processes.

MMA-52 detection (MAC track 2) submits the same two names; its
`prediction.csv` is a pandas frame written with its index (see
`write_detection_csv`).
"""

import csv
import os
import zipfile

import numpy as np

from maxmicro import labels as labels_lib
from maxmicro import metrics

CSV_NAME = 'prediction.csv'
ZIP_NAME = 'submission.zip'
HEADER = (['vid'] + [f'action_pred_{k}' for k in range(1, 6)] +
          [f'body_pred_{k}' for k in range(1, 6)])
DETECTION_HEADER = ['', 'video_id', 't_start', 't_end', 'class', 'score']


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
  write_prediction_csv(os.path.join(directory, CSV_NAME), video_ids, scores)
  return _zip_prediction_csv(directory)


def _zip_prediction_csv(directory):
  """Zips `directory/prediction.csv` alone into `directory/submission.zip`."""
  zip_path = os.path.join(directory, ZIP_NAME)
  with zipfile.ZipFile(zip_path, 'w', zipfile.ZIP_DEFLATED) as archive:
    archive.write(os.path.join(directory, CSV_NAME), arcname=CSV_NAME)
  return zip_path


def write_detection_csv(path, rows):
  """Writes the MMA-52 detection `prediction.csv`.

  The bytes are those of pandas' `DataFrame(rows, columns=['video_id',
  't_start', 't_end', 'class', 'score']).to_csv(path)`, without pandas: the row
  number first, the header `,video_id,t_start,t_end,class,score`, `\\n` line
  ends, the class as an int, times and score as float64 (shortest repr, as
  pandas writes a float64 column; pandas would write a float32 or an all-int
  column differently).

  Args:
    path: the file to write.
    rows: `(video_id, t_start, t_end, class, score)` per detection, times in
      seconds.
  """
  with open(path, 'w', newline='') as file:
    writer = csv.writer(file, lineterminator='\n')
    writer.writerow(DETECTION_HEADER)
    for index, (video_id, start, end, label, score) in enumerate(rows):
      writer.writerow([index, str(video_id), float(start), float(end),
                       int(label), float(score)])


def write_detection_submission(directory, rows):
  """Writes `directory/prediction.csv` and `directory/submission.zip`.

  The zip holds only `prediction.csv`. Returns the zip's path.
  """
  write_detection_csv(os.path.join(directory, CSV_NAME), rows)
  return _zip_prediction_csv(directory)
