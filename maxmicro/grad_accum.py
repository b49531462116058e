"""Gradient accumulation: one optimizer step's gradients from micro-batches.

With `config.train.grad_accum_steps` k > 1 the train step runs its batch of
B examples as k micro-batches of B/k, one after another under
`jax.lax.scan`, so activations are held for B/k examples at a time: a batch
too large for the devices' memory in one pass still makes one update, and
the learning-rate schedule and step counter stay in optimizer steps.

The gradients, the loss and its parts are the means over the micro-batches.
They equal the whole batch's when the loss is a mean over examples
(recognition's cross-entropy and embedding losses); a loss normalised by a
count over the batch (detection's positive points) is normalised per
micro-batch instead. Mutable state (BatchNorm `batch_stats`) is carried from
one micro-batch to the next, as k steps of B/k would update it; BatchNorm
itself then normalises over B/k examples.
"""

import jax
import jax.numpy as jnp


def check_steps(grad_accum_steps, per_device_batch_size):
  """Raises ValueError unless `grad_accum_steps` divides the per-device batch.

  Every micro-batch takes the same number of rows on every device (see
  `split`), so it is the per-device batch, not only the global one, that
  must divide.
  """
  if grad_accum_steps < 1 or per_device_batch_size % grad_accum_steps:
    raise ValueError(
        f'config.train.grad_accum_steps={grad_accum_steps} must be a '
        'positive integer that divides the per-device batch '
        f'({per_device_batch_size} = config.train.global_batch_size / '
        'devices).')


def split(batch, grad_accum_steps):
  """`(B, ...)` arrays as `(k, B/k, ...)`: micro-batch i is rows i, i+k, ...

  Strided rather than contiguous because the batch is split over the devices
  along B: with B/n rows per device and k dividing B/n, every micro-batch
  takes B/(n k) rows from each device's own rows, so no rows move between
  devices and every device works on every micro-batch.
  """
  def one(array):
    if array.shape[0] % grad_accum_steps:
      raise ValueError(
          f'a batch of {array.shape[0]} does not split into '
          f'config.train.grad_accum_steps={grad_accum_steps} micro-batches.')
    rows = array.reshape(array.shape[0] // grad_accum_steps, grad_accum_steps,
                         *array.shape[1:])
    return jnp.swapaxes(rows, 0, 1)
  return jax.tree.map(one, batch)


def value_and_grad(loss_fn, grad_accum_steps):
  """`jax.value_and_grad(loss_fn, has_aux=True)` over k micro-batches.

  Args:
    loss_fn: `(params, batch_stats, batch, rng) -> (loss, (parts,
      batch_stats))`, the train step's.
    grad_accum_steps: k; 1 gives `jax.value_and_grad` itself (the same
      computation as without accumulation).

  Returns:
    A function of `(params, batch_stats, batch, rng)` returning `((loss,
    (parts, batch_stats)), grads)` like `jax.value_and_grad`'s: loss, parts
    and gradients averaged over the micro-batches, the statistics after the
    last one. Micro-batch i draws its randomness from
    `jax.random.split(rng, k)[i]`.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if grad_accum_steps == 1:
    return grad_fn

  def accumulated(params, batch_stats, batch, rng):
    def micro_step(carry, inputs):
      batch_stats, grad_sum = carry
      micro_batch, micro_rng = inputs
      (loss, (parts, batch_stats)), grads = grad_fn(
          params, batch_stats, micro_batch, micro_rng)
      grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
      return (batch_stats, grad_sum), (loss, parts)

    (batch_stats, grad_sum), (losses, parts) = jax.lax.scan(
        micro_step, (batch_stats, jax.tree.map(jnp.zeros_like, params)),
        (split(batch, grad_accum_steps),
         jax.random.split(rng, grad_accum_steps)))
    grads = jax.tree.map(lambda total: total / grad_accum_steps, grad_sum)
    parts = jax.tree.map(lambda values: jnp.mean(values, axis=0), parts)
    return (jnp.mean(losses), (parts, batch_stats)), grads
  return accumulated
