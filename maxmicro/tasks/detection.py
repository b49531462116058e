"""Multi-label micro-action detection on MMA-52, as a task of the trainer.

The trained model is the `TemporalDetector` (`maxmicro.models.detector`) on
per-step features of a recognition backbone, extracted once
(`maxmicro.detection.features`; `run.py --mode=features`, or by itself at the
start of training when there are none). A training batch is fixed-length
windows of features with their instances in steps, padded to K; the loss is
the sigmoid focal loss over classes plus the 1D DIoU regression loss
(`maxmicro.detection.losses`) on the targets `assign_targets` gives inside the
jitted step. Evaluation detects on every window of every validation video and
reports the challenge's mAP; the best checkpoint is the one with the highest
`mAP` (mean over the tIoU thresholds 0.1-0.9).

This is one of two ways to train: `config.detection.end_to_end` trains the
backbone with the detector, from frames (`maxmicro.tasks.
detection_end_to_end`, which reuses this module's loss, `Detector` and
reports).
"""

import functools
import json
import os

import jax

from maxmicro import labels as labels_lib
from maxmicro import models
from maxmicro import prepare
from maxmicro.data import detection_pipeline
from maxmicro.detection import features as features_lib
from maxmicro.detection import inference
from maxmicro.detection import losses
from maxmicro.detection import provenance
from maxmicro.detection import targets as targets_lib
from maxmicro.models import detector
from maxmicro.tasks import base
from maxmicro.tasks import recognition

EVAL_SUBDIR = recognition.EVAL_SUBDIR


def loss_fn(params, batch_stats, batch, rng, *, model, points, num_classes,
            detection_config):
  """The training loss of a batch of windows, for `jax.value_and_grad`.

  Args:
    params: `{'model': the detector's parameters}`.
    batch_stats: empty (the detector has no BatchNorm); returned as is.
    batch: `features (B, L, C)`, `mask (B, L)`, `segments (B, K, 2)` in
      steps, `labels (B, K)` detector class indices, `valid (B, K)`.
    rng: unused (no dropout).
    model, points, num_classes, detection_config: bound with `partial`.

  Returns:
    `(loss, (parts, batch_stats))`: parts are `cls_loss`, `reg_loss` and
    `positive_points` (per window).
  """
  del rng
  outputs = model.apply({'params': params['model']}, batch['features'],
                        batch['mask'])
  loss, parts = window_loss(outputs, batch, points=points,
                            num_classes=num_classes,
                            detection_config=detection_config)
  return loss, (parts, batch_stats)


def window_loss(outputs, batch, *, points, num_classes, detection_config):
  """The focal + DIoU loss of the detector's `outputs` on a batch's windows.

  Targets come from the batch's `segments`, `labels` and `valid`
  (`assign_targets`, per window). Returns `(loss, parts)`: `cls_loss`,
  `reg_loss` and `positive_points` (per window).
  """
  assign = functools.partial(
      targets_lib.assign_targets, points, num_classes=num_classes,
      center_sample_radius=detection_config.center_sample_radius)
  targets = jax.vmap(assign)(batch['segments'], batch['labels'],
                             batch['valid'])
  loss, parts = losses.detection_loss(
      outputs, targets, alpha=detection_config.focal_alpha,
      gamma=detection_config.focal_gamma,
      regression_weight=detection_config.regression_weight)
  parts['positive_points'] = (targets['positive'] & outputs['mask']).sum(
      axis=1).mean()
  return loss, parts


def detector_classes(config):
  """The class ids the detector scores, in output order."""
  classes = config.detection.classes
  return tuple(range(labels_lib.NUM_ACTIONS)) if classes is None else tuple(
      classes)


def build_detector(config):
  """The `TemporalDetector` of `config.model`, one output per class."""
  model = config.model
  ranges = model.regression_ranges
  return detector.TemporalDetector(
      num_classes=len(detector_classes(config)),
      num_levels=model.num_levels, width=model.width,
      kernel_size=model.kernel_size, head_depth=model.head_depth,
      attention_window=model.attention_window, num_heads=model.num_heads,
      regression_ranges=None if ranges is None else tuple(map(tuple, ranges)),
      prior_probability=model.prior_probability,
      dtype=models.compute_dtype(model.dtype))


def split_features(config, split, shuffle_labels='none'):
  return detection_pipeline.SplitFeatures(
      features_lib.features_dir(config), split, shuffle_labels, config.seed)


