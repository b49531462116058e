"""The MA-52 benchmark's metrics, in numpy.

Action top-1 and top-5 come from the ranking of the action scores; body labels
and predictions are `ACTION_TO_BODY` of the action label and of the action
argmax; F1 micro and macro follow scikit-learn's `f1_score` (macro averages
over the classes present in the labels or the predictions); `f1_mean` is the
mean of the four F1 scores. Every value is a fraction in [0, 1].

`detection_map` is MMA-52's detection metric, the MAC challenge's mAP.
"""

import numpy as np

from maxmicro import labels as labels_lib

METRIC_NAMES = ('action_top1', 'action_top5', 'body_top1', 'action_f1_micro',
                'action_f1_macro', 'body_f1_micro', 'body_f1_macro', 'f1_mean')


def top_k(scores, k):
  """Ids of the k highest scores per row, best first, `(N, C) -> (N, k)`.

  Ties go to the lower id (a stable sort), the same rule as `argmax`.
  """
  return np.argsort(-np.asarray(scores), axis=-1, kind='stable')[:, :k]


def f1_per_class(labels, predictions, num_classes):
  """Per-class F1 and a mask of the classes present in labels or predictions.

  F1 is `2 TP / (2 TP + FP + FN)`, 0 where a class is absent from both.
  """
  true_counts = np.bincount(labels, minlength=num_classes)
  predicted_counts = np.bincount(predictions, minlength=num_classes)
  true_positives = np.bincount(labels[labels == predictions],
                               minlength=num_classes)
  denominator = true_counts + predicted_counts
  present = denominator > 0
  f1 = np.zeros(num_classes)
  f1[present] = 2 * true_positives[present] / denominator[present]
  return f1, present


def f1_micro_macro(labels, predictions, num_classes):
  """sklearn's `f1_score(average='micro')` and `(average='macro')`."""
  f1, present = f1_per_class(labels, predictions, num_classes)
  # Single-label micro F1: 2 sum(TP) / (2 sum(TP) + sum(FP) + sum(FN)).
  micro = float(np.mean(labels == predictions))
  return micro, float(np.mean(f1[present]))


def ma52_metrics(scores, labels):
  """The eight MA-52 metrics of action scores.

  Args:
    scores: `(N, 52)` action scores (logits or probabilities: only their
      ranking matters).
    labels: `(N,)` int action ids.

  Returns:
    A dict of floats in [0, 1] under `METRIC_NAMES`.
  """
  scores = np.asarray(scores)
  labels = np.asarray(labels).astype(np.int64)
  if scores.ndim != 2 or scores.shape[1] != labels_lib.NUM_ACTIONS:
    raise ValueError(f'scores have shape {scores.shape}, expected '
                     f'(N, {labels_lib.NUM_ACTIONS}).')
  if labels.shape != scores.shape[:1]:
    raise ValueError(f'labels have shape {labels.shape}, expected '
                     f'({scores.shape[0]},) to match the scores.')
  if not len(labels):
    raise ValueError('ma52_metrics needs at least one example.')
  top5 = top_k(scores, 5)
  action_predictions = top5[:, 0]
  body_labels = labels_lib.ACTION_TO_BODY[labels]
  body_predictions = labels_lib.ACTION_TO_BODY[action_predictions]
  action_micro, action_macro = f1_micro_macro(
      labels, action_predictions, labels_lib.NUM_ACTIONS)
  body_micro, body_macro = f1_micro_macro(
      body_labels, body_predictions, labels_lib.NUM_BODY_PARTS)
  results = {
      'action_top1': float(np.mean(action_predictions == labels)),
      'action_top5': float(np.mean(np.any(top5 == labels[:, None], axis=1))),
      'body_top1': float(np.mean(body_predictions == body_labels)),
      'action_f1_micro': action_micro,
      'action_f1_macro': action_macro,
      'body_f1_micro': body_micro,
      'body_f1_macro': body_macro,
  }
  results['f1_mean'] = float(np.mean([action_micro, action_macro, body_micro,
                                      body_macro]))
  return results


def confusion_matrix(labels, predictions, num_classes):
  """Counts `(num_classes, num_classes)`: row = true class, column = predicted."""
  matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
  np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
  return matrix


