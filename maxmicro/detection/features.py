"""Per-step backbone features of MMA-52 videos, extracted once.

The backbone is the per-frame trunk of a maxmicro video model (MANet, TSM or
TSN, `models.build_model`): restored from a recognition workdir
(`config.detection.backbone_workdir`: trained by maxmicro on MA-52, or
converted official weights), or ImageNet weights
(`config.detection.backbone_init_from`); see `backbones`. A video's frames
at `frame_stride` are preprocessed as evaluation does (short side resized,
centre crop) and cut into clips of the model's T consecutive steps, the last
clip padded with its last frame: the temporal shift then mixes neighbouring
steps as it did in training. A step's feature is the trunk's pooled output
for its frame (the `features` the recognition heads read), before any
averaging over time.

Several processes share the work: process k of P extracts videos k, k + P,
... of each split into its own part files; process 0 then merges the parts
in video order, so the directory is the one a single process writes.

The features directory records what made it (`identity`: backbone source
and model, preprocessing, dataset, stride); training refuses features whose
identity differs from what its config asks for.
"""

import functools
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np

from maxmicro import models
from maxmicro import ops
from maxmicro import sharding
from maxmicro import xla_options
from maxmicro.data import detection_pipeline
from maxmicro.data import records
from maxmicro.data import transforms
from maxmicro.detection import backbones


# Under the features directory: each process' part while several extract.
PARTS_SUBDIR = 'parts'


def how_to_extract(config_name='CONFIG'):
  return ('Extract them with: python run.py --mode=features '
          f'--config={config_name} --workdir=WORKDIR (the workdir you will '
          'train in).')


def open_backbone(config, with_variables=True):
  """The backbone `config.detection` names, its variables on one device.

  Either `backbone_workdir` or `backbone_init_from` (`backbones`).

  Raises:
    checkpoint.CheckpointError: no such workdir or checkpoint; the message
      says how to make one.
    ValueError: the workdir is not a recognition (MA-52) run; the ImageNet
      state dict is missing or does not fit `backbone_config`.
  """
  # Detection configs saved before ImageNet backbones lack the field.
  if config.detection.get('backbone_init_from'):
    return backbones.open_init_from(config, with_variables)
  return backbones.open_workdir(config, with_variables)


def make_feature_fn(backbone_config, batch_size):
  """`(trunk variables, clips uint8 (B, T, S, S, 3)) -> (B, T, C)` float32,
  jitted over this process' devices (clips split over them)."""
  model = models.build_model(backbone_config)
  trunk = models.build_trunk(backbone_config)
  devices = jax.local_devices()
  if batch_size % len(devices):
    raise ValueError(f'config.detection.features_batch_size={batch_size} '
                     f'must be a multiple of the {len(devices)} local '
                     'devices.')
  mesh = jax.make_mesh((len(devices),), ('data',), devices=devices)
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def features(variables, clips):
    video = ops.normalise(clips).astype(model.dtype)
    return trunk.apply(variables, video).astype(jnp.float32)

  return jax.jit(features, in_shardings=(whole, split), out_shardings=split,
                 compiler_options=xla_options.compiler_options())


def step_frames(frames, backbone):
  """Frames of the steps, preprocessed: uint8 `(n, S, S, 3)`."""
  return transforms.eval_clip(
      frames, image_size=backbone.config.data.image_size,
      resize_short_side_to=backbone.config.data.resize_short_side)