class Detector:
  """A detector and what scoring windows with it takes, for any split."""

  def __init__(self, config, model, mesh, variables_shardings):
    self.config = config
    self.model = model
    self.mesh = mesh
    self.classes = detector_classes(config)
    self.spec = detection_pipeline.WindowSpec.of(config.detection,
                                                 self.classes)
    self.points = model.points(config.detection.window_size)
    self.options = inference.DecodeOptions.of(config.detection)
    self.window_fn = inference.make_window_fn(model, mesh,
                                              variables_shardings)

  def __call__(self, variables, videos):
    """`{video_id: [(class, t_start, t_end, score)]}` of `videos`."""
    return inference.detect(
        self.window_fn, variables, videos, self.spec, self.points,
        window_stride=self.config.detection.eval_window_stride,
        per_process_batch_size=(self.config.eval.global_batch_size //
                                jax.process_count()),
        mesh=self.mesh, options=self.options, classes=self.classes)


def write_eval_report(workdir, split, step, metrics, detections):
  """Writes `eval/<split>_step<step>_detection.json` (process 0)."""
  if jax.process_index() != 0:
    return None
  directory = os.path.join(workdir, EVAL_SUBDIR)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f'{split}_step{step}_detection.json')
  with open(path, 'w') as file:
    json.dump({'split': split, 'step': int(step),
               'num_videos': len(detections),
               'num_detections': sum(map(len, detections.values())),
               **metrics}, file, indent=1)
  return path


class Evaluator:
  """Detects on `config.data.eval_split` and scores the mAP; compiled once."""

  def __init__(self, config, model, mesh, variables_shardings, workdir):
    self.config = config
    self.workdir = workdir
    self.detector = Detector(config, model, mesh, variables_shardings)
    self.videos = split_features(config, config.data.eval_split)

  def __call__(self, variables, step):
    split = self.config.data.eval_split
    detections = self.detector(variables, self.videos)
    metrics = inference.detection_metrics(detections, self.videos,
                                          self.detector.classes)
    write_eval_report(self.workdir, split, step, metrics, detections)
    return recognition.EvalResult(split, metrics, len(self.videos))


class Detection(base.Task):
  """MMA-52 detection: detector, loss, feature windows and mAP evaluation."""
  best_metric = 'mAP'
  batch_keys = ('features', 'mask', 'segments', 'labels', 'valid')

  def __init__(self, config):
    self.config = config
    self.classes = detector_classes(config)
    self.model = build_detector(config)
    self.spec = detection_pipeline.WindowSpec.of(config.detection,
                                                 self.classes)
    self.points = self.model.points(config.detection.window_size)
    self._train = None  # SplitFeatures, once the features are there.

  @property
  def input_shape(self):
    """`(1, L, C)`; C is known once `ensure_data` has run."""
    return (1, self.config.detection.window_size,
            self._train_features().feature_dim)

  def loss_fn(self):
    return functools.partial(
        loss_fn, model=self.model, points=self.points,
        num_classes=len(self.classes),
        detection_config=self.config.detection)

  def ensure_data(self, log):
    """Builds the demo's data if asked; extracts features if there are none.

    Stale features (another backbone, checkpoint step or stride) are
    refused, never overwritten: `--mode=features` re-extracts them.
    """
    prepare.ensure_mma52(self.config, log)
    try:
      features_lib.check_features(self.config)
    except detection_pipeline.MissingFeaturesError:
      log(f'extracting backbone features into '
          f'{features_lib.features_dir(self.config)}')
      features_lib.extract_features(self.config, log)

  def _train_features(self):
    if self._train is None:
      self._train = split_features(
          self.config, self.config.data.train_split,
          shuffle_labels=self.config.detection.shuffle_train_labels)
    return self._train

  def num_train_examples(self):
    """Training videos (an epoch is one window of each)."""
    return len(self._train_features())

  def train_iterator(self, per_process_batch_size):
    return detection_pipeline.make_train_iterator(
        self._train_features(), detection_pipeline.TrainWindow(self.spec),
        per_process_batch_size=per_process_batch_size, seed=self.config.seed,
        process_index=jax.process_index(), process_count=jax.process_count())

  def make_evaluator(self, mesh, variables_shardings, workdir):
    # Before the first save: eval, predict and submit check the record.
    provenance.record(
        workdir, features_lib.check_features(self.config)['identity'])
    return Evaluator(self.config, self.model, mesh, variables_shardings,
                     workdir)