def format_table(metrics):
  """The metrics as an aligned two-column text table, in percent.

  MA-52's metrics in their order; other metrics (detection's mAPs) as given.
  """
  names = [name for name in METRIC_NAMES if name in metrics] or list(metrics)
  rows = [f'{name:<16} {100 * metrics[name]:6.2f}' for name in names]
  return '\n'.join(rows)


def detection_map(ground_truth, predictions, num_classes=52,
                  tiou_thresholds=None):
  """MMA-52 detection mAP, as the MAC challenge's `datasets/evaluate.py`.

  Reproduces VUT-HFUT/MAC_2024_baseline `MMAD/PointTAD/datasets/evaluate.py`
  (ActivityNet's `compute_average_precision_detection`), value for value:
  - tIoU = intersection / (union + 1e-4), so an exact match scores just
    under 1 (a 2 s segment: 0.99995).
  - Per class, predictions go by descending score in the order of numpy's
    `scores.argsort()[::-1]` over that class's predictions in input order.
    Equal scores go in that order, which numpy leaves unspecified (its SIMD
    sorts differ by CPU; for two equal scores on AVX2 it is the later row
    first), so this matches the official code run on the same machine.
  - At each threshold a prediction takes, of the not yet taken ground truth of
    its video and class, the first in `tiou.argsort()[::-1]` order (highest
    tIoU; equal tIoUs in that order) if its tIoU is not below the threshold;
    otherwise, or without ground truth there, it is a false positive.
  - AP is VOC-2011 interpolated (`interpolated_prec_rec`). mAP at a threshold
    is the mean over all `num_classes` classes: a class without ground truth
    scores 0 without predictions and NaN with some (the official recall
    0 / 0), which makes the mAP NaN. `mAP` is the mean over the thresholds.

  Args:
    ground_truth: rows `(video_id, label, t_start, t_end)`, times in seconds.
    predictions: rows `(video_id, label, t_start, t_end, score)`.
    num_classes: labels `0 .. num_classes - 1` count; other labels are ignored.
    tiou_thresholds: defaults to `np.arange(0.1, 1.0, 0.1)`.

  Returns:
    Floats (fractions): `mAP` and `mAP@0.1` ... `mAP@0.9` (one per threshold,
    named with one decimal).
  """
  thresholds = (np.arange(0.1, 1.0, 0.1) if tiou_thresholds is None
                else np.asarray(tiou_thresholds, dtype=np.float64))
  gt_videos, gt_labels, *gt_times = _columns(ground_truth, 4)
  videos, labels, *times, scores = _columns(predictions, 5)
  video_codes = {}
  gt_videos = _encode(gt_videos, video_codes)
  videos = _encode(videos, video_codes)
  gt_labels = np.asarray(gt_labels).astype(np.int64)
  labels = np.asarray(labels).astype(np.int64)
  gt_segments = np.asarray(gt_times, dtype=np.float64).reshape(2, -1).T
  segments = np.asarray(times, dtype=np.float64).reshape(2, -1).T
  scores = np.asarray(scores, dtype=np.float64)

  average_precision = np.zeros((len(thresholds), num_classes))
  for label in range(num_classes):
    true = gt_labels == label
    predicted = np.flatnonzero(labels == label)
    predicted = predicted[np.argsort(scores[predicted])[::-1]]
    hits = _match(gt_videos[true], gt_segments[true], videos[predicted],
                  segments[predicted], thresholds)
    average_precision[:, label] = _average_precision(hits,
                                                     np.count_nonzero(true))
  per_threshold = average_precision.mean(axis=1)
  results = {'mAP': float(per_threshold.mean())}
  for threshold, value in zip(thresholds, per_threshold):
    results[f'mAP@{threshold:.1f}'] = float(value)
  return results


def _columns(rows, width):
  """Rows of `width` fields (tuples or an array) as `width` columns."""
  return list(zip(*rows)) or [()] * width


def _encode(video_ids, codes):
  """Video ids as ints, numbering new ids in `codes` as they come."""
  return np.array([codes.setdefault(v, len(codes)) for v in video_ids],
                  dtype=np.int64)