class FeatureComputer:
  """Features of whole videos, their clips run in full batches of B.

  Clips of consecutive videos share batches, so short videos waste little
  padding; `add` returns the videos whose features are complete.
  """

  def __init__(self, backbone, batch_size):
    self.backbone = backbone
    self.batch_size = batch_size
    self.fn = make_feature_fn(backbone.config, batch_size)
    self.pending = []  # [key, steps, clips left, list of feature chunks]
    self.clips = []  # (key, clip) not yet run.
    self.clips_run = 0

  def add(self, key, frames):
    """Queues a video's step frames `(n, S, S, 3)`; returns finished
    `[(key, features (n, C))]`."""
    steps = len(frames)
    period = self.backbone.num_segments
    padded = -(-steps // period) * period
    frames = np.concatenate([frames, np.repeat(frames[-1:], padded - steps,
                                               axis=0)])
    clips = frames.reshape((-1, period) + frames.shape[1:])
    self.pending.append([key, steps, len(clips), []])
    self.clips += [(key, clip) for clip in clips]
    done = []
    while len(self.clips) >= self.batch_size:
      done += self._run(self.batch_size)
    return done

  def flush(self):
    """Runs what is queued; returns the remaining finished videos."""
    done = []
    while self.clips:
      done += self._run(len(self.clips))
    return done

  def _run(self, count):
    batch, self.clips = self.clips[:count], self.clips[count:]
    clips = np.stack([clip for _, clip in batch])
    if count < self.batch_size:  # One compiled shape: pad the last batch.
      clips = np.concatenate([clips, np.zeros(
          (self.batch_size - count,) + clips.shape[1:], clips.dtype)])
    output = np.asarray(self.fn(self.backbone.variables, clips))[:count]
    self.clips_run += count
    position = 0
    for entry in self.pending:
      taken = min(entry[2], count - position)
      if taken <= 0:
        break
      entry[3].append(output[position:position + taken])
      entry[2] -= taken
      position += taken
    done = [(key, np.concatenate(chunks).reshape(
        -1, output.shape[-1])[:steps])
            for key, steps, left, chunks in self.pending if left == 0]
    self.pending = [entry for entry in self.pending if entry[2]]
    return done


def video_features(computer, frames, frame_stride):
  """`(ceil(n / frame_stride), C)` features of all `frames` of a video."""
  done = computer.add(0, step_frames(frames[::frame_stride],
                                     computer.backbone))
  done += computer.flush()
  return done[0][1]


def _remove_meta(directory):
  """Marks the directory incomplete while it is rewritten."""
  meta_path = os.path.join(directory, detection_pipeline.META_NAME)
  if os.path.exists(meta_path):
    os.remove(meta_path)


def _parts_dir(directory, process_index):
  return os.path.join(directory, PARTS_SUBDIR, f'process{process_index}')


def iter_split_features(source, computer, frame_stride, indices):
  """Yields `(fields, features)` of the videos `indices` of a split's
  records, in that order: every `frame_stride`-th frame decoded (nothing
  else), its features computed by `computer`, and the video's other fields
  (all but its JPEGs)."""
  indices = list(indices)
  waiting = {}  # index -> the video's fields but its JPEGs.
  for position, index in enumerate(indices):
    video = source[index]
    frames = records.decode_frames(
        video['jpegs'], np.arange(0, len(video['jpegs']), frame_stride))
    waiting[index] = {k: v for k, v in video.items() if k != 'jpegs'}
    done = computer.add(index, step_frames(frames, computer.backbone))
    if position == len(indices) - 1:
      done += computer.flush()
    for key, features in done:
      yield waiting.pop(key), features


def extract_split(config, split, directory, computer, *, process_index=0,
                  process_count=1):
  """Writes the features of videos `process_index::process_count` of
  `split` into `directory`; returns how many (no files when none)."""
  source = records.Mma52Records(config.data.data_dir,
                                config.data.builder_config, split)
  writer = None
  for fields, features in iter_split_features(
      source, computer, config.detection.frame_stride,
      range(process_index, len(source), process_count)):
    if writer is None:
      writer = detection_pipeline.SplitWriter(directory, split,
                                              features.shape[1])
    writer.add(fields, features)
  return writer.close() if writer else 0


def merge_parts(directory, split, process_count):
  """Process 0: `split`'s part files of every process, in video order, as
  one split; returns its video count."""
  parts = []
  for index in range(process_count):
    try:
      parts.append(detection_pipeline.SplitFeatures(
          _parts_dir(directory, index), split))
    except detection_pipeline.FeaturesError:
      break  # Fewer videos than processes: this and later parts are empty.
  count = sum(map(len, parts))
  if not count:
    return 0
  writer = detection_pipeline.SplitWriter(directory, split,
                                          parts[0].feature_dim)
  for index in range(count):  # Video i went to process i % P.
    video = parts[index % process_count][index // process_count]
    writer.add(video, video['features'])
  return writer.close()


def extract_features(config, log=print):
  """Writes the features of every split of `config.data`, the videos shared
  by all processes (each extracts with its local devices).

  Returns:
    The features directory, complete on every process' return.
  """
  directory = features_dir(config)
  process_index, process_count = jax.process_index(), jax.process_count()
  backbone = open_backbone(config)
  os.makedirs(directory, exist_ok=True)
  if process_index == 0:
    _remove_meta(directory)
  own_dir = directory
  if process_count > 1:  # A part left by an earlier run must not be merged.
    own_dir = _parts_dir(directory, process_index)
    shutil.rmtree(own_dir, ignore_errors=True)
  os.makedirs(own_dir, exist_ok=True)
  computer = FeatureComputer(backbone, config.detection.features_batch_size)
  who = (f'process {process_index}/{process_count}: '
         if process_count > 1 else '')
  splits = {}
  started = time.perf_counter()
  for split in detection_pipeline.SPLITS:
    splits[split] = extract_split(config, split, own_dir, computer,
                                  process_index=process_index,
                                  process_count=process_count)
    log(f'{who}features of {split}: {splits[split]} videos '
        f'({computer.clips_run} clips so far, '
        f'{time.perf_counter() - started:.0f}s)')
  # A collective: every process has written its part when it returns.
  clips = int(sharding.gather_to_all(np.array([computer.clips_run]),
                                     'feature clip counts').sum())
  if process_index == 0:
    if process_count > 1:
      splits = {split: merge_parts(directory, split, process_count)
                for split in detection_pipeline.SPLITS}
      shutil.rmtree(os.path.join(directory, PARTS_SUBDIR))
    detection_pipeline.write_meta(directory, {
        'identity': backbone.identity(config),
        'feature_dim': feature_dim(backbone.config), 'splits': splits,
        'clips_per_second': clips / (time.perf_counter() - started)})
  sharding.wait_for_all_processes('features written')
  return directory


def features_dir(config):
  return (config.detection.features_dir or
          detection_pipeline.default_features_dir(config.data))


def check_features(config, config_name='CONFIG'):
  """The meta of `config`'s features if they are there and not stale.

  Raises:
    detection_pipeline.FeaturesError: missing, incomplete or stale (the
      message names the differing fields and how to extract again).
    checkpoint.CheckpointError: the backbone workdir is gone.
  """
  directory = features_dir(config)
  how = how_to_extract(config_name)
  meta = detection_pipeline.read_meta(directory, how_to_extract=how)
  expected = open_backbone(config, with_variables=False).identity(config)
  detection_pipeline.check_identity(meta, expected, directory,
                                    how_to_extract=how)
  return meta


def feature_dim(backbone_config):
  """C, the width of the trunk's pooled output (shapes only, no weights)."""
  model = models.build_model(backbone_config)
  video = jax.ShapeDtypeStruct(models.input_shape(backbone_config),
                               jnp.float32)
  outputs, _ = jax.eval_shape(
      functools.partial(model.init_with_output, train=False),
      jax.random.key(0), video)
  return outputs['features'].shape[-1]
