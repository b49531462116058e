"""maxmicro.metrics against scikit-learn (a test-only dependency)."""

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from maxmicro import labels
from maxmicro import metrics


def _sklearn_reference(scores, action_labels):
  predictions = scores.argmax(axis=1)
  body_labels = labels.ACTION_TO_BODY[action_labels]
  body_predictions = labels.ACTION_TO_BODY[predictions]
  f1 = lambda y, p, avg: sk_metrics.f1_score(y, p, average=avg)  # noqa: E731
  reference = {
      'action_top1': sk_metrics.accuracy_score(action_labels, predictions),
      'action_top5': sk_metrics.top_k_accuracy_score(
          action_labels, scores, k=5, labels=np.arange(52)),
      'body_top1': sk_metrics.accuracy_score(body_labels, body_predictions),
      'action_f1_micro': f1(action_labels, predictions, 'micro'),
      'action_f1_macro': f1(action_labels, predictions, 'macro'),
      'body_f1_micro': f1(body_labels, body_predictions, 'micro'),
      'body_f1_macro': f1(body_labels, body_predictions, 'macro'),
  }
  reference['f1_mean'] = np.mean([reference[k] for k in (
      'action_f1_micro', 'action_f1_macro', 'body_f1_micro',
      'body_f1_macro')])
  return reference


@pytest.mark.parametrize('num_videos,num_classes_used,seed', [
    (500, 52, 0),   # Every class present.
    (40, 52, 1),    # Many classes absent from labels, some predicted.
    (60, 6, 2),     # Labels from few classes: macro over labels|predictions.
])
def test_matches_sklearn(num_videos, num_classes_used, seed):
  rng = np.random.default_rng(seed)
  action_labels = rng.integers(num_classes_used, size=num_videos)
  scores = rng.normal(size=(num_videos, 52)).astype(np.float32)
  # Make about half the predictions right, so F1s are not all near zero.
  right = rng.random(num_videos) < 0.5
  scores[right, action_labels[right]] += 10
  got = metrics.ma52_metrics(scores, action_labels)
  assert list(got) == list(metrics.METRIC_NAMES)
  expected = _sklearn_reference(scores, action_labels)
  for name in metrics.METRIC_NAMES:
    # Float64 counts and ratios against sklearn's float64: 1e-12.
    assert got[name] == pytest.approx(expected[name], abs=1e-12), name
    assert 0.0 <= got[name] <= 1.0


def test_perfect_and_top5():
  action_labels = np.arange(52)
  scores = np.eye(52)
  got = metrics.ma52_metrics(scores, action_labels)
  assert all(value == 1.0 for value in got.values())
  # The true class ranked 5th: top-1 wrong, top-5 right.
  scores = np.tile(np.linspace(1, 0, 52), (52, 1))
  scores[:, 4] = scores[0, 4]
  got = metrics.ma52_metrics(scores, np.full(52, 4))
  assert got['action_top1'] == 0.0 and got['action_top5'] == 1.0


def test_top_k_breaks_ties_to_lower_id_like_argmax():
  scores = np.zeros((3, 52))
  scores[1, [7, 3]] = 1.0
  np.testing.assert_array_equal(metrics.top_k(scores, 2)[:, 0],
                                scores.argmax(axis=1))
  np.testing.assert_array_equal(metrics.top_k(scores, 2)[1], [3, 7])


def test_confusion_matrix_matches_sklearn():
  rng = np.random.default_rng(0)
  y, p = rng.integers(52, size=300), rng.integers(52, size=300)
  np.testing.assert_array_equal(
      metrics.confusion_matrix(y, p, 52),
      sk_metrics.confusion_matrix(y, p, labels=np.arange(52)))


@pytest.mark.parametrize('scores,action_labels,message', [
    (np.zeros((3, 51)), np.zeros(3, int), r'\(N, 52\)'),
    (np.zeros((3, 52)), np.zeros(2, int), 'labels have shape'),
    (np.zeros((0, 52)), np.zeros(0, int), 'at least one'),
])
def test_bad_shapes_raise(scores, action_labels, message):
  with pytest.raises(ValueError, match=message):
    metrics.ma52_metrics(scores, action_labels)
