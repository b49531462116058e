"""maxmicro.metrics.detection_map against the MAC challenge evaluator.

`_official` below transcribes, loop for loop, VUT-HFUT/MAC_2024_baseline
`MMAD/PointTAD/datasets/evaluate.py` (`wrapper_compute_average_precision`,
`compute_average_precision_detection`, `segment_iou`,
`interpolated_prec_rec`), with lists where it has pandas frames.
"""

import numpy as np
import pytest

from maxmicro import metrics

THRESHOLDS = np.arange(0.1, 1.0, 0.1)
KEYS = [f'mAP@{t:.1f}' for t in THRESHOLDS]


def _official_segment_iou(target_segment, candidate_segments):
  tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
  tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
  intersection = (tt2 - tt1).clip(0)
  union = ((candidate_segments[:, 1] - candidate_segments[:, 0]) +
           (target_segment[1] - target_segment[0]) - intersection)
  return intersection.astype(float) / (union + 1e-4)


def _official_interpolated_prec_rec(prec, rec):
  mprec = np.hstack([[0], prec, [0]])
  mrec = np.hstack([[0], rec, [1]])
  for i in range(len(mprec) - 1)[::-1]:
    mprec[i] = max(mprec[i], mprec[i + 1])
  idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
  return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def _official_class_ap(ground_truth, prediction, thresholds):
  npos = float(len(ground_truth))
  lock_gt = np.ones((len(thresholds), len(ground_truth))) * -1
  sort_idx = np.array([p[4] for p in prediction]).argsort()[::-1]
  prediction = [prediction[i] for i in sort_idx]
  tp = np.zeros((len(thresholds), len(prediction)))
  fp = np.zeros((len(thresholds), len(prediction)))
  by_video = {}  # groupby('video-id'): each group's rows keep input order.
  for index, row in enumerate(ground_truth):
    by_video.setdefault(row[0], []).append(index)
  for idx, this_pred in enumerate(prediction):
    if this_pred[0] not in by_video:
      fp[:, idx] = 1
      continue
    gt_index = by_video[this_pred[0]]
    tiou_arr = _official_segment_iou(
        np.array(this_pred[2:4]),
        np.array([ground_truth[j][2:4] for j in gt_index]))
    tiou_sorted_idx = tiou_arr.argsort()[::-1]
    for tidx, tiou_thr in enumerate(thresholds):
      for jdx in tiou_sorted_idx:
        if tiou_arr[jdx] < tiou_thr:
          fp[tidx, idx] = 1
          break
        if lock_gt[tidx, gt_index[jdx]] >= 0:
          continue
        tp[tidx, idx] = 1
        lock_gt[tidx, gt_index[jdx]] = idx
        break
      if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
        fp[tidx, idx] = 1
  ap = np.zeros(len(thresholds))
  for tidx in range(len(thresholds)):
    this_tp = np.cumsum(tp[tidx, :]).astype(np.float64)
    this_fp = np.cumsum(fp[tidx, :]).astype(np.float64)
    with np.errstate(invalid='ignore'):  # npos = 0: NaN, as officially.
      rec = this_tp / npos
    prec = this_tp / (this_tp + this_fp)
    ap[tidx] = _official_interpolated_prec_rec(prec, rec)
  return ap


def _official(ground_truth, predictions, num_classes):
  ap = np.zeros((len(THRESHOLDS), num_classes))
  for cidx in range(num_classes):
    ap[:, cidx] = _official_class_ap(
        [row for row in ground_truth if row[1] == cidx],
        [row for row in predictions if row[1] == cidx], THRESHOLDS)
  per_threshold = ap.mean(axis=1)
  return per_threshold.mean(), per_threshold


def _random_segment(rng, grid):
  start = 0.5 * rng.integers(0, grid)
  return start, start + 0.5 * rng.integers(1, grid)


