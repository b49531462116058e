"""Label assignment: which points of the pyramid learn which instances.

Pure jnp with fixed shapes (instances padded to K with a `valid` mask), so it
runs inside the jitted step; vmap it over the windows of a batch:
`jax.vmap(functools.partial(assign_targets, points, num_classes=52))(
segments, labels, valid)`.
"""

import jax
import jax.numpy as jnp


def assign_targets(points, segments, labels, valid, *, num_classes,
                   center_sample_radius=1.5):
  """Class, regression and positive targets of every point for one window.

  A point is positive for an instance when it lies strictly inside both the
  instance and `center_sample_radius * stride` of the instance's centre
  (ActionFormer's centre sampling), and the instance's length is in the
  point's level range. Unlike ActionFormer, which labels a point with the
  shortest instance's class only, the point learns the classes of all the
  instances it is positive for: MMA-52's instances overlap heavily, and a
  step where two actions happen should score high for both. It regresses the
  shortest of them (ActionFormer's rule); the level ranges keep the others
  within about a factor of two of its length.

  Args:
    points: `maxmicro.models.detector.Points` (centres, strides, ranges).
    segments: `(K, 2)` float start and end of each instance, in input steps
      of the window (clipped to it by the caller).
    labels: `(K,)` int class of each instance.
    valid: `(K,)` bool, False on padding rows.
    num_classes: C.
    center_sample_radius: in strides; None samples the whole instance.

  Returns:
    A dict: `classes (P, C)` float32 multi-hot; `regression (P, 2)` float32
    distances to the start and end of the chosen instance, in strides (zero
    at negatives); `positive (P,)` bool.
  """
  centres = jnp.asarray(points.centres, jnp.float32)[:, None]  # (P, 1)
  strides = jnp.asarray(points.strides, jnp.float32)[:, None]
  ranges = jnp.asarray(points.ranges, jnp.float32)
  starts = segments[:, 0].astype(jnp.float32)  # (K,)
  ends = segments[:, 1].astype(jnp.float32)
  lengths = ends - starts
  radius = strides * (jnp.inf if center_sample_radius is None
                      else center_sample_radius)
  middles = (starts + ends) / 2
  # Distances to the ends of (instance ∩ centre region); both positive means
  # strictly inside it, as ActionFormer.
  to_start = centres - jnp.maximum(starts, middles - radius)  # (P, K)
  to_end = jnp.minimum(ends, middles + radius) - centres
  inside = jnp.minimum(to_start, to_end) > 0
  fits = (lengths >= ranges[:, :1]) & (lengths < ranges[:, 1:])
  matched = inside & fits & valid[None, :]  # (P, K)

  positive = jnp.any(matched, axis=1)
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)  # (K, C)
  # Two instances of one class over a point still make a target of 1.
  classes = jnp.minimum(matched.astype(jnp.float32) @ one_hot, 1.0)
  shortest = jnp.argmin(jnp.where(matched, lengths, jnp.inf), axis=1)  # (P,)
  distances = jnp.stack([centres - starts, ends - centres], axis=-1)
  chosen = jnp.take_along_axis(distances, shortest[:, None, None], axis=1)
  regression = jnp.where(positive[:, None], chosen[:, 0] / strides, 0.0)
  return {'classes': classes, 'regression': regression, 'positive': positive}
