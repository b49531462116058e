"""The device mesh and the shardings of state and batches, built once.

One mesh axis, `data`, spans every device of every process. Batches are split
along it; the train state is replicated, or with FSDP its large arrays are
split along it too. The mesh uses `Auto` axis types: XLA's partitioner
propagates the shardings given to `jax.jit`, so the model needs no sharding
annotations (with `Explicit` axes, FSDP-sharded kernels would need them).
"""

import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'
# Arrays smaller than this stay replicated under FSDP: splitting them saves
# little memory and costs a gather each.
FSDP_MIN_SIZE = 2**16
# Environment variables that say a multi-process launch wants
# `jax.distributed.initialize()`. JAX reads the address itself; the process
# count and index are maxmicro's convention for clusters JAX cannot detect
# (a plain multi-node GPU launch, or several processes on one machine).
_DISTRIBUTED_ENV = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES')


def maybe_initialize_distributed(force=False):
  """Starts JAX's multi-process runtime when launched that way.

  Call before anything touches a device. `force` (run.py `--distributed`) is
  for clusters JAX detects itself (Cloud TPU pods, SLURM, Open MPI); a
  `JAX_COORDINATOR_ADDRESS` in the environment also turns it on, with
  `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` where JAX cannot detect them.
  """
  if not (force or any(os.environ.get(name) for name in _DISTRIBUTED_ENV)):
    return
  kwargs = {}
  if os.environ.get('JAX_NUM_PROCESSES'):
    kwargs['num_processes'] = int(os.environ['JAX_NUM_PROCESSES'])
  if os.environ.get('JAX_PROCESS_ID'):
    kwargs['process_id'] = int(os.environ['JAX_PROCESS_ID'])
  # Cross-process collectives of the CPU backend (tests, CPU clusters);
  # GPU and TPU use their own.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)


def make_mesh():
  """A 1-D mesh named `data` over all devices of all processes."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh):
  """Leading (batch) dimension split over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def _fsdp_spec(shape, num_shards):
  """Splits the largest dimension that divides evenly, if the array is big."""
  if int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE or num_shards == 1:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if shape[axis] % num_shards == 0:
      spec = [None] * len(shape)
      spec[axis] = DATA_AXIS
      return P(*spec)
  return P()


def state_shardings(abstract_state, mesh, fsdp=False):
  """Shardings for a (possibly abstract) state pytree.

  Replicated, or with `fsdp` each large array split along its largest evenly
  divisible dimension (parameters and their optimizer moments alike, as they
  share shapes).
  """
  if not fsdp:
    return jax.tree.map(lambda _: replicated(mesh), abstract_state)
  num_shards = mesh.shape[DATA_AXIS]
  return jax.tree.map(
      lambda leaf: NamedSharding(mesh, _fsdp_spec(np.shape(leaf), num_shards)),
      abstract_state)


def with_shardings(abstract_tree, shardings):
  """`jax.ShapeDtypeStruct`s carrying `shardings` (restore targets)."""
  return jax.tree.map(
      lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                  sharding=sharding),
      abstract_tree, shardings)


def check_batch_size(global_batch_size, mesh, what='train'):
  """Raises ValueError unless the batch splits evenly over devices/processes."""
  devices, processes = mesh.size, jax.process_count()
  if global_batch_size % devices or global_batch_size % processes:
    raise ValueError(
        f'config.{what}.global_batch_size={global_batch_size} must be a '
        f'multiple of the device count ({devices}) and of the process count '
        f'({processes}); for example {math.lcm(devices, processes)}.')
  return global_batch_size // processes


def global_batch(local_batch, mesh):
  """Process-local numpy arrays -> global `jax.Array`s split over `data`.

  Keys whose arrays are not numeric (for example `video_id` strings) are left
  out: they stay on the host.
  """
  sharding = batch_sharding(mesh)
  processes = jax.process_count()
  arrays = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    if value.dtype.kind not in 'biuf':
      continue
    global_shape = (value.shape[0] * processes,) + value.shape[1:]
    arrays[key] = jax.make_array_from_process_local_data(
        sharding, value, global_shape)
  return arrays


