"""Preemption: SIGTERM makes training save a checkpoint and stop cleanly.

Schedulers (Cloud TPU, GKE, SLURM) send SIGTERM some seconds before they kill
a job. `Watcher` turns it into a request that the train loop polls once per
step; the loop then saves the current step (state and data iterator), waits
for the save to be committed and raises `Preempted`, which `run.py` turns
into exit code `EXIT_PREEMPTED`: rerun the same command to resume.

With several processes every one must stop at the same step, or the others
hang in a collective. JAX's preemption service (on with
`jax.distributed.initialize`) catches SIGTERM on any process and agrees on a
step through the coordinator (`multihost_utils.reached_preemption_sync_point`),
so there the Python handler is not installed.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils

# "Preempted, checkpoint saved, rerun to resume": distinct from 1 (an error)
# and from 143 (killed by SIGTERM without saving).
EXIT_PREEMPTED = 42


class Preempted(Exception):
  """Training stopped on SIGTERM after saving `step`."""

  def __init__(self, step, directory):
    super().__init__(
        f'preempted (SIGTERM): saved checkpoint step {step} in {directory} and '
        f'stopped; rerun the same command to resume from step {step}.')
    self.step = step


class Watcher:
  """A context in which SIGTERM requests a stop instead of killing."""

  def __init__(self):
    self._requested = False
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self._requested = True

  def __enter__(self):
    # Signal handlers can only be set from the main thread; elsewhere (a
    # notebook's worker thread) SIGTERM keeps its default.
    if (jax.process_count() == 1 and
        threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc_info):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def should_stop(self, step):
    """True once a stop is requested; called once per step, on every process."""
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested
