"""Compiled functions kept on disk, so that a rerun loads them.

`enable()` turns on JAX's persistent compilation cache (executables) and a
cache of traced functions beside it (`jit_exported`): for a ResNet-50 the
trace that JAX needs for its cache key costs a CPU second and more, and the
compile many more, at every start of `run.py --mode=predict`. Both are keyed
so that a stale entry is never used; an unreadable or unwritable entry only
costs speed.
"""

import functools
import hashlib
import json
import os
import platform
import tempfile

from absl import logging
import flax
import jax
import jaxlib

from maxmicro import xla_options

# Where `jit_exported` keeps traced functions; None until `enable`.
_export_directory = None


def enable(directory=None):
  """Keeps compiled executables and traced functions on disk.

  JAX's persistent compilation cache, in `directory` (default
  `$XDG_CACHE_HOME/maxmicro/jax` or `~/.cache/maxmicro/jax`) unless
  `JAX_COMPILATION_CACHE_DIR` names one, and off where
  `JAX_ENABLE_COMPILATION_CACHE=false`. Entries go into a subfolder per CPU
  model and instruction set: JAX's cache key names the backend but not the
  CPU, and an XLA:CPU executable built for one CPU may not run on another
  sharing the home directory. Every executable is kept, however fast it
  compiled (a small model's forward compiles in under JAX's default
  threshold of a second).
  """
  global _export_directory
  if not jax.config.jax_enable_compilation_cache:
    return
  cache = jax.config.jax_compilation_cache_dir
  if not cache:
    if directory is None:
      directory = os.path.join(
          os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
          'maxmicro', 'jax')
    cache = os.path.join(directory, _cpu_fingerprint())
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  _export_directory = os.path.join(cache, 'maxmicro_exports')


def enabled():
  return _export_directory is not None


def jit_exported(jitted, arguments, *, name, key):
  """`jitted` (a `jax.jit` function) for `arguments`, traced once per key.

  The first run exports the trace (`jax.export`) into the cache; later runs
  read it back and go straight to XLA, whose persistent cache then holds
  the executable. The file is keyed by everything the trace depends on:
  maxmicro's source, the JAX, jaxlib and Flax versions, the backend, the
  arguments' shapes and dtypes, and `key` (JSON-able: what else the traced
  function depends on, such as its config). Requires `enable()` first.
  """
  digest = hashlib.sha256(json.dumps([
      _source_fingerprint(), jax.__version__, jaxlib.__version__,
      flax.__version__, jax.default_backend(), key,
      str(jax.tree.map(lambda x: (x.shape, str(x.dtype)), arguments)),
  ]).encode()).hexdigest()[:32]
  path = os.path.join(_export_directory, f'{name}-{digest}.jaxexport')
  exported = _read_export(path)
  if exported is None:
    exported = jax.export.export(jitted)(*arguments)
    _write_atomically(path, exported.serialize())
  return jax.jit(exported.call,
                 compiler_options=xla_options.compiler_options())


@functools.cache
def _source_fingerprint():
  """A hash of maxmicro's Python source: what a traced function depends on."""
  package = os.path.dirname(os.path.abspath(__file__))
  digest = hashlib.sha256()
  for root, folders, names in os.walk(package):
    folders.sort()
    for name in sorted(names):
      if name.endswith('.py'):
        with open(os.path.join(root, name), 'rb') as file:
          digest.update(name.encode() + file.read())
  return digest.hexdigest()


def _read_export(path):
  """The `jax.export.Exported` saved at `path`, or None (also if unreadable)."""
  try:
    with open(path, 'rb') as file:
      return jax.export.deserialize(bytearray(file.read()))
  except FileNotFoundError:
    return None
  except Exception as error:  # pylint: disable=broad-exception-caught
    # A cache is never worth a failed run.
    logging.warning('ignoring the unreadable cache file %s: %s', path, error)
    return None


def _write_atomically(path, data):
  """Writes a cache file whole or not at all."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path),
                                     delete=False) as file:
      file.write(data)
    os.replace(file.name, path)
  except OSError as error:
    logging.warning('not caching the exported function in %s: %s', path,
                    error)


def _cpu_fingerprint():
  """A short hash of this CPU's model and instruction-set flags."""
  identity = platform.machine() + platform.processor()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as file:
      identity += ''.join(sorted({
          line for line in file
          if line.startswith(('model name', 'flags', 'Features'))}))
  return 'cpu-' + hashlib.sha256(identity.encode()).hexdigest()[:12]
