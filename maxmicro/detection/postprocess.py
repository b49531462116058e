"""Host-side decoding: per-point scores and distances -> scored segments.

numpy on one video at a time (ragged outputs have no place on the device):
`select_candidates` keeps the best (point, class) pairs of a window and turns
them into segments in seconds; `soft_nms` decays per-class duplicates, as
ActionFormer. A video cut into several windows concatenates the candidates
of its windows before `soft_nms`; `decode_video` is the one-window path.
"""

import numpy as np


def select_candidates(scores, regression, points, *, seconds_per_step,
                      offset=0.0, duration=None, mask=None,
                      score_threshold=0.001, top_k=2000, min_length=0.0):
  """The top (point, class) pairs of one window as segments in seconds.

  Args:
    scores: `(P, C)` sigmoid probabilities of the detector.
    regression: `(P, 2)` distances to start and end, in strides.
    points: the detector's `Points` for this window.
    seconds_per_step: seconds between two input steps (frame stride / fps).
    offset: time in seconds of step 0 of the window.
    duration: seconds of the video, to clip to; None: no upper clip.
    mask: `(P,)` bool, False at padded points; None: all valid.
    score_threshold: pairs scoring at or below it are dropped.
    top_k: at most this many pairs, the best-scoring ones, are kept.
    min_length: segments of this many seconds or fewer (after clipping) are
      dropped.

  Returns:
    `(labels (D,) int64, segments (D, 2) float64 seconds, scores (D,))`.
  """
  scores = np.asarray(scores, np.float64)
  regression = np.asarray(regression, np.float64)
  num_classes = scores.shape[1]
  if mask is not None:
    scores = np.where(np.asarray(mask, bool)[:, None], scores, 0.0)
  flat = scores.reshape(-1)
  kept = np.flatnonzero(flat > score_threshold)
  if kept.size > top_k:  # argpartition: linear, the order does not matter.
    kept = kept[np.argpartition(-flat[kept], top_k - 1)[:top_k]]
  point, labels = np.divmod(kept, num_classes)
  centres = points.centres[point].astype(np.float64)
  strides = points.strides[point].astype(np.float64)
  steps = np.stack([centres - regression[point, 0] * strides,
                    centres + regression[point, 1] * strides], axis=-1)
  segments = np.maximum(offset + steps * seconds_per_step, 0.0)
  if duration is not None:
    segments = np.minimum(segments, duration)
  long_enough = segments[:, 1] - segments[:, 0] > min_length
  return labels[long_enough], segments[long_enough], flat[kept][long_enough]


def soft_nms(labels, segments, scores, *, sigma=0.5, min_score=0.001,
             max_detections=100):
  """Per-class Gaussian soft-NMS; rows `(label, t_start, t_end, score)`.

  Repeatedly takes the best remaining segment and multiplies the scores of
  the other segments of its class by `exp(-tIoU**2 / sigma)` (ActionFormer's
  Gaussian soft-NMS); segments that fall to `min_score` or below are dropped.
  Classes never touch each other's scores, so running them all at once,
  always taking the best segment of any class, is the same as per class; and
  since scores only fall, what is taken comes in descending order of final
  score, so the loop stops after `max_detections` takes instead of sorting
  out every candidate.

  Returns:
    A list of `(int label, float t_start, float t_end, float score)`, by
    descending score, at most `max_detections` long.
  """
  order = np.argsort(labels, kind='stable')
  labels = np.asarray(labels)[order]
  segments = np.asarray(segments, np.float64)[order]
  scores = np.array(scores, np.float64)[order]  # A copy: decayed in place.
  # Candidates of class c are the slice [first[c], first[c + 1]).
  classes, first = np.unique(labels, return_index=True)
  class_end = dict(zip(classes, np.append(first[1:], len(labels))))
  class_start = dict(zip(classes, first))
  rows = []
  while len(rows) < max_detections and scores.size:
    best = int(np.argmax(scores))
    score = scores[best]
    if score <= min_score:
      break
    label = labels[best]
    start, end = segments[best]
    rows.append((int(label), float(start), float(end), float(score)))
    scores[best] = -1.0  # Taken; the decay below keeps it negative.
    same = slice(class_start[label], class_end[label])
    others = segments[same]
    intersection = np.maximum(
        np.minimum(end, others[:, 1]) - np.maximum(start, others[:, 0]), 0.0)
    union = (end - start) + (others[:, 1] - others[:, 0]) - intersection
    iou = intersection / np.maximum(union, 1e-8)
    scores[same] *= np.exp(-np.square(iou) / sigma)
  return rows


def decode_video(scores, regression, points, *, seconds_per_step,
                 offset=0.0, duration=None, mask=None, score_threshold=0.001,
                 top_k=2000, min_length=0.0, sigma=0.5, min_score=0.001,
                 max_detections=100):
  """`select_candidates` then `soft_nms` for a video held in one window.

  Arguments as those two functions'; returns `soft_nms`'s rows.
  """
  candidates = select_candidates(
      scores, regression, points, seconds_per_step=seconds_per_step,
      offset=offset, duration=duration, mask=mask,
      score_threshold=score_threshold, top_k=top_k, min_length=min_length)
  return soft_nms(*candidates, sigma=sigma, min_score=min_score,
                  max_detections=max_detections)
