"""Detection objectives: sigmoid focal loss and a 1D distance-IoU loss.

Both are summed over points and divided by the number of positive points of
the batch (at least 1), as ActionFormer, but without its moving average of
that number: a plain function of the batch is easier to test and to reason
about.
"""

import jax
import jax.numpy as jnp
import optax


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
  """Per-element focal loss (Lin et al. 2017), any shape to the same shape.

  `alpha_t * (1 - p_t)**gamma * BCE(logits, targets)`, with `p_t` the
  probability given to the target and `alpha_t` alpha on positives, 1 - alpha
  on negatives.
  """
  probabilities = jax.nn.sigmoid(logits)
  cross_entropy = optax.sigmoid_binary_cross_entropy(logits, targets)
  p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
  alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
  return alpha_t * (1 - p_t)**gamma * cross_entropy


def diou_loss_1d(predicted, target, eps=1e-8):
  """1 - DIoU of two intervals around one point, `(..., 2) -> (...)`.

  Both intervals are (distance to start, distance to end) from the same
  point, non-negative. Distance-IoU rather than generalised IoU: two
  intervals that contain the same point always overlap, so the smallest
  interval enclosing them is their union and GIoU's penalty is always zero;
  DIoU's penalty, the squared distance between the centres over the squared
  enclosing length, still pulls a prediction's centre onto the target's
  (ActionFormer uses it too). 0 for a perfect match, below 2.
  """
  predicted_start, predicted_end = predicted[..., 0], predicted[..., 1]
  target_start, target_end = target[..., 0], target[..., 1]
  intersection = (jnp.minimum(predicted_start, target_start) +
                  jnp.minimum(predicted_end, target_end))
  union = (predicted_start + predicted_end + target_start + target_end -
           intersection)
  enclosing = (jnp.maximum(predicted_start, target_start) +
               jnp.maximum(predicted_end, target_end))
  # Centres relative to the point are (end - start) / 2.
  centre_distance = ((predicted_end - predicted_start) -
                     (target_end - target_start)) / 2
  # Clamped denominators, not a `where` after dividing: a 0/0 in the branch
  # that `where` drops would still make the gradient NaN.
  iou = intersection / jnp.maximum(union, eps)
  return 1 - iou + jnp.square(centre_distance / jnp.maximum(enclosing, eps))


def detection_loss(outputs, targets, *, alpha=0.25, gamma=2.0,
                   regression_weight=1.0):
  """The detector's training loss of a batch and its parts.

  Args:
    outputs: the `TemporalDetector` dict: `cls_logits (N, P, C)`,
      `regression (N, P, 2)`, `mask (N, P)`.
    targets: `assign_targets` vmapped over the batch: `classes (N, P, C)`,
      `regression (N, P, 2)`, `positive (N, P)`.
    alpha, gamma: of the focal loss.
    regression_weight: of the regression term.

  Returns:
    `(loss, parts)`: the scalar loss and a dict of the scalars `cls_loss`
    (focal, over all unpadded points and classes) and `reg_loss` (1 - DIoU,
    over positive points), each divided by max(positive points, 1).
  """
  mask = outputs['mask']
  positive = targets['positive'] & mask
  normaliser = jnp.maximum(jnp.sum(positive), 1).astype(jnp.float32)
  focal = sigmoid_focal_loss(outputs['cls_logits'], targets['classes'],
                             alpha, gamma)
  cls_loss = jnp.sum(jnp.where(mask[..., None], focal, 0.0)) / normaliser
  diou = diou_loss_1d(outputs['regression'], targets['regression'])
  reg_loss = jnp.sum(jnp.where(positive, diou, 0.0)) / normaliser
  loss = cls_loss + regression_weight * reg_loss
  return loss, {'cls_loss': cls_loss, 'reg_loss': reg_loss}
