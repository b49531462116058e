"""The clip classifier: a per-frame trunk, MANet's heads, averaged over time."""

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from maxmicro import labels

ModuleDef = Any


class VideoClassifier(nn.Module):
  """A clip model: `backbone` features, then the heads, averaged over steps.

  A per-frame backbone (`per_frame`, the TSN family) sees `(N*T, H, W, C)`
  and gives one feature vector per frame; a clip backbone (a ViT) sees the
  clip `(N, T, H, W, C)` and gives one per clip. Heads, on the dropped-out
  features of every step: `fc_cls`, the action logits; with `embedding_head`,
  `fc_emb` -> tanh -> `fc_emb_t`, MANet's label-embedding branch; with
  `body_head`, `fc_body`, body-part logits for the hierarchical variant.
  """
  backbone: ModuleDef
  num_segments: int
  num_classes: int = labels.NUM_ACTIONS
  embedding_dim: int = 300
  dropout_rate: float = 0.5
  body_head: bool = False
  embedding_head: bool = True
  per_frame: bool = True
  head_init: Callable = nn.initializers.normal(stddev=0.001)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False):
    """Scores clips.

    Args:
      video: `(N, T, H, W, 3)` float32 frames, already normalised.
      train: BatchNorm in training mode and dropout on.

    Returns:
      A dict of float32 arrays averaged over the steps: `action_logits
      (N, 52)`, `features (N, C)` (pooled backbone output) and, with their
      heads, `embedding (N, D)` and `body_logits (N, 7)`.
    """
    clips, frames_per_clip = video.shape[:2]
    if frames_per_clip != self.num_segments:
      raise ValueError(f'video has {frames_per_clip} frames per clip; the '
                       f'model expects num_segments={self.num_segments}.')
    backbone = self.backbone(name='backbone')
    if self.per_frame:
      frames = video.reshape((clips * frames_per_clip,) + video.shape[2:])
      features = backbone(frames.astype(self.dtype), train=train)  # (N*T, C)
    else:
      features = backbone(video.astype(self.dtype), train=train)  # (N, C)
    dropped = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    dense = lambda width, name: nn.Dense(  # noqa: E731
        width, dtype=self.dtype, name=name, kernel_init=self.head_init)
    outputs = {
        'action_logits': dense(self.num_classes, 'fc_cls')(dropped),
        'features': features,
    }
    if self.embedding_head:
      outputs['embedding'] = dense(self.embedding_dim, 'fc_emb_t')(
          jnp.tanh(dense(self.embedding_dim, 'fc_emb')(dropped)))
    if self.body_head:
      outputs['body_logits'] = dense(labels.NUM_BODY_PARTS, 'fc_body')(dropped)
    # Average in float32: bfloat16 sums over T lose digits.
    return {key: value.astype(jnp.float32).reshape(
        clips, -1, value.shape[-1]).mean(axis=1)
            for key, value in outputs.items()}
