"""Scoring clips and evaluating a split with the MA-52 metrics.

A video's score is the softmax of its logits averaged over its C clips; each
clip is `T = num_segments` frames. Every video is scored exactly once on any
number of processes: the eval iterator pads the last batch and its `mask`
drops the padding before metrics.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from maxmicro import checkpoint
from maxmicro import metrics as metrics_lib
from maxmicro import models
from maxmicro import prepare
from maxmicro import reporting
from maxmicro import sharding
from maxmicro import xla_options
from maxmicro.data import pipeline

# ImageNet statistics on 0..255 RGB, as the official pipeline normalises.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# Longest video id that crosses processes (ids are file names).
_MAX_ID_BYTES = 256


def normalise(video):
  """uint8 RGB `(..., 3)` -> float32 `(x - mean) / std`, on the device."""
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(IMAGENET_STD, jnp.float32)
  return (video.astype(jnp.float32) - mean) / std


def score_videos(variables, video, *, model, num_segments):
  """Action probabilities of videos.

  Args:
    variables: the model's `{'params', 'batch_stats'}`.
    video: uint8 `(B, C*T, S, S, 3)`, the C clips of a video consecutive.
    model: the `VideoClassifier`.
    num_segments: T.

  Returns:
    float32 `(B, 52)`: softmax of the logits averaged over the C clips.
  """
  batch, frames = video.shape[:2]
  num_clips = frames // num_segments
  clips = normalise(video).reshape(
      (batch * num_clips, num_segments) + video.shape[2:])
  logits = model.apply(variables, clips, train=False)['action_logits']
  return jax.nn.softmax(logits.reshape(batch, num_clips, -1).mean(axis=1))


def make_score_fn(model, num_segments, mesh, variables_shardings):
  """`score_videos` jitted over the mesh: `(variables, video) -> scores`."""
  batch = sharding.batch_sharding(mesh)
  return jax.jit(
      functools.partial(score_videos, model=model, num_segments=num_segments),
      in_shardings=(variables_shardings, batch), out_shardings=batch,
      compiler_options=xla_options.compiler_options())


@dataclasses.dataclass
class Predictions:
  """A split's scores in list order, padding dropped."""
  scores: np.ndarray  # (N, 52) float32
  labels: np.ndarray  # (N,) int32
  video_ids: list


def predict_split(score_fn, variables, iterator, mesh):
  """Scores every video of an eval iterator.

  Args:
    score_fn: from `make_score_fn`.
    variables: the model variables, placed as `score_fn` expects.
    iterator: a `pipeline.make_eval_iterator` iterable (the same number of
      batches on every process).
    mesh: the mesh `score_fn` runs on.

  Returns:
    `Predictions` of all processes' videos, on every process.
  """
  scores, labels, ids = [], [], []
  for batch in iterator:
    video = sharding.global_batch({'video': batch['video']}, mesh)['video']
    batch_scores = sharding.to_local(score_fn(variables, video), mesh)
    mask = np.asarray(batch['mask'], bool)
    scores.append(batch_scores[mask])
    labels.append(np.asarray(batch['label'])[mask])
    ids.extend(_as_str(v) for v in np.asarray(batch['video_id'])[mask])
  if not scores:
    raise ValueError('the evaluation split yielded no batches.')
  local = {'scores': np.concatenate(scores).astype(np.float32),
           'labels': np.concatenate(labels).astype(np.int32),
           'ids': _encode_ids(ids)}
  everything = sharding.gather_to_all(local)
  return Predictions(everything['scores'], everything['labels'],
                     _decode_ids(everything['ids']))


def evaluate(score_fn, variables, iterator, mesh):
  """`(ma52_metrics, Predictions)` of a split with ground truth."""
  predictions = predict_split(score_fn, variables, iterator, mesh)
  return (metrics_lib.ma52_metrics(predictions.scores, predictions.labels),
          predictions)


def _as_str(value):
  return value.decode() if isinstance(value, bytes) else str(value)


