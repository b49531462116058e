"""Tests for maxmicro.detection.postprocess on hand-worked examples."""

import numpy as np
import pytest

from maxmicro.detection import postprocess
from maxmicro.models import detector


def test_soft_nms_decays_duplicates_of_a_class_only():
  labels = np.array([0, 1, 0, 0, 0])
  segments = np.array([[20, 30], [0, 10], [0, 10], [0, 10], [5, 15]], float)
  scores = np.array([0.6, 0.7, 0.8, 0.9, 0.5])
  rows = postprocess.soft_nms(labels, segments, scores, sigma=0.5)
  # [0, 10] of class 0 at 0.9 decays its duplicate by exp(-1 / 0.5) and
  # [5, 15] (tIoU 1/3) by exp(-(1/9) / 0.5); [5, 15], when taken, decays the
  # duplicate once more. Class 1 and the disjoint [20, 30] keep theirs.
  shifted = 0.5 * np.exp(-2 / 9)
  duplicate = 0.8 * np.exp(-2) * np.exp(-2 / 9)
  expected = [(0, 0, 10, 0.9), (1, 0, 10, 0.7), (0, 20, 30, 0.6),
              (0, 5, 15, shifted), (0, 0, 10, duplicate)]
  assert [row[:3] for row in rows] == [row[:3] for row in expected]
  # Float64 soft-NMS against float64 products of the same decays: 1e-12.
  np.testing.assert_allclose([row[3] for row in rows],
                             [row[3] for row in expected], rtol=1e-12)
  assert all(isinstance(row[0], int) for row in rows)


def test_soft_nms_drops_low_scores_and_caps_the_count():
  labels = np.array([0, 0, 1])
  segments = np.array([[0, 10], [0, 10], [3, 4]], float)
  scores = np.array([0.9, 0.8, 0.7])
  rows = postprocess.soft_nms(labels, segments, scores, min_score=0.2)
  assert [row[3] for row in rows] == [0.9, 0.7]  # 0.8 * exp(-2) < 0.2.
  assert len(postprocess.soft_nms(labels, segments, scores,
                                  max_detections=1)) == 1
  assert postprocess.soft_nms(labels[:0], segments[:0], scores[:0]) == []


def reference_soft_nms(labels, segments, scores, sigma, min_score):
  """Class by class, every candidate, then sorted: the textbook loop."""
  rows = []
  for label in np.unique(labels):
    chosen = labels == label
    remaining = list(zip(segments[chosen].tolist(), scores[chosen].tolist()))
    while remaining:
      best = max(range(len(remaining)), key=lambda i: remaining[i][1])
      (start, end), score = remaining.pop(best)
      if score <= min_score:
        break
      rows.append((int(label), start, end, score))
      decayed = []
      for (other_start, other_end), other_score in remaining:
        intersection = max(0.0, min(end, other_end) - max(start, other_start))
        union = (end - start) + (other_end - other_start) - intersection
        iou = intersection / max(union, 1e-8)
        decayed.append(((other_start, other_end),
                        other_score * np.exp(-iou**2 / sigma)))
      remaining = decayed
  return sorted(rows, key=lambda row: -row[3])


def test_soft_nms_equals_class_by_class_soft_nms():
  rng = np.random.default_rng(0)
  starts = rng.uniform(0, 10, 300)
  segments = np.stack([starts, starts + rng.uniform(0.2, 3, 300)], axis=1)
  labels = rng.integers(0, 5, 300)
  scores = rng.uniform(0, 1, 300)
  expected = reference_soft_nms(labels, segments, scores, 0.5, 0.001)
  rows = postprocess.soft_nms(labels, segments, scores, max_detections=1000)
  assert len(rows) == len(expected)
  # Both in float64, the same decays multiplied in another order over up to
  # 300 rounds: 1e-9 relative.
  np.testing.assert_allclose(rows, expected, rtol=1e-9)
  np.testing.assert_allclose(
      postprocess.soft_nms(labels, segments, scores, max_detections=40),
      expected[:40], rtol=1e-9)


# 8 steps, 2 levels: points 0..7 (stride 1), then 0, 2, 4, 6 (stride 2).
POINTS = detector.point_grid(8, 2)


def window_outputs():
  scores = np.zeros((12, 2))
  regression = np.zeros((12, 2))
  scores[3, 1], regression[3] = 0.9, (1, 2)  # Steps [2, 5].
  scores[10, 0], regression[10] = 0.8, (1.5, 0.5)  # Centre 4: [1, 5].
  scores[0, 0], regression[0] = 0.5, (3, 1)  # Steps [-3, 1].
  return scores, regression


def test_candidates_in_seconds_clipped_to_the_video():
  scores, regression = window_outputs()
  labels, segments, kept_scores = postprocess.select_candidates(
      scores, regression, POINTS, seconds_per_step=0.5, offset=10.0,
      duration=12.0)
  order = np.argsort(-kept_scores)
  np.testing.assert_array_equal(labels[order], [1, 0, 0])
  # offset + step * 0.5, clipped to [0, 12] seconds.
  # Float64 sums of halves and offsets: exact (the default rtol is 1e-7).
  np.testing.assert_allclose(segments[order],
                             [[11, 12], [10.5, 12], [8.5, 10.5]])
  np.testing.assert_allclose(kept_scores[order], [0.9, 0.8, 0.5])
  _, segments, _ = postprocess.select_candidates(
      scores, regression, POINTS, seconds_per_step=0.5)
  np.testing.assert_allclose(segments[np.argmin(segments[:, 0])], [0, 0.5])


@pytest.mark.parametrize('kwargs,expected_scores', [
    (dict(top_k=2), [0.9, 0.8]),
    (dict(score_threshold=0.6), [0.9, 0.8]),
    (dict(mask=np.arange(12) != 3), [0.8, 0.5]),
    # Seconds: [1, 2.5], [0.5, 2.5], [0, 0.5]; 0.5 s or less is dropped.
    (dict(min_length=0.5), [0.9, 0.8]),
])
def test_candidate_filters(kwargs, expected_scores):
  scores, regression = window_outputs()
  _, _, kept_scores = postprocess.select_candidates(
      scores, regression, POINTS, seconds_per_step=0.5, **kwargs)
  # The input scores, selected: exact.
  np.testing.assert_allclose(np.sort(kept_scores)[::-1], expected_scores)


def test_decode_video_gives_rows_by_score():
  scores, regression = window_outputs()
  scores[3, 0] = 0.7  # A second class at the same point: not suppressed.
  rows = postprocess.decode_video(scores, regression, POINTS,
                                  seconds_per_step=0.5, duration=3.0)
  assert [row[0] for row in rows] == [1, 0, 0, 0]
  # Float64 halves and one exp: exact to the default 1e-7.
  np.testing.assert_allclose(rows[0], (1, 1.0, 2.5, 0.9))
  np.testing.assert_allclose(rows[1], (0, 0.5, 2.5, 0.8))
  np.testing.assert_allclose(rows[2], (0, 0.0, 0.5, 0.5))  # Disjoint.
  # Class 0 on [1, 2.5] s: tIoU 1.5 / 2 with [0.5, 2.5].
  np.testing.assert_allclose(rows[3], (0, 1.0, 2.5, 0.7 * np.exp(
      -0.75**2 / 0.5)))