def to_local(array, mesh):
  """A global batch-split array -> this process's rows, as numpy."""
  if jax.process_count() == 1:
    return np.asarray(array)
  return np.asarray(multihost_utils.global_array_to_host_local_array(
      array, mesh, P(DATA_AXIS)))


class CollectiveError(RuntimeError):
  """A cross-process collective failed or cannot run; the message says why
  and names the launch settings to check."""


# Ranks up to this are described in the shape check of `gather_to_all`.
_MAX_RANK = 8


def _launch_settings():
  """The launch as this process sees it, for error messages."""
  settings = ', '.join(f'{name}={os.environ.get(name, "(unset)")}'
                       for name in ('JAX_COORDINATOR_ADDRESS',
                                    'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'))
  return (f'process {jax.process_index()} of {jax.process_count()} '
          f'({settings})')


def _allgather(tree, what):
  """`process_allgather(tiled=True)`, its failures said in one paragraph."""
  try:
    return jax.tree.map(np.asarray,
                        multihost_utils.process_allgather(tree, tiled=True))
  except Exception as error:  # pylint: disable=broad-exception-caught
    first_line = (str(error).strip().splitlines() or [''])[0]
    raise CollectiveError(
        f'gathering the {what} from all processes failed on '
        f'{_launch_settings()}: {type(error).__name__}: {first_line}. Every '
        'process must run the same command with the same flags and the '
        'same JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES, each with its '
        'own JAX_PROCESS_ID, and all must still be running; check the '
        'other processes\' output for the first error.') from None


def wait_for_all_processes(what):
  """Returns once every process has called it (with the same `what`)."""
  if jax.process_count() > 1:
    try:
      multihost_utils.sync_global_devices(what)
    except Exception as error:  # pylint: disable=broad-exception-caught
      raise CollectiveError(
          f'waiting for all processes ({what}) failed on '
          f'{_launch_settings()}: {type(error).__name__}: '
          f'{(str(error).strip().splitlines() or [""])[0]}; check the other '
          'processes\' output for the first error.') from None


def gather_to_all(tree, what='arrays'):
  """Concatenates process-local numpy arrays over processes, in process order.

  Every process must hold the same shapes (pad ragged outputs and carry a
  mask, as the eval iterator does). The shapes are gathered and compared
  first, with a fixed-shape collective, so that a mismatch ends in a
  `CollectiveError` naming the shapes of every process instead of an abort
  inside the collective library.

  Raises:
    CollectiveError: the processes hold different shapes, or a collective
      failed; the message names `what` and the launch settings.
  """
  if jax.process_count() == 1:
    return tree
  leaves = jax.tree.leaves(tree)
  described = np.full((len(leaves), _MAX_RANK + 1), -1, np.int64)
  for row, leaf in enumerate(leaves):
    shape = np.shape(leaf)
    if len(shape) > _MAX_RANK:
      raise ValueError(f'gather_to_all: rank {len(shape)} is above '
                       f'{_MAX_RANK}.')
    described[row, 0] = len(shape)
    described[row, 1:len(shape) + 1] = shape
  every = _allgather(described[None], what)  # (processes, leaves, rank + 1)
  if not (every == described).all():
    shapes = '; '.join(
        f'process {index}: ' + ', '.join(
            str(tuple(int(n) for n in row[1:row[0] + 1])) for row in rows)
        for index, rows in enumerate(every))
    raise CollectiveError(
        f'cannot gather the {what}: the processes hold different shapes '
        f'({shapes}), on {_launch_settings()}. Every process must run the '
        'same command with the same flags (the same config and batch '
        'sizes).')
  return _allgather(tree, what)
