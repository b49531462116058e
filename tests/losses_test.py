"""Tests for maxmicro.losses."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from maxmicro import losses


def loss_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      label_smoothing=0.0, embedding='contrastive', embedding_weight=1.0,
      temperature=0.1, body_weight=0.0))
  config.update(overrides)
  return config


def test_cross_entropy_matches_log_softmax():
  logits = np.random.default_rng(0).normal(size=(4, 52)).astype(np.float32)
  labels = np.array([0, 5, 51, 7])
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  # Float32 log-softmax against numpy's float32 formula: a few ulps of log
  # terms near 4 (1e-5 relative).
  np.testing.assert_allclose(losses.cross_entropy(logits, labels),
                             -log_probs[np.arange(4), labels], rtol=1e-5)
  smoothed = losses.cross_entropy(logits, labels, label_smoothing=0.1)
  expected = -(0.9 * log_probs[np.arange(4), labels] +
               0.1 * log_probs.mean(-1))
  # As above, with one more float32 weighted sum.
  np.testing.assert_allclose(smoothed, expected, rtol=1e-5)


def test_mse_equals_torch_mse_loss_definition():
  rng = np.random.default_rng(1)
  embedding = rng.normal(size=(3, 300)).astype(np.float32)
  vectors = rng.normal(size=(52, 300)).astype(np.float32)
  labels = np.array([2, 2, 40])
  expected = np.mean((embedding - vectors[labels]) ** 2)  # MSELoss('mean').
  # A float32 mean of 900 squares, summed in another order: 1e-5 relative.
  np.testing.assert_allclose(
      jnp.mean(losses.mse_embedding_loss(embedding, vectors, labels)),
      expected, rtol=1e-5)


def test_contrastive_prefers_the_true_label_vector():
  rng = np.random.default_rng(2)
  vectors = rng.normal(size=(52, 16)).astype(np.float32)
  labels = np.array([3, 17])
  aligned = 5.0 * vectors[labels]  # Scale must not matter: cosine.
  misaligned = vectors[[4, 18]]
  good = losses.contrastive_embedding_loss(aligned, vectors, labels, 0.1)
  bad = losses.contrastive_embedding_loss(misaligned, vectors, labels, 0.1)
  assert np.all(good < bad)
  # By definition: CE over cosine similarities / temperature.
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  logits = unit(misaligned) @ unit(vectors).T / 0.1
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  # Cosines divided by a temperature of 0.1 scale their float32 rounding
  # (a few ulps of the norms) by 10 in the logits: 1e-4 relative.
  np.testing.assert_allclose(bad, -log_probs[np.arange(2), labels],
                             rtol=1e-4)


def test_compute_loss_weights_the_terms():
  rng = np.random.default_rng(3)
  outputs = {'action_logits': jnp.asarray(rng.normal(size=(2, 52))),
             'embedding': jnp.asarray(rng.normal(size=(2, 8))),
             'body_logits': jnp.asarray(rng.normal(size=(2, 7)))}
  vectors = rng.normal(size=(52, 8)).astype(np.float32)
  labels = jnp.array([1, 30])
  config = loss_config(embedding='mse', embedding_weight=50.0, body_weight=0.5)
  loss, parts = losses.compute_loss(outputs, labels, vectors, config)
  # Three float32 terms weighted and summed: a rounding each (1e-6).
  np.testing.assert_allclose(
      loss, parts['ce_loss'] + 50 * parts['embedding_loss'] +
      0.5 * parts['body_loss'], rtol=1e-6)
  loss, parts = losses.compute_loss(outputs, labels, None,
                                    loss_config(embedding='none'))
  assert set(parts) == {'ce_loss'} and loss == parts['ce_loss']


def test_load_label_vectors(tmp_path):
  path = tmp_path / '1214_new_mean_Vectors.npy'
  vectors = np.random.default_rng(4).normal(size=(52, 300)) * 4
  np.save(path, vectors)  # float64, as a user's file may be.
  loaded = losses.load_label_vectors(str(path), 300)
  assert loaded.dtype == np.float32 and loaded.shape == (52, 300)
  with pytest.raises(ValueError, match='embedding_dim=300'):
    losses.load_label_vectors(str(path), 384)
  with pytest.raises(ValueError, match='do not exist'):
    losses.load_label_vectors(str(tmp_path / 'missing.npy'), 300)
  np.save(tmp_path / 'wrong.npy', np.zeros((51, 300)))
  with pytest.raises(ValueError, match=r'\(51, 300\)'):
    losses.load_label_vectors(str(tmp_path / 'wrong.npy'), 300)
  (tmp_path / 'text.npy').write_text('not numpy')
  with pytest.raises(ValueError, match='not a readable'):
    losses.load_label_vectors(str(tmp_path / 'text.npy'), 300)


def test_default_label_vectors_fit_the_default_config():
  from configs import manet  # pylint: disable=g-import-not-at-top
  config = manet.get_config()
  vectors = losses.load_label_vectors(config.loss.label_vectors,
                                      config.model.embedding_dim)
  # Unit vectors stored in float32: norms of 300 squares are 1 to a few ulps.
  np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1, rtol=1e-5)
  assert len({row.tobytes() for row in vectors}) == 52


def test_contrastive_gradient_is_finite_at_a_zero_embedding():
  vectors = np.random.default_rng(5).normal(size=(52, 8)).astype(np.float32)
  grad = jax.grad(lambda e: jnp.sum(losses.contrastive_embedding_loss(
      e, vectors, jnp.array([0, 1]), 0.1)))(jnp.zeros((2, 8)))
  assert np.all(np.isfinite(grad))
