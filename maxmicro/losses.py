"""Training objectives: action cross-entropy plus a label-embedding term.

The embedding term ties the clip embedding (`fc_emb_t` output) to a fixed or
learnable vector per action:
- `mse` (official MANet): mean squared error to the true class' vector,
  weighted 50 in the paper;
- `contrastive`: cosine similarity to all 52 vectors over a temperature, then
  cross-entropy to the true class, so the embedding is pulled towards its own
  label and pushed from the others.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from maxmicro import labels as labels_lib

DEFAULT_LABEL_VECTORS = os.path.join(os.path.dirname(__file__), 'assets',
                                     'label_vectors.npy')


def cross_entropy(logits, labels, label_smoothing=0.0):
  """Per-example softmax cross-entropy, `(N, K), (N,) -> (N,)`."""
  targets = optax.smooth_labels(
      jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def mse_embedding_loss(embedding, label_vectors, labels, temperature=None):
  """Mean squared error to the true class' vector, `(N, D) -> (N,)`.

  Averaged over D, so its batch mean equals torch's `MSELoss()`.
  """
  del temperature  # Contrastive only; one signature for both terms.
  return jnp.mean(jnp.square(embedding - label_vectors[labels]), axis=-1)


def contrastive_embedding_loss(embedding, label_vectors, labels, temperature):
  """Cross-entropy over cosine similarities to every label vector, `(N,)`."""
  # rsqrt of a clamped squared norm: `linalg.norm` has a NaN gradient at a
  # zero vector (a constant clip embeds to zero at init), this has none.
  normalise = lambda x: x * jax.lax.rsqrt(jnp.maximum(  # noqa: E731
      jnp.sum(jnp.square(x), axis=-1, keepdims=True), 1e-12))
  similarity = normalise(embedding) @ normalise(label_vectors).T  # (N, 52)
  return optax.softmax_cross_entropy_with_integer_labels(
      similarity / temperature, labels)


EMBEDDING_LOSSES = {
    'mse': mse_embedding_loss,
    'contrastive': contrastive_embedding_loss,
    'none': None,
}


def compute_loss(outputs, labels, label_vectors, loss_config):
  """The weighted training loss of a batch and its parts.

  Args:
    outputs: the model's output dict (`action_logits`, `embedding`, and
      `body_logits` with the body head).
    labels: `(N,)` int action ids.
    label_vectors: `(52, D)` float32, or None with `embedding='none'`.
    loss_config: `config.loss`.

  Returns:
    `(loss, parts)`: the scalar loss and a dict of its scalar terms.
  """
  parts = {'ce_loss': jnp.mean(cross_entropy(
      outputs['action_logits'], labels, loss_config.label_smoothing))}
  loss = parts['ce_loss']
  embedding_loss = EMBEDDING_LOSSES[loss_config.embedding]
  if embedding_loss is not None:
    parts['embedding_loss'] = jnp.mean(embedding_loss(
        outputs['embedding'], label_vectors, labels, loss_config.temperature))
    loss += loss_config.embedding_weight * parts['embedding_loss']
  if 'body_logits' in outputs and loss_config.body_weight:
    body_labels = jnp.asarray(labels_lib.ACTION_TO_BODY)[labels]
    parts['body_loss'] = jnp.mean(
        cross_entropy(outputs['body_logits'], body_labels))
    loss += loss_config.body_weight * parts['body_loss']
  return loss, parts


def load_label_vectors(path, embedding_dim, num_classes=labels_lib.NUM_ACTIONS):
  """Loads and checks a `(num_classes, D)` label-vector `.npy` as float32.

  Args:
    path: a `.npy` file (the official `1214_new_mean_Vectors.npy` loads as
      is), or None for the project's default vectors.
    embedding_dim: D, `config.model.embedding_dim`.
    num_classes: rows expected.

  Raises:
    ValueError: the file is missing, unreadable or of the wrong shape; the
      message names the file and the config fields to change.
  """
  if path is None:
    path = DEFAULT_LABEL_VECTORS
  if not os.path.isfile(path):
    raise ValueError(f'label vectors {path!r} (config.loss.label_vectors) do '
                     'not exist; give a (52, D) .npy file.')
  try:
    vectors = np.load(path, allow_pickle=False)
  except (ValueError, OSError) as error:
    raise ValueError(f'label vectors {path!r} are not a readable .npy file: '
                     f'{error}') from error
  expected = (num_classes, embedding_dim)
  if vectors.shape != expected:
    hint = ''
    if vectors.ndim == 2 and vectors.shape[0] == num_classes:
      hint = (f' Set --config.model.embedding_dim={vectors.shape[1]} to use '
              'them, or give vectors of the configured width.')
    raise ValueError(f'label vectors {path!r} have shape {vectors.shape}, '
                     f'expected {expected} (52 actions x '
                     f'config.model.embedding_dim).{hint}')
  if not np.all(np.isfinite(vectors)):
    raise ValueError(f'label vectors {path!r} contain NaN or Inf.')
  return vectors.astype(np.float32)