def _random_case(rng, num_videos, num_classes, max_gt, max_predictions):
  """Times on a coarse grid and few score values: many ties and overlaps."""
  grid = int(rng.integers(2, 12))
  ground_truth, predictions = [], []
  for v in range(num_videos):
    for _ in range(rng.integers(0, max_gt + 1)):
      ground_truth.append((f'v{v}', int(rng.integers(num_classes)),
                           *_random_segment(rng, grid)))
    for _ in range(rng.integers(0, max_predictions + 1)):
      predictions.append((f'v{v}', int(rng.integers(num_classes)),
                          *_random_segment(rng, grid),
                          float(rng.integers(0, 6)) / 5))
  for _ in range(len(ground_truth) // 5):  # Duplicated ground truth.
    ground_truth.append(ground_truth[rng.integers(len(ground_truth))])
  # Predictions for a video without any ground truth.
  predictions += [('nogt', 0, 0.0, 1.0, 0.5), ('nogt', 0, 0.0, 1.0, 0.9)]
  return ground_truth, predictions


def _by_threshold(results):
  return np.array([results[key] for key in KEYS])


@pytest.mark.parametrize('seed', range(40))
def test_matches_official_transcription(seed):
  rng = np.random.default_rng(seed)
  num_classes = int(rng.integers(1, 5))
  ground_truth, predictions = _random_case(
      rng, num_videos=int(rng.integers(1, 10)), num_classes=num_classes,
      max_gt=int(rng.integers(1, 25)), max_predictions=int(rng.integers(1, 60)))
  expected_map, expected = _official(ground_truth, predictions, num_classes)
  results = metrics.detection_map(ground_truth, predictions,
                                  num_classes=num_classes)
  assert list(results) == ['mAP'] + KEYS
  assert all(type(value) is float for value in results.values())
  # Both float64, the same interpolated precisions summed in another order:
  # 1e-12 absolute on values in [0, 1].
  np.testing.assert_allclose(_by_threshold(results), expected, rtol=0,
                             atol=1e-12)
  np.testing.assert_allclose(results['mAP'], expected_map, rtol=0, atol=1e-12)


def test_numpy_rows_and_more_classes_than_labels():
  rng = np.random.default_rng(100)
  ground_truth, predictions = _random_case(rng, 8, 6, 6, 30)
  expected_map, _ = _official(ground_truth, predictions, 52)
  results = metrics.detection_map(np.array(ground_truth, dtype=object),
                                  np.array(predictions, dtype=object))
  # As above: float64 against float64.
  np.testing.assert_allclose(results['mAP'], expected_map, rtol=0, atol=1e-12)


def test_perfect_prediction():
  ground_truth = [('a', 0, 1.0, 3.0), ('b', 1, 0.0, 0.5)]
  predictions = [('a', 0, 1.0, 3.0, 0.9), ('b', 1, 0.0, 0.5, 0.1)]
  results = metrics.detection_map(ground_truth, predictions, num_classes=2)
  assert results == dict.fromkeys(['mAP'] + KEYS, 1.0)
  # Classes without ground truth or predictions score 0 and count: 2 of 52.
  results = metrics.detection_map(ground_truth, predictions)
  # Means of 1s and 0s in float64: 2 / 52 to an ulp or two (1e-15 bounds it).
  assert results['mAP'] == pytest.approx(2 / 52, abs=1e-15)


def test_class_without_ground_truth_but_predicted_is_nan():
  # The official recall tp / 0 is NaN, and it spreads to the mAP.
  results = metrics.detection_map([('a', 0, 1.0, 3.0)],
                                  [('a', 1, 1.0, 3.0, 0.9)], num_classes=2)
  assert np.isnan(results['mAP'])


def test_prediction_in_video_without_ground_truth_is_false_positive():
  ground_truth = [('a', 0, 0.0, 2.0)]
  predictions = [('b', 0, 0.0, 2.0, 0.9), ('a', 0, 0.0, 2.0, 0.8)]
  # Precision 0 then 1/2 at recall 1: AP 0.5, exact in float64.
  results = metrics.detection_map(ground_truth, predictions, num_classes=1)
  np.testing.assert_array_equal(_by_threshold(results), 0.5)


def test_duplicates():
  # A second copy of a found detection is a false positive after the hit.
  results = metrics.detection_map(
      [('a', 0, 0.0, 2.0)],
      [('a', 0, 0.0, 2.0, 0.9), ('a', 0, 0.0, 2.0, 0.8)], num_classes=1)
  assert results['mAP'] == 1.0
  # Duplicated ground truth needs a detection per copy.
  results = metrics.detection_map(
      [('a', 0, 0.0, 2.0), ('a', 0, 0.0, 2.0)], [('a', 0, 0.0, 2.0, 0.9)],
      num_classes=1)
  assert results['mAP'] == 0.5


@pytest.mark.parametrize('end,hits_at_half', [(5.0, False), (5.001, True)])
def test_tiou_epsilon_at_threshold(end, hits_at_half):
  # [0, 5] against [0, 10]: tIoU = 5 / (10 + 1e-4), just below 0.5.
  results = metrics.detection_map([('a', 0, 0.0, 10.0)],
                                  [('a', 0, 0.0, end, 1.0)], num_classes=1)
  assert results['mAP@0.4'] == 1.0
  assert results['mAP@0.5'] == float(hits_at_half)
  assert results['mAP@0.6'] == 0.0


def _later_first(value):
  """Whether numpy's `argsort()[::-1]` of two equal values puts row 1 first.

  numpy does not promise an order for equal keys (its SIMD sorts differ by
  CPU); without SIMD and with AVX2 it is the later row first.
  """
  return np.argsort(np.array([value, value]))[::-1][0] == 1


def test_equal_scores_go_in_argsort_order():
  good, bad = ('a', 0, 0.0, 2.0, 0.5), ('a', 0, 5.0, 6.0, 0.5)
  bad_first = _later_first(0.5)
  results = metrics.detection_map([('a', 0, 0.0, 2.0)], [good, bad],
                                  num_classes=1)
  assert results['mAP'] == (0.5 if bad_first else 1.0)
  results = metrics.detection_map([('a', 0, 0.0, 2.0)], [bad, good],
                                  num_classes=1)
  assert results['mAP'] == (1.0 if bad_first else 0.5)


def test_equal_tious_go_in_argsort_order():
  # The first prediction overlaps A and B by 1/3. If it takes B (the later),
  # the exact match of B that follows is a false positive at thresholds up to
  # 0.3; if it takes A, both hit. Above 0.3 only the second prediction hits.
  ground_truth = [('a', 0, 0.0, 2.0), ('a', 0, 2.0, 4.0)]
  predictions = [('a', 0, 1.0, 3.0, 0.9), ('a', 0, 2.0, 4.0, 0.8)]
  results = metrics.detection_map(ground_truth, predictions, num_classes=1)
  low = 0.5 if _later_first(1 / (3 + 1e-4)) else 1.0
  # Products of halves: exact in float64.
  np.testing.assert_array_equal(_by_threshold(results),
                                [low] * 3 + [0.25] * 6)


def test_empty_inputs():
  results = metrics.detection_map([], [], num_classes=3)
  assert results == dict.fromkeys(['mAP'] + KEYS, 0.0)
  results = metrics.detection_map([('a', 0, 0.0, 1.0)], [], num_classes=1)
  assert results['mAP'] == 0.0


def test_custom_thresholds():
  results = metrics.detection_map([('a', 0, 0.0, 10.0)],
                                  [('a', 0, 0.0, 5.001, 1.0)], num_classes=1,
                                  tiou_thresholds=[0.5, 0.7])
  assert results == {'mAP': 0.5, 'mAP@0.5': 1.0, 'mAP@0.7': 0.0}


def test_large_input_runs():
  # About the size of the validation split with 35 predictions per video.
  rng = np.random.default_rng(0)
  num_videos, num_gt, num_predictions = 1475, 4700, 50_000
  starts = rng.uniform(0, 10, size=num_gt)
  ground_truth = list(zip(
      [f'val{v:04d}' for v in rng.integers(num_videos, size=num_gt)],
      rng.integers(52, size=num_gt), starts,
      starts + rng.uniform(0.3, 5, size=num_gt)))
  starts = rng.uniform(0, 10, size=num_predictions)
  predictions = list(zip(
      [f'val{v:04d}' for v in rng.integers(num_videos, size=num_predictions)],
      rng.integers(52, size=num_predictions), starts,
      starts + rng.uniform(0.3, 5, size=num_predictions),
      rng.random(num_predictions)))
  results = metrics.detection_map(ground_truth, predictions)
  assert 0 < results['mAP'] < 1
