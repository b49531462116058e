"""The clip classifier: a per-frame trunk, MANet's heads, averaged over time."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from maxmicro import labels

ModuleDef = Any


class VideoClassifier(nn.Module):
  """TSN-style clip model: frames through `backbone`, heads, mean over T.

  Heads (on the dropped-out pooled features of every frame): `fc_cls`, the
  action logits; `fc_emb` -> tanh -> `fc_emb_t`, the label-embedding branch;
  optionally `fc_body`, body-part logits for the hierarchical variant.
  """
  backbone: ModuleDef
  num_segments: int
  num_classes: int = labels.NUM_ACTIONS
  embedding_dim: int = 300
  dropout_rate: float = 0.5
  body_head: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False):
    """Scores clips.

    Args:
      video: `(N, T, H, W, 3)` float32 frames, already normalised.
      train: BatchNorm in training mode and dropout on.

    Returns:
      A dict of float32 arrays averaged over T: `action_logits (N, 52)`,
      `embedding (N, D)`, `features (N, C)` (pooled trunk output) and, with the
      body head, `body_logits (N, 7)`.
    """
    clips, frames_per_clip = video.shape[:2]
    if frames_per_clip != self.num_segments:
      raise ValueError(f'video has {frames_per_clip} frames per clip; the '
                       f'model expects num_segments={self.num_segments}.')
    frames = video.reshape((clips * frames_per_clip,) + video.shape[2:])
    features = self.backbone(name='backbone')(frames.astype(self.dtype),
                                              train=train)  # (N*T, C)
    dropped = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    dense = lambda width, name: nn.Dense(  # noqa: E731
        width, dtype=self.dtype, name=name,
        kernel_init=nn.initializers.normal(stddev=0.001))
    outputs = {
        'action_logits': dense(self.num_classes, 'fc_cls')(dropped),
        'embedding': dense(self.embedding_dim, 'fc_emb_t')(
            jnp.tanh(dense(self.embedding_dim, 'fc_emb')(dropped))),
        'features': features,
    }
    if self.body_head:
      outputs['body_logits'] = dense(labels.NUM_BODY_PARTS, 'fc_body')(dropped)
    # Average in float32: bfloat16 sums over T lose digits.
    return {key: value.astype(jnp.float32).reshape(
        clips, frames_per_clip, -1).mean(axis=1)
            for key, value in outputs.items()}
