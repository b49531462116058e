"""Runs test code in a fresh Python with N fake CPU devices.

XLA fixes the device count when JAX starts, so mesh tests run their code in a
subprocess with `--xla_force_host_platform_device_count` instead of changing
the suite's own process.
"""

import os
import subprocess
import sys
import textwrap

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, num_devices=8, timeout=600):
  """Runs `code` with `num_devices` CPU devices; returns its stdout.

  Raises AssertionError with the child's output when it exits non-zero.
  """
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      f' --xla_force_host_platform_device_count={num_devices}')
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = os.pathsep.join(
      filter(None, [REPO_ROOT, env.get('PYTHONPATH')]))
  result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
  assert result.returncode == 0, (
      f'child exited {result.returncode}\n--- stdout\n{result.stdout}\n'
      f'--- stderr\n{result.stderr}')
  return result.stdout
