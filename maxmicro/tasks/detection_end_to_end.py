"""MMA-52 detection trained end to end from frames, as a task of the trainer.

`config.detection.end_to_end` picks it (`maxmicro.tasks.get_task`). The
model is `FramesDetector`: the per-frame trunk of the recognition backbone
in `config.detection.backbone_workdir`, which initialises it, then the
`TemporalDetector`, trained together, the trunk at
`config.detection.backbone_lr_multiplier` times the detector's learning rate
(PointTAD, the benchmark's baseline, fine-tunes its backbone at 1e-5 beside
2e-4). The trunk's BatchNorm statistics stay frozen (`FramesDetector` says
why). A training batch is windows of step frames
(`maxmicro.data.frame_windows`) whose clips are the clips feature
extraction cuts; the loss is the feature path's (`detection.window_loss`).

Evaluation, `--mode=eval`, `predict` and `submit` compute every video's
features in memory with the checkpoint's own trunk (`FrameFeatures`, the
extraction code with these variables), then detect on windows of them and
score them exactly as the feature path does (`detection.Detector`).
Nothing is written to or read from a features directory.
"""

import dataclasses
import functools

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp

from maxmicro import checkpoint
from maxmicro import models
from maxmicro import ops
from maxmicro import prepare
from maxmicro import sharding
from maxmicro.data import detection_pipeline
from maxmicro.data import frame_windows
from maxmicro.data import records
from maxmicro.detection import features as features_lib
from maxmicro.detection import inference
from maxmicro.models import frames_detector
from maxmicro.tasks import base
from maxmicro.tasks import detection
from maxmicro.tasks import recognition

# The module of the model whose learning rate `backbone_lr_multiplier` sets.
BACKBONE = 'backbone'
DETECTOR = 'detector'


def is_end_to_end(config):
  """Whether `config` trains detection end to end from frames.

  Detection configs saved before `detection.end_to_end` existed have no
  such field: they trained on features.
  """
  return (config.data.dataset == 'mma52' and
          bool(config.detection.get('end_to_end', False)))


def build_model(config, backbone_config):
  """The `FramesDetector` of the backbone's trunk and `config.model`."""
  trunk = models.build_trunk(backbone_config)
  return frames_detector.FramesDetector(
      backbone=trunk.module(),
      detector=detection.build_detector(config),
      clip_steps=backbone_config.model.num_segments,
      window_size=config.detection.window_size,
      trunk=trunk)


def frame_spec(config, backbone_config):
  """How videos become windows of frames, for this backbone."""
  return frame_windows.FrameWindowSpec(
      window=detection_pipeline.WindowSpec.of(
          config.detection, detection.detector_classes(config)),
      clip_steps=backbone_config.model.num_segments,
      image_size=backbone_config.data.image_size,
      resize_short_side=backbone_config.data.resize_short_side)


def loss_fn(params, batch_stats, batch, rng, *, model, points, num_classes,
            detection_config):
  """The training loss of a batch of frame windows, for `value_and_grad`.

  Args:
    params: `{'model': {'backbone': ..., 'detector': ...}}`.
    batch_stats: the trunk's BatchNorm statistics, used and returned as
      they are (frozen).
    batch: `frames` uint8 `(B, F, S, S, 3)`, `mask (B, L)`, `segments
      (B, K, 2)` in steps, `labels (B, K)`, `valid (B, K)`.
    rng: unused (no dropout).
    model, points, num_classes, detection_config: bound with `partial`.

  Returns:
    `(loss, (parts, batch_stats))`, parts as `detection.window_loss` gives.
  """
  del rng
  outputs = model.apply(
      {'params': params['model'], 'batch_stats': batch_stats},
      ops.normalise(batch['frames']), batch['mask'])
  loss, parts = detection.window_loss(outputs, batch, points=points,
                                      num_classes=num_classes,
                                      detection_config=detection_config)
  return loss, (parts, batch_stats)


def trunk_variables(variables):
  """The trunk's `{'params', 'batch_stats'}` of the model's variables."""
  return {'params': variables['params'][BACKBONE],
          'batch_stats': variables['batch_stats'].get(BACKBONE, {})}


def detector_variables(variables):
  """The detector's variables (it has no statistics)."""
  return {'params': variables['params'][DETECTOR], 'batch_stats': {}}


def compute_videos(source, computer, frame_stride):
  """Every video of `source` as `SplitFeatures` gives one, its features
  computed now by `computer` (a `features.FeatureComputer`).

  Args:
    source: a split's `records.Mma52Records`.
    computer: holds the trunk and its variables.
    frame_stride: frames per step.

  Returns:
    A list of dicts: `features` float32 `(n, C)`, `video_id`, `fps`,
    `num_frames`, `segments`, `labels`.
  """
  return [{**fields, 'features': features}
          for fields, features in features_lib.iter_split_features(
              source, computer, frame_stride, range(len(source)))]


