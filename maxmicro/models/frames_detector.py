"""Frames to detections: a recognition trunk per step, then the detector.

The end-to-end form of MMA-52 detection (`maxmicro.tasks.
detection_end_to_end`): the per-frame trunk of a recognition model (MANet,
TSM or TSN; `VideoClassifier`'s `backbone`) computes every step's feature as
feature extraction does (clips of the trunk's T consecutive steps, the
temporal shift inside a clip, the pooled output of each frame), and the
`TemporalDetector` scores the window; both train together.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

ModuleDef = Any


class FramesDetector(nn.Module):
  """The trunk on every step frame, then the detector on the window.

  Layers: `backbone` (the trunk; a recognition checkpoint's `backbone`
  subtree loads into it as is) and `detector` (a `TemporalDetector`).

  The trunk's BatchNorm always uses its running statistics, in training
  too (frozen statistics; scale and bias still train): a batch is a few
  windows of consecutive frames of a few videos, whose statistics are far
  from those of the recognition data the trunk was trained on, and batch
  statistics would make a window's features depend on the other windows of
  its batch. So training computes the features that evaluation and feature
  extraction compute.
  """
  backbone: ModuleDef  # The trunk: an instance of `trunk.module`.
  detector: ModuleDef  # A TemporalDetector instance.
  clip_steps: int  # T, the trunk's `num_segments`.
  window_size: int  # L, the steps the detector sees.
  trunk: Any  # `models.Trunk`: how the backbone sees clips.

  @nn.compact
  def __call__(self, frames, mask=None, train=False):
    """Scores windows of frames.

    Args:
      frames: `(N, F, S, S, 3)` float32 normalised step frames, F a multiple
        of `clip_steps` and at least `window_size`; clips of T consecutive
        steps from the window's start.
      mask: `(N, L)` bool, False at steps past the video's end; None: all
        valid.
      train: unused: no dropout, and the trunk's statistics stay frozen.

    Returns:
      The detector's outputs over its points (`TemporalDetector`).
    """
    del train
    batch, steps = frames.shape[:2]
    if steps % self.clip_steps or steps < self.window_size:
      raise ValueError(
          f'{steps} frames per window: need whole clips of '
          f'{self.clip_steps} steps covering the {self.window_size} steps of '
          'a window.')
    clips = frames.reshape((-1, self.clip_steps) + frames.shape[2:])
    features = self.trunk.frame_features(self.backbone, clips, train=False)
    features = features.astype(jnp.float32).reshape(batch, steps, -1)
    return self.detector(features[:, :self.window_size], mask)
