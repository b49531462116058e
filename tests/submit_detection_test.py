"""The MMA-52 detection submission file, byte for byte."""

import zipfile

import numpy as np

from maxmicro import submit

ROWS = [('val0000', 0.1, 1.0, 3, 0.9),
        ('val0000', 2.5, 1 / 3, np.int64(51), 2),  # An integer score.
        ('val0001', np.float32(0.1), np.float32(7.3), 0, np.float32(0.8)),
        ('val0002', 0.0, 12.345, 7, 1e-05)]

# `pd.DataFrame(ROWS, columns=['video_id', 't_start', 't_end', 'class',
# 'score']).to_csv(path)`, as pandas 2.x writes it (generated with pandas
# 2.3.3; 3.1.1 writes the same bytes). The float32 values go through float64.
EXPECTED = (b',video_id,t_start,t_end,class,score\n'
            b'0,val0000,0.1,1.0,3,0.9\n'
            b'1,val0000,2.5,0.3333333333333333,51,2.0\n'
            b'2,val0001,0.10000000149011612,7.300000190734863,0,'
            b'0.800000011920929\n'
            b'3,val0002,0.0,12.345,7,1e-05\n')


def test_detection_csv_as_pandas_writes_it(tmp_path):
  path = tmp_path / 'prediction.csv'
  submit.write_detection_csv(path, ROWS)
  assert path.read_bytes() == EXPECTED


def test_empty_detection_csv_is_the_header(tmp_path):
  path = tmp_path / 'prediction.csv'
  submit.write_detection_csv(path, [])
  assert path.read_bytes() == b',video_id,t_start,t_end,class,score\n'


def test_detection_submission_zip_holds_only_the_csv(tmp_path):
  zip_path = submit.write_detection_submission(tmp_path, ROWS)
  assert zip_path == str(tmp_path / 'submission.zip')
  assert (tmp_path / 'prediction.csv').read_bytes() == EXPECTED
  with zipfile.ZipFile(zip_path) as archive:
    assert archive.namelist() == ['prediction.csv']
    assert archive.read('prediction.csv') == EXPECTED
