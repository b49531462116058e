"""Scoring clips and evaluating a split with the MA-52 metrics (library).

A video's score is the average over its C clips of each clip's softmax
(mmaction2's `average_clips='prob'`, as the official MANet tests); each clip
is `T = num_segments` frames. Every video is scored exactly once on any
number of processes: the eval iterator pads the last batch and its `mask`
drops the padding after the processes' outputs are gathered.
"""

import dataclasses
import functools

import jax
import numpy as np

from maxmicro import checkpoint
from maxmicro import metrics as metrics_lib
from maxmicro import models
from maxmicro import ops
from maxmicro import sharding
from maxmicro import xla_options
from maxmicro.data import pipeline

# Longest video id that crosses processes (ids are file names).
_MAX_ID_BYTES = 256


def score_videos(variables, video, *, model, num_segments):
  """Action probabilities of videos.

  Args:
    variables: the model's `{'params', 'batch_stats'}`.
    video: uint8 `(B, C*T, S, S, 3)`, the C clips of a video consecutive.
    model: the `VideoClassifier`.
    num_segments: T.

  Returns:
    float32 `(B, 52)`: the clips' softmax probabilities averaged over the C
    clips (`average_clips='prob'`; with one clip, its softmax).
  """
  batch, frames = video.shape[:2]
  num_clips = frames // num_segments
  clips = ops.normalise(video).reshape(
      (batch * num_clips, num_segments) + video.shape[2:])
  logits = model.apply(variables, clips, train=False)['action_logits']
  return jax.nn.softmax(logits.reshape(batch, num_clips, -1)).mean(axis=1)


def make_score_fn(model, num_segments, mesh=None, variables_shardings=None):
  """`score_videos` jitted: `(variables, video) -> scores`.

  Over `mesh` (videos split along `data`, variables placed by
  `variables_shardings`), or without a mesh on the arguments' own devices
  (prediction on one device).
  """
  shardings = {}
  if mesh is not None:
    batch = sharding.batch_sharding(mesh)
    shardings = dict(in_shardings=(variables_shardings, batch),
                     out_shardings=batch)
  return jax.jit(
      functools.partial(score_videos, model=model, num_segments=num_segments),
      compiler_options=xla_options.compiler_options(), **shardings)


@dataclasses.dataclass
class Predictions:
  """A split's scores in list order, padding dropped."""
  scores: np.ndarray  # (N, 52) float32
  labels: np.ndarray  # (N,) int32
  video_ids: list


def predict_split(score_fn, variables, iterator, mesh, overlap=None):
  """Scores every video of an eval iterator.

  Args:
    score_fn: from `make_score_fn`.
    variables: the model variables, placed as `score_fn` expects.
    iterator: a `pipeline.make_eval_iterator` iterable (the same number of
      batches on every process).
    mesh: the mesh `score_fn` runs on.
    overlap: whether batch i+1 is read (JPEGs decoded on the host) while
      the device scores batch i, one batch in flight, or each batch's
      scores are waited for first. None: on accelerators only; on a CPU the
      device is the cores that decode, and overlapping gained nothing
      measurable (`benchmarks/eval_throughput.py`, RESULTS.md).

  Returns:
    `Predictions` of all processes' videos, on every process, in list order
    (process p reads the p-th contiguous slice of the split).
  """
  # Padding rows stay until after the gather (big_vision's way): every
  # process then holds the same number of rows, which the all-gather needs;
  # process slices differ by one video when the split does not divide.
  if overlap is None:
    overlap = jax.default_backend() != 'cpu'
  scores, labels, ids, masks = [], [], [], []
  in_flight = None
  for batch in iterator:
    video = sharding.global_batch({'video': batch['video']}, mesh)['video']
    dispatched = score_fn(variables, video)
    if in_flight is not None:
      scores.append(sharding.to_local(in_flight, mesh))
    in_flight = dispatched
    if not overlap:
      scores.append(sharding.to_local(in_flight, mesh))
      in_flight = None
    labels.append(np.asarray(batch['label']))
    ids.extend(_as_str(v) for v in np.asarray(batch['video_id']))
    masks.append(np.asarray(batch['mask'], bool))
  if in_flight is not None:
    scores.append(sharding.to_local(in_flight, mesh))
  if not scores:
    raise ValueError('the evaluation split yielded no batches.')
  local = {'scores': np.concatenate(scores).astype(np.float32),
           'labels': np.concatenate(labels).astype(np.int32),
           'ids': _encode_ids(ids),
           'mask': np.concatenate(masks).astype(np.uint8)}
  everything = sharding.gather_to_all(local, what='evaluation outputs')
  keep = everything['mask'].astype(bool)
  return Predictions(everything['scores'][keep], everything['labels'][keep],
                     _decode_ids(everything['ids'][keep]))


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
  abstract = models.abstract_variables(config)
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, abstract)
  target = sharding.with_shardings(abstract, shardings)
  return checkpoint.restore(manager, step, variables=target)['variables']


def eval_iterator(config, split):
  """This process' padded, masked batches of `split` (one pass).

  `config.eval.global_batch_size` divides over the processes and devices
  (`config_checks.check_fields`).
  """
  return pipeline.make_eval_iterator(
      config.data, split, num_segments=config.model.num_segments,
      per_process_batch_size=(config.eval.global_batch_size //
                              jax.process_count()),
      process_index=jax.process_index(), process_count=jax.process_count())
