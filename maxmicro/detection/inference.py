"""Windows of features -> detections in seconds, and their mAP.

The detector scores windows on the mesh (`make_window_fn`). Each process
decodes the windows it scored into a fixed number of candidates per window
(`postprocess.select_candidates`, padded), the processes gather those
fixed-shape arrays (never ragged ones), and every process then runs soft-NMS
per video over the candidates of the video's windows, so all of them hold
every video's detections.
"""

import collections
import dataclasses
import functools

import jax
import numpy as np

from maxmicro import metrics as metrics_lib
from maxmicro import sharding
from maxmicro import xla_options
from maxmicro.data import detection_pipeline
from maxmicro.detection import postprocess


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """Post-processing knobs, from `config.detection`."""
  score_threshold: float
  candidates_per_window: int
  min_length: float
  nms_sigma: float
  min_score: float
  max_detections: int

  @classmethod
  def of(cls, detection_config):
    return cls(**{field.name: detection_config[field.name]
                  for field in dataclasses.fields(cls)})


def score_windows(variables, features, mask, *, model):
  """`(sigmoid scores (B, P, C), regression (B, P, 2), point mask (B, P))`."""
  outputs = model.apply(variables, features, mask)
  return (jax.nn.sigmoid(outputs['cls_logits']), outputs['regression'],
          outputs['mask'])


def make_window_fn(model, mesh, variables_shardings):
  """`score_windows` jitted over `mesh`, windows split along `data`."""
  batch = sharding.batch_sharding(mesh)
  return jax.jit(functools.partial(score_windows, model=model),
                 in_shardings=(variables_shardings, batch, batch),
                 out_shardings=batch,
                 compiler_options=xla_options.compiler_options())


def _window_candidates(scores, regression, point_mask, points, video, start,
                       spec, options):
  """A window's candidates, padded to `options.candidates_per_window`."""
  size = options.candidates_per_window
  seconds_per_step = spec.frame_stride / video['fps']
  labels, segments, values = postprocess.select_candidates(
      scores, regression, points, seconds_per_step=seconds_per_step,
      offset=start * seconds_per_step,
      duration=video['num_frames'] / video['fps'], mask=point_mask,
      score_threshold=options.score_threshold, top_k=size,
      min_length=options.min_length)
  padded = {'labels': np.zeros(size, np.int64),
            'segments': np.zeros((size, 2), np.float64),
            'scores': np.full(size, -1.0)}  # Below any score: padding.
  count = len(labels)
  padded['labels'][:count] = labels
  padded['segments'][:count] = segments
  padded['scores'][:count] = values
  return padded


def detect(window_fn, variables, videos, spec, points, *, window_stride,
           per_process_batch_size, mesh, options, classes):
  """Detections of every video of `videos` (on every process).

  Args:
    window_fn: `make_window_fn`'s.
    variables: the detector's variables, placed as `window_fn` expects.
    videos: `detection_pipeline.SplitFeatures`, or a list of such dicts.
    spec: the `detection_pipeline.WindowSpec`.
    points: the detector's `Points` of a window.
    window_stride: steps between the starts of a long video's windows.
    per_process_batch_size: windows per batch on this process.
    mesh: the mesh `window_fn` runs on.
    options: `DecodeOptions`.
    classes: the dataset class id of each detector output.

  Returns:
    `{video_id: [(class id, t_start, t_end, score), ...]}`, every video of
    `videos` present, detections by descending score.
  """
  windows = detection_pipeline.eval_windows(videos, spec, window_stride)
  local = collections.defaultdict(list)
  for batch in detection_pipeline.make_eval_batches(
      videos, spec, windows, per_process_batch_size=per_process_batch_size,
      process_index=jax.process_index(), process_count=jax.process_count()):
    arrays = sharding.global_batch(
        {'features': batch['features'], 'mask': batch['mask']}, mesh)
    outputs = [sharding.to_local(output, mesh) for output in window_fn(
        variables, arrays['features'], arrays['mask'])]
    for row, window in enumerate(batch['window']):
      video, start = windows[max(window, 0)]
      candidates = _window_candidates(
          *(output[row] for output in outputs), points, videos[video], start,
          spec, options)
      for key, value in candidates.items():
        local[key].append(value)
      local['window'].append(window)
  everything = sharding.gather_to_all(
      {key: np.stack(value) for key, value in local.items()})
  by_video = collections.defaultdict(list)
  for row, window in enumerate(everything['window']):
    if window >= 0:
      by_video[windows[window][0]].append(row)
  detections = {}
  for video in range(len(videos)):
    rows = by_video[video]
    kept = everything['scores'][rows] >= 0  # (windows, candidates)
    found = postprocess.soft_nms(
        everything['labels'][rows][kept], everything['segments'][rows][kept],
        everything['scores'][rows][kept], sigma=options.nms_sigma,
        min_score=options.min_score, max_detections=options.max_detections)
    detections[videos[video]['video_id']] = [
        (int(classes[label]), start, end, score)
        for label, start, end, score in found]
  return detections


def ground_truth_rows(videos):
  """`(video_id, class, t_start, t_end)` of every instance of `videos`."""
  rows = []
  for index in range(len(videos)):
    video = videos[index]
    rows += [(video['video_id'], int(label), float(start), float(end))
             for (start, end), label in zip(video['segments'],
                                            video['labels'])]
  return rows


def detection_metrics(detections, videos, classes):
  """`metrics.detection_map` over the classes the detector knows.

  With all 52 classes this is the official mAP. With a subset (the demo),
  classes are renumbered `0 .. len(classes) - 1` and instances of the
  others left out, so the mean is over the subset: the official mean over
  52 would count every class outside it as an AP of 0.
  """
  index = {int(c): i for i, c in enumerate(classes)}
  ground_truth = [(video_id, index[label], start, end)
                  for video_id, label, start, end in ground_truth_rows(videos)
                  if label in index]
  predictions = [(video_id, index[label], start, end, score)
                 for video_id, rows in detections.items()
                 for label, start, end, score in rows]
  return metrics_lib.detection_map(ground_truth, predictions,
                                   num_classes=len(classes))


def submission_rows(detections):
  """`(video_id, t_start, t_end, class, score)` rows for
  `submit.write_detection_submission`, videos in their order."""
  return [(video_id, start, end, label, score)
          for video_id, rows in detections.items()
          for label, start, end, score in rows]
