"""Per-step backbone features of MMA-52 videos, extracted once.

The backbone is the per-frame trunk of a maxmicro video model (MANet, TSM or
TSN, `models.build_model`) restored from a recognition workdir
(`config.detection.backbone_workdir`: trained by maxmicro on MA-52, or
converted official weights). A video's frames at `frame_stride` are
preprocessed as evaluation does (short side resized, centre crop) and cut
into clips of the model's T consecutive steps, the last clip padded with its
last frame: the temporal shift then mixes neighbouring steps as it did in
training. A step's feature is the trunk's pooled output for its frame (the
`features` the recognition heads read), before any averaging over time.

The features directory records what made it (`identity`: backbone workdir,
checkpoint step and model, preprocessing, dataset, stride); training refuses
features whose identity differs from what its config asks for.
"""

import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from maxmicro import checkpoint
from maxmicro import evaluate
from maxmicro import models
from maxmicro import ops
from maxmicro import xla_options
from maxmicro.data import detection_pipeline
from maxmicro.data import records
from maxmicro.data import transforms


def how_to_extract(config_name='CONFIG'):
  return ('Extract them with: python run.py --mode=features '
          f'--config={config_name} --workdir=WORKDIR (the workdir you will '
          'train in).')


@dataclasses.dataclass
class Backbone:
  """A recognition checkpoint's trunk, ready to compute features."""
  config: object  # The recognition config saved with the checkpoint.
  workdir: str
  step: int
  variables: object = None  # The trunk's {'params', 'batch_stats'}.

  @property
  def num_segments(self):
    return self.config.model.num_segments

  def identity(self, config):
    """What features made by this backbone for `config` depend on."""
    return {
        'format': detection_pipeline.FORMAT_VERSION,
        'backbone_workdir': self.workdir,
        'backbone_step': int(self.step),
        'backbone_model': checkpoint.config_to_json(self.config)['model'],
        'image_size': self.config.data.image_size,
        'resize_short_side': self.config.data.resize_short_side,
        'dataset': f'mma52/{config.data.builder_config}',
        'frame_stride': config.detection.frame_stride,
    }


def open_backbone(config, with_variables=True):
  """The backbone `config.detection` names, its variables on one device.

  Raises:
    checkpoint.CheckpointError: no such workdir or checkpoint; the message
      says how to make one.
    ValueError: the workdir is not a recognition (MA-52) run.
  """
  detection = config.detection
  workdir = detection.backbone_workdir
  if not workdir or not os.path.isdir(workdir):
    raise checkpoint.CheckpointError(
        f'config.detection.backbone_workdir={workdir!r} is not a directory. '
        'The detector reads features of a maxmicro recognition backbone: '
        'train one first (for the demo: make demo, or python run.py '
        '--config=configs/demo.py --workdir=workdirs/demo) or convert '
        'official weights (python -m maxmicro.convert ...), and point '
        'config.detection.backbone_workdir at it.')
  manager, step, saved = checkpoint.open_for_reading(
      workdir, detection.backbone_checkpoint)
  try:
    if saved.data.dataset != 'ma52':
      raise ValueError(
          f'config.detection.backbone_workdir={workdir!r} holds a '
          f'{saved.data.dataset} model, not a recognition backbone.')
    backbone = Backbone(saved, os.path.abspath(workdir), int(step))
    if with_variables:
      variables = evaluate.restore_variables(
          manager, step, saved,
          jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
      backbone.variables = {key: value['backbone']
                            for key, value in variables.items()}
  finally:
    manager.close()
  return backbone


def make_feature_fn(backbone_config, batch_size):
  """`(trunk variables, clips uint8 (B, T, S, S, 3)) -> (B, T, C)` float32,
  jitted over this process' devices (clips split over them)."""
  model = models.build_model(backbone_config)
  trunk = model.backbone()
  devices = jax.local_devices()
  if batch_size % len(devices):
    raise ValueError(f'config.detection.features_batch_size={batch_size} '
                     f'must be a multiple of the {len(devices)} local '
                     'devices.')
  mesh = jax.make_mesh((len(devices),), ('data',), devices=devices)
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def features(variables, clips):
    frames = ops.normalise(clips).reshape((-1,) + clips.shape[2:])
    pooled = trunk.apply(variables, frames.astype(model.dtype), train=False)
    return pooled.astype(jnp.float32).reshape(clips.shape[:2] + (-1,))

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


def extract_features(config, log=print):
  """Writes the features of every split of `config.data` (one process).

  Returns:
    The features directory.
  """
  if jax.process_count() > 1:
    raise ValueError('run --mode=features as a single process (it uses all '
                     'of its local devices); the features it writes serve '
                     'training on any number of hosts.')
  directory = features_dir(config)
  backbone = open_backbone(config)
  stride = config.detection.frame_stride
  os.makedirs(directory, exist_ok=True)
  meta_path = os.path.join(directory, detection_pipeline.META_NAME)
  if os.path.exists(meta_path):  # Not valid while being rewritten.
    os.remove(meta_path)
  computer = FeatureComputer(backbone, config.detection.features_batch_size)
  feature_dim = None
  splits = {}
  started = time.perf_counter()
  for split in detection_pipeline.SPLITS:
    source = records.Mma52Records(config.data.data_dir,
                                  config.data.builder_config, split)
    writer = None
    waiting = {}  # index -> the video's fields but its JPEGs.
    for index in range(len(source)):
      video = source[index]
      frames = records.decode_frames(
          video['jpegs'], np.arange(0, len(video['jpegs']), stride))
      waiting[index] = {k: v for k, v in video.items() if k != 'jpegs'}
      done = computer.add(index, step_frames(frames, backbone))
      if index == len(source) - 1:
        done += computer.flush()
      for key, features in done:
        if writer is None:
          feature_dim = features.shape[1]
          writer = detection_pipeline.SplitWriter(directory, split,
                                                  feature_dim)
        writer.add(waiting.pop(key), features)
    splits[split] = writer.close() if writer else 0
    log(f'features of {split}: {splits[split]} videos '
        f'({computer.clips_run} clips so far, '
        f'{time.perf_counter() - started:.0f}s)')
  detection_pipeline.write_meta(directory, {
      'identity': backbone.identity(config), 'feature_dim': feature_dim,
      'splits': splits,
      'clips_per_second': computer.clips_run / (time.perf_counter() -
                                                started)})
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
  trunk = models.build_model(backbone_config).backbone()
  size = backbone_config.data.image_size
  frames = jax.ShapeDtypeStruct(
      (backbone_config.model.num_segments, size, size, 3), jnp.float32)
  output, _ = jax.eval_shape(
      functools.partial(trunk.init_with_output, train=False),
      jax.random.key(0), frames)
  return output.shape[-1]