def _encode_ids(ids):
  """Strings -> a fixed-width uint8 array, so processes can all-gather them."""
  encoded = np.zeros((len(ids), _MAX_ID_BYTES), np.uint8)
  for row, video_id in enumerate(ids):
    data = video_id.encode()
    if len(data) > _MAX_ID_BYTES:
      raise ValueError(f'video id {video_id!r} is longer than '
                       f'{_MAX_ID_BYTES} bytes.')
    encoded[row, :len(data)] = np.frombuffer(data, np.uint8)
  return encoded


def _decode_ids(encoded):
  return [bytes(row).rstrip(b'\0').decode() for row in encoded]


def restore_variables(manager, step, config, shardings):
  """The model variables of checkpoint `step`, placed by `shardings`.

  `shardings` is one `jax.sharding.Sharding` for every array, or a tree.
  """
  model = models.build_model(config)
  size = config.data.image_size
  video_shape = (1, config.model.num_segments, size, size, 3)
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros(video_shape), train=False))
  abstract = {'params': abstract['params'],
              'batch_stats': abstract['batch_stats']}
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, abstract)
  target = sharding.with_shardings(abstract, shardings)
  return checkpoint.restore(manager, step, variables=target)['variables']


@dataclasses.dataclass
class Inference:
  """A checkpoint ready to score a split on the mesh."""
  config: object
  step: int
  mesh: object
  variables: object
  score_fn: object

  def iterator(self, split):
    return eval_iterator(self.config, split, self.mesh)


def eval_iterator(config, split, mesh):
  """This process' padded, masked batches of `split` (one pass)."""
  per_process = sharding.check_batch_size(config.eval.global_batch_size,
                                          mesh, 'eval')
  return pipeline.make_eval_iterator(
      config.data, split, num_segments=config.model.num_segments,
      per_process_batch_size=per_process,
      process_index=jax.process_index(), process_count=jax.process_count())


def load_inference(workdir, config=None, which='latest', check=None):
  """Finds a checkpoint, then (only then) checks the data and loads it.

  Args:
    workdir: the run's workdir.
    config: a config to use instead of the saved one (its model section must
      match the checkpoint's), or None.
    which: 'latest', 'best' or a step number.
    check: called with the config before any data is touched (argument
      checks such as "this split has labels").

  Raises:
    checkpoint.CheckpointError, ValueError, prepare.DatasetMissingError.
  """
  manager, step, saved = checkpoint.open_for_reading(workdir, which)
  try:
    config = checkpoint.resolve_config(saved, config)
    if check is not None:
      check(config)
    prepare.ensure_dataset(config)
    mesh = sharding.make_mesh()
    model = models.build_model(config)
    variables = restore_variables(manager, step, config,
                                  sharding.replicated(mesh))
  finally:
    manager.close()
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), variables)
  score_fn = make_score_fn(model, config.model.num_segments, mesh, shardings)
  return Inference(config, step, mesh, variables, score_fn)


def evaluate_checkpoint(workdir, config=None, which='latest', split=None):
  """`--mode=eval`: the metrics of a checkpoint on a labelled split.

  Writes the evaluation report to `WORKDIR/eval/` and returns
  `(metrics, step, split)`. The test split is refused: its labels are
  placeholders.
  """
  def check(config):
    name = split or config.data.eval_split
    if not pipeline.has_ground_truth(name):
      raise ValueError(
          f'split {name!r} has no ground-truth labels (MA-52 test labels are '
          'placeholders), so it has no metrics. Evaluate on validation, or '
          'write its challenge submission with --mode=submit.')
  inference = load_inference(workdir, config, which, check)
  split = split or inference.config.data.eval_split
  metrics, predictions = evaluate(inference.score_fn, inference.variables,
                                  inference.iterator(split), inference.mesh)
  reporting.write_eval_report(workdir, split, inference.step, metrics,
                              predictions)
  return metrics, inference.step, split
