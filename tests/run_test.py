"""run.py as a user calls it: outputs, and one-paragraph errors."""

import csv
import json
import os
import zipfile


from maxmicro import reporting
from tests import tiny_run


def _assert_clean_error(result, *fragments):
  assert result.returncode != 0, result.stdout
  assert 'Traceback' not in result.stderr, result.stderr
  for fragment in fragments:
    assert fragment in result.stderr, result.stderr


def test_eval_predict_submit(built_fake_ma52):
  workdir, trained_metrics, _ = tiny_run.trained_workdir(built_fake_ma52)
  result = tiny_run.run_py(f'--workdir={workdir}', '--mode=eval')
  assert result.returncode == 0, result.stderr
  assert 'f1_mean' in result.stdout
  assert f'{100 * trained_metrics["f1_mean"]:6.2f}' in result.stdout

  video = sorted((built_fake_ma52.manual_dir / 'videos_val').glob('*.mp4'))[0]
  result = tiny_run.run_py(f'--workdir={workdir}', '--mode=predict',
                           f'--video={video}')
  assert result.returncode == 0, result.stderr
  assert '  5. ' in result.stdout
  with open(os.path.join(workdir, 'predictions.json')) as file:
    rows = json.load(file)[str(video)]
  assert [row['rank'] for row in rows] == [1, 2, 3, 4, 5]
  assert all(row['name'] in result.stdout for row in rows)

  result = tiny_run.run_py(f'--workdir={workdir}', '--mode=submit')
  assert result.returncode == 0, result.stderr
  with zipfile.ZipFile(os.path.join(workdir, 'submission.zip')) as archive:
    assert archive.namelist() == ['prediction.csv']
  with open(os.path.join(workdir, 'prediction.csv'), newline='') as file:
    rows = list(csv.reader(file))
  listed = (built_fake_ma52.manual_dir / 'test_list_videos.txt').read_text()
  assert [row[0] for row in rows[1:]] == [
      line.split()[0] for line in listed.splitlines()]


def test_bad_input_ends_in_a_message(built_fake_ma52, tmp_path):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  run = tiny_run.run_py
  _assert_clean_error(run(f'--workdir={tmp_path / "none"}', '--mode=eval'),
                      'does not exist')
  _assert_clean_error(run(f'--workdir={tmp_path}', '--mode=submit'),
                      'no checkpoint in')
  _assert_clean_error(run(f'--workdir={workdir}', '--mode=predict'),
                      '--video')
  _assert_clean_error(run(f'--workdir={workdir}', '--mode=predict',
                          f'--video={tmp_path / "x.mp4"}'), 'x.mp4')
  _assert_clean_error(run(f'--workdir={workdir}', '--mode=eval',
                          '--split=test'), 'no ground-truth labels')
  _assert_clean_error(run(f'--workdir={tmp_path}'), 'needs --config')
  _assert_clean_error(
      run('--config=configs/manet.py:tiny', f'--workdir={tmp_path}',
          f'--config.data.data_dir={tmp_path / "empty"}'),
      'is not built', 'python -m maxmicro.data.build', 'configs/demo.py')
  assert not reporting.read_metrics(str(tmp_path))
