"""The MA-52 benchmark's metrics, in numpy.

Action top-1 and top-5 come from the ranking of the action scores; body labels
and predictions are `ACTION_TO_BODY` of the action label and of the action
argmax; F1 micro and macro follow scikit-learn's `f1_score` (macro averages
over the classes present in the labels or the predictions); `f1_mean` is the
mean of the four F1 scores. Every value is a fraction in [0, 1].
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
  """The metrics as an aligned two-column text table, in percent."""
  rows = [f'{name:<16} {100 * metrics[name]:6.2f}' for name in METRIC_NAMES
          if name in metrics]
  return '\n'.join(rows)