def _segment_iou(predicted, true):
  """The official `segment_iou` of segments `(..., 2)`, broadcast."""
  intersection = np.clip(np.minimum(predicted[..., 1], true[..., 1]) -
                         np.maximum(predicted[..., 0], true[..., 0]), 0, None)
  union = ((true[..., 1] - true[..., 0]) +
           (predicted[..., 1] - predicted[..., 0]) - intersection)
  return intersection / (union + 1e-4)


def _rank_in_group(groups):
  """For each element, how many earlier elements share its group."""
  order = np.argsort(groups, kind='stable')
  sorted_groups = groups[order]
  starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
  sizes = np.diff(np.r_[starts, len(groups)])
  rank = np.empty(len(groups), dtype=np.int64)
  rank[order] = np.arange(len(groups)) - np.repeat(starts, sizes)
  return rank


def _match(gt_videos, gt_segments, videos, segments, thresholds):
  """One class's greedy matching; predictions come best score first.

  Returns:
    `(T, P)` bool: prediction p is a true positive at threshold t.
  """
  hits = np.zeros((len(thresholds), len(videos)), dtype=bool)
  if not len(gt_videos):
    return hits
  # Row v of `table` lists the ground truth of video `table_videos[v]`, in
  # input order, padded with -1.
  table_videos, gt_rows = np.unique(gt_videos, return_inverse=True)
  counts = np.bincount(gt_rows)
  table = np.full((len(table_videos), counts.max()), -1)
  table[gt_rows, _rank_in_group(gt_rows)] = np.arange(len(gt_videos))
  video_rows = np.minimum(np.searchsorted(table_videos, videos),
                          len(table_videos) - 1)
  matchable = np.flatnonzero(table_videos[video_rows] == videos)
  video_rows = video_rows[matchable]

  # Each prediction's candidates, best tIoU first: gt ids (-1 = padding) and
  # tIoUs (-inf = padding). Rows are sorted over their video's real entries
  # only, since padding would change numpy's order of equal tIoUs.
  candidates = table[video_rows]
  tious = np.where(candidates >= 0,
                   _segment_iou(segments[matchable, None],
                                gt_segments[candidates]), -np.inf)
  for count in np.unique(counts[video_rows]):
    same = np.flatnonzero(counts[video_rows] == count)
    order = np.argsort(tious[same, :count], axis=1)[:, ::-1]
    candidates[same, :count] = np.take_along_axis(
        candidates[same, :count], order, axis=1)
    tious[same, :count] = np.take_along_axis(tious[same, :count], order,
                                             axis=1)

  # Matching is sequential within a video only, so the r-th prediction of
  # every video goes at once. `taken`'s last column stands for the padding.
  taken = np.zeros((len(thresholds), len(gt_videos) + 1), dtype=bool)
  rank = _rank_in_group(video_rows)
  for r in range(rank.max(initial=-1) + 1):
    step = np.flatnonzero(rank == r)
    step_candidates = candidates[step]  # (S, K)
    # `~(tiou < threshold)`, as the official test (NaN matches).
    free = ~taken[:, step_candidates] & ~(
        tious[step] < thresholds[:, None, None])  # (T, S, K)
    hit = free.any(axis=-1)
    first = free.argmax(axis=-1)
    hits[:, matchable[step]] = hit
    threshold_ids, step_ids = np.nonzero(hit)
    taken[threshold_ids,
          step_candidates[step_ids, first[threshold_ids, step_ids]]] = True
  return hits


def _average_precision(hits, num_gt):
  """Official VOC-2011 interpolated AP per threshold of sorted hits `(T, P)`."""
  if not num_gt:
    # The official recall is 0 / 0 = NaN, and so is the AP, unless there are
    # no predictions to sum over.
    return np.full(len(hits), np.nan if hits.shape[1] else 0.0)
  true_positives = np.cumsum(hits, axis=1).astype(np.float64)
  false_positives = np.cumsum(~hits, axis=1).astype(np.float64)
  zeros, ones = np.zeros((len(hits), 1)), np.ones((len(hits), 1))
  recall = np.hstack([zeros, true_positives / num_gt, ones])
  precision = np.hstack([
      zeros, true_positives / (true_positives + false_positives), zeros])
  precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
  average_precision = np.zeros(len(hits))
  for t, (p, r) in enumerate(zip(precision, recall)):
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    average_precision[t] = np.sum((r[steps] - r[steps - 1]) * p[steps])
  return average_precision
