"""Launching `tests/faults_child.py` (run.py with a fault) from the fault
tests, alone or as several processes of one multi-process launch."""

import os
import socket
import subprocess
import sys

import jax

from maxmicro import checkpoint
from maxmicro import evaluate
from maxmicro import sharding
from tests import cpu_devices
from tests import tiny_run

CHILD = os.path.join(cpu_devices.REPO_ROOT, 'tests', 'faults_child.py')


def tiny_flags(built, workdir, **overrides):
  """run.py flags equal to `tiny_run.tiny_config(built)` (plus overrides)."""
  fields = {
      'data.data_dir': built.data_dir, 'data.builder_config': 'small',
      'train.num_train_steps': tiny_run.NUM_STEPS,
      'train.log_every_steps': 1, 'train.checkpoint_every_steps': 2,
      # 0 evaluates at the end only, as tiny_config's None.
      'train.eval_every_epochs': 0, **overrides}
  return (['--config=configs/manet.py:tiny', f'--workdir={workdir}'] +
          [f'--config.{key}={value}' for key, value in fields.items()])


def environment(fault='', num_devices=1, **extra):
  """The child's environment: CPU, the tests' fast compile, one fault."""
  env = dict(os.environ, PYTHONPATH=cpu_devices.REPO_ROOT, JAX_PLATFORMS='cpu',
             JAX_DISABLE_MOST_OPTIMIZATIONS='1', MAXMICRO_FAULT=fault, **extra)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      f' --xla_force_host_platform_device_count={num_devices}')
  return env


def start(args, **env_kwargs):
  """Starts the child; returns the `subprocess.Popen`."""
  return subprocess.Popen([sys.executable, CHILD, *args],
                          cwd=cpu_devices.REPO_ROOT,
                          env=environment(**env_kwargs),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def run(args, timeout=300, **env_kwargs):
  """Runs the child to its end; returns `(returncode, stdout, stderr)`."""
  process = start(args, **env_kwargs)
  stdout, stderr = process.communicate(timeout=timeout)
  return process.returncode, stdout, stderr


def free_port():
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


def launch(count, args, cache, env_of=lambda index: {}):
  """`count` children of one multi-process launch (`jax.distributed` on
  localhost; `cache`: a compilation cache directory they share, as they
  compile the same programs; `env_of(index)`: more environment for process
  `index`); returns their `(returncode, stdout, stderr)`."""
  port = free_port()
  children = [start(
      args, JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
      JAX_NUM_PROCESSES=str(count), JAX_PROCESS_ID=str(index),
      JAX_COMPILATION_CACHE_DIR=cache,
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
      **env_of(index)) for index in range(count)]
  outputs = [child.communicate(timeout=300) for child in children]
  return [(child.returncode, *output)
          for child, output in zip(children, outputs)]


def checkpoint_variables(workdir, step):
  """Model variables of checkpoint `step` of a workdir, as numpy."""
  manager = checkpoint.make_manager(checkpoint.checkpoint_dir(workdir),
                                    read_only=True)
  try:
    config = checkpoint.read_config(manager, step)
    return jax.device_get(evaluate.restore_variables(
        manager, step, config, sharding.replicated(sharding.make_mesh())))
  finally:
    manager.close()