class FrameFeatures:
  """Features of whole videos, computed in memory by a trunk whose variables
  change as training goes; compiled once."""

  def __init__(self, config, backbone):
    self.config = config
    self.computer = features_lib.FeatureComputer(
        backbone, config.detection.features_batch_size)

  def set_trunk(self, variables):
    """Uses the trunk `variables` (any sharding) from now on.

    The feature function runs on this process' devices, so every process
    takes a whole copy (the trainer's state may be split over all).
    """
    local = multihost_utils.process_allgather(variables, tiled=True)
    self.computer.backbone = dataclasses.replace(self.computer.backbone,
                                                 variables=local)

  def split_videos(self, split):
    """`compute_videos` of a split of `config.data`."""
    source = records.Mma52Records(self.config.data.data_dir,
                                  self.config.data.builder_config, split)
    return compute_videos(source, self.computer,
                          self.config.detection.frame_stride)


class Evaluator:
  """Features of `config.data.eval_split` with the state's trunk, then
  detection and mAP as the feature path scores them.

  Every process computes the features of every video (a validation split's
  worth, on its local devices); the windows are then split over the
  processes as on the feature path (`inference.detect`).
  """

  def __init__(self, config, backbone, mesh, variables_shardings, workdir):
    self.config = config
    self.workdir = workdir
    self.features = FrameFeatures(config, backbone)
    self.detector = detection.Detector(
        config, detection.build_detector(config), mesh,
        detector_variables(variables_shardings))

  def __call__(self, variables, step):
    split = self.config.data.eval_split
    self.features.set_trunk(trunk_variables(variables))
    videos = self.features.split_videos(split)
    detections = self.detector(detector_variables(variables), videos)
    metrics = inference.detection_metrics(detections, videos,
                                          self.detector.classes)
    detection.write_eval_report(self.workdir, split, step, metrics,
                                detections)
    return recognition.EvalResult(split, metrics, len(videos))


class DetectionEndToEnd(base.Task):
  """MMA-52 detection from frames: trunk + detector, frame windows, mAP."""
  best_metric = 'mAP'
  batch_keys = ('frames', 'mask', 'segments', 'labels', 'valid')

  def __init__(self, config):
    self.config = config
    # The trunk's architecture and preprocessing; weights come later.
    self.backbone = features_lib.open_backbone(config, with_variables=False)
    self.classes = detection.detector_classes(config)
    self.model = build_model(config, self.backbone.config)
    self.spec = frame_spec(config, self.backbone.config)
    self.points = self.model.detector.points(config.detection.window_size)
    self._train = None  # Mma52Records, once the data is built.

  @property
  def input_shape(self):
    return self.spec.input_shape

  def learning_rate_multipliers(self):
    """The trunk at `backbone_lr_multiplier` times every group's rate."""
    return {BACKBONE: self.config.detection.backbone_lr_multiplier}

  def pretrained_variables(self, log):
    """The recognition checkpoint's trunk, for the `backbone` module."""
    backbone = features_lib.open_backbone(self.config, with_variables=True)
    log('initialising the backbone with the weights config.detection names')
    return {collection: {BACKBONE: tree}
            for collection, tree in backbone.variables.items()}

  def loss_fn(self):
    return functools.partial(
        loss_fn, model=self.model, points=self.points,
        num_classes=len(self.classes),
        detection_config=self.config.detection)

  def ensure_data(self, log):
    """Builds the demo's data if asked; no features are needed."""
    prepare.ensure_mma52(self.config, log)

  def _train_records(self):
    if self._train is None:
      self._train = records.Mma52Records(
          self.config.data.data_dir, self.config.data.builder_config,
          self.config.data.train_split)
    return self._train

  def num_train_examples(self):
    """Training videos (an epoch is one window of each)."""
    return len(self._train_records())

  def train_iterator(self, per_process_batch_size):
    return detection_pipeline.make_train_iterator(
        self._train_records(), frame_windows.TrainFrameWindow(self.spec),
        per_process_batch_size=per_process_batch_size, seed=self.config.seed,
        process_index=jax.process_index(), process_count=jax.process_count())

  def make_evaluator(self, mesh, variables_shardings, workdir):
    return Evaluator(self.config, self.backbone, mesh, variables_shardings,
                     workdir)


def restore_for_inference(manager, step, config):
  """An end-to-end checkpoint ready to detect, for `detection_commands`.

  Returns:
    `(detection.Detector, its variables, FrameFeatures)`: the features
    computed with the checkpoint's trunk.
  """
  backbone = features_lib.open_backbone(config, with_variables=False)
  model = build_model(config, backbone.config)
  spec = frame_spec(config, backbone.config)
  frames = jax.ShapeDtypeStruct(spec.input_shape, jnp.float32)
  shapes = jax.eval_shape(functools.partial(model.init, train=False),
                          jax.random.key(0), frames)
  abstract = {'params': shapes['params'], 'batch_stats': shapes['batch_stats']}
  mesh = sharding.make_mesh()
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  variables = checkpoint.restore(
      manager, step,
      variables=sharding.with_shardings(abstract, shardings))['variables']
  features = FrameFeatures(config, backbone)
  features.set_trunk(trunk_variables(variables))
  detector = detection.Detector(config, detection.build_detector(config),
                                mesh, detector_variables(shardings))
  return detector, detector_variables(variables), features
