"""Training-step parity with the official recipe in PyTorch.

The reference is `tests/torch_reference.py`'s MANet trained as mmaction2
trains it: TSMOptimizerConstructor's parameter groups with `fc_lr5=True`,
torch SGD (momentum 0.9, weight decay), `clip_grad_norm_` before the step,
loss CE + 50 x MSE to each sample's label vector, dropout off, BatchNorm in
training mode. maxmicro starts from the same weights (`convert`) and trains
on the same batches with `recognition.loss_fn` and `optim.make_optimizer`.

Float32 training is not exact, so maxmicro is judged as the float32
reference is: the float64 reference is the truth, and maxmicro's distance
to it (losses; all parameter updates together; each head's update) must be
within `RATIO` times the float32 reference's. Distances below
`FLOAT32_FLOOR` are float32 rounding and count as that floor. A scenario
with a tiny clip norm makes clipping and weight decay dominate the update;
the last test shows that the check fails with `fc_lr5` off or the weight
decay doubled.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from configs import manet
from maxmicro import convert
from maxmicro import models
from maxmicro import ops
from maxmicro import optim
from maxmicro.tasks import recognition
from tests import torch_reference
from tests.tiny_run import fast_compile  # pylint: disable=unused-import

pytestmark = pytest.mark.usefixtures('fast_compile')

NUM_STEPS = 3
BATCH_SIZE = 4
# The yardstick is float32 torch's own distance to the float64 truth: other
# float32 summation orders round otherwise, but not several times worse.
RATIO = 3.0
# No float32 run is asked to be nearer float64 than a few ulps: relative
# distances under 1e-6 (about 8 float32 ulps) count as 1e-6.
FLOAT32_FLOOR = 1e-6
HEADS = ('fc_cls', 'fc_emb', 'fc_emb_t')
DEFAULT = dict(grad_clip_norm=20.0, weight_decay=1e-4, fc_lr5=True)
TINY_CLIP = dict(DEFAULT, grad_clip_norm=1e-3)


def _config(grad_clip_norm, weight_decay, fc_lr5):
  """The tiny MANet with the official loss and optimizer, learning rate
  0.01, in float32."""
  config = manet.get_config('tiny')
  config.model.dtype = 'float32'
  config.model.embedding_dim = 32
  config.model.dropout_rate = 0.0
  config.loss.embedding = 'mse'
  config.loss.embedding_weight = 50.0
  config.optim.update(name='sgd', momentum=0.9, weight_decay=weight_decay,
                      grad_clip_norm=grad_clip_norm, fc_lr5=fc_lr5,
                      base_learning_rate=0.01, base_batch_size=BATCH_SIZE,
                      schedule='step', decay_epochs=(), warmup_epochs=0.0)
  return config


CONFIG = _config(**DEFAULT)  # The model, data and loss of every scenario.


def _batches():
  rng = np.random.default_rng(0)
  shape = (BATCH_SIZE, CONFIG.model.num_segments, CONFIG.data.image_size,
           CONFIG.data.image_size, 3)
  return [{'video': rng.integers(0, 256, shape, dtype=np.uint8),
           'label': rng.integers(0, 52, BATCH_SIZE).astype(np.int32)}
          for _ in range(NUM_STEPS)]


def _label_vectors():
  return np.random.default_rng(1).normal(
      size=(52, CONFIG.model.embedding_dim)).astype(np.float32)


def _reference():
  """The torch MANet of `CONFIG`, randomised (float32)."""
  model = CONFIG.model
  return torch_reference.randomize(torch_reference.MANetReference(
      stage_sizes=model.stage_sizes, width=model.width,
      num_segments=model.num_segments, num_classes=model.num_classes,
      embedding_dim=model.embedding_dim), seed=0)


def tsm_parameter_groups(model, learning_rate, weight_decay, fc_lr5=True):
  """mmaction2's `TSMOptimizerConstructor.add_params` (0.24): conv and
  Linear weights x1 with decay, biases x2 without, BatchNorm x1 without, and
  the last Linear layer in module order x5 (weight, decayed) and x10 (bias)
  with `fc_lr5`."""
  first_weight, first_bias, weights, biases, norms = [], [], [], [], []
  conv_count = 0
  for module in model.modules():
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
      conv_count += 1
      parameters = list(module.parameters())
      (first_weight if conv_count == 1 else weights).append(parameters[0])
      (first_bias if conv_count == 1 else biases).extend(parameters[1:])
    elif isinstance(module, torch.nn.Linear):
      parameters = list(module.parameters())
      weights.append(parameters[0])
      biases.extend(parameters[1:])
    elif isinstance(module, torch.nn.BatchNorm2d):
      norms.extend(module.parameters())
  last_weight, last_bias = weights.pop(), biases.pop()
  lr5_weight, lr10_bias = [], []
  (lr5_weight if fc_lr5 else weights).append(last_weight)
  (lr10_bias if fc_lr5 else biases).append(last_bias)
  return [
      dict(params=first_weight, lr=learning_rate, weight_decay=weight_decay),
      dict(params=first_bias, lr=2 * learning_rate, weight_decay=0.0),
      dict(params=weights, lr=learning_rate, weight_decay=weight_decay),
      dict(params=biases, lr=2 * learning_rate, weight_decay=0.0),
      dict(params=norms, lr=learning_rate, weight_decay=0.0),
      dict(params=lr5_weight, lr=5 * learning_rate,
           weight_decay=weight_decay),
      dict(params=lr10_bias, lr=10 * learning_rate, weight_decay=0.0)]


@functools.lru_cache(maxsize=None)
def _train_reference(dtype, grad_clip_norm):
  """`(losses, parameter updates as maxmicro variables)` of the torch run."""
  torch.manual_seed(0)
  model = _reference().to(dtype).train()
  before = {name: value.clone() for name, value in model.state_dict().items()}
  optimizer_config = CONFIG.optim
  optimizer = torch.optim.SGD(
      tsm_parameter_groups(model, optimizer_config.base_learning_rate,
                           optimizer_config.weight_decay),
      lr=optimizer_config.base_learning_rate, momentum=0.9)
  mean = torch.tensor(ops.IMAGENET_MEAN, dtype=dtype)
  std = torch.tensor(ops.IMAGENET_STD, dtype=dtype)
  vectors = torch.from_numpy(_label_vectors()).to(dtype)
  losses = []
  for batch in _batches():
    video = (torch.from_numpy(batch['video']).to(dtype) - mean) / std
    frames = video.reshape((-1,) + video.shape[2:]).permute(0, 3, 1, 2)
    labels = torch.from_numpy(batch['label']).long()
    logits, embedding = model(frames.contiguous())
    loss = (torch.nn.functional.cross_entropy(logits, labels) + 50.0 *
            torch.nn.functional.mse_loss(embedding, vectors[labels]))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    optimizer.step()
    losses.append(loss.item())
  updates = {name: (value - before[name]).double().numpy()
             for name, value in model.state_dict().items()
             if value.is_floating_point()}
  return (np.array(losses),
          convert.torch_to_variables(updates, CONFIG)['params'])


@functools.lru_cache(maxsize=None)
def _gradient_fn():
  """`recognition.loss_fn`'s value and gradient, compiled once for every
  scenario (only the optimizer differs between them)."""
  loss_fn = functools.partial(
      recognition.loss_fn, model=models.build_model(CONFIG),
      loss_config=CONFIG.loss, label_vectors=jnp.asarray(_label_vectors()))
  return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def _train_maxmicro(**optim_fields):
  """`(losses, parameter updates)` of maxmicro's step: `train.train_step`'s
  arithmetic (gradients, then `tx.update(..., step=)` and
  `optax.apply_updates`), with gradients and update jitted apart."""
  config = _config(**optim_fields)
  schedule = optim.make_schedule(config.optim, global_batch_size=BATCH_SIZE,
                                 steps_per_epoch=1, total_steps=NUM_STEPS)
  tx = optim.make_optimizer(config.optim, schedule)
  variables = convert.torch_to_variables(_reference().state_dict(), CONFIG)
  params = {'model': variables['params']}
  batch_stats, opt_state = variables['batch_stats'], tx.init(params)

  @jax.jit
  def update(grads, opt_state, params, step):
    updates, opt_state = tx.update(grads, opt_state, params, step=step)
    return optax.apply_updates(params, updates), opt_state

  losses = []
  for step, batch in enumerate(_batches()):
    (loss, (_, batch_stats)), grads = _gradient_fn()(
        params, batch_stats, jax.tree.map(jnp.asarray, batch),
        jax.random.key(0))
    params, opt_state = update(grads, opt_state, params, jnp.int32(step))
    losses.append(float(loss))
  updates = jax.tree.map(
      lambda after, before: (np.asarray(after, np.float64) -
                             np.asarray(before, np.float64)),
      jax.device_get(params['model']), variables['params'])
  return np.array(losses), updates


def _distances(losses, updates, truth):
  """Relative distances to the float64 truth: the worst step's loss, all
  parameter updates together (L2), and each head's update."""
  true_losses, true_updates = truth
  flat, true_flat = (flax.traverse_util.flatten_dict(updates),
                     flax.traverse_util.flatten_dict(true_updates))

  def relative(paths):
    error = sum(float(np.sum((flat[p] - true_flat[p])**2)) for p in paths)
    size = sum(float(np.sum(true_flat[p]**2)) for p in paths)
    return (error / size)**0.5

  distances = {
      'loss': float(np.max(np.abs(losses - true_losses) /
                           np.abs(true_losses))),
      'all updates': relative(list(true_flat))}
  for head in HEADS:
    distances[head] = relative([p for p in true_flat if p[0] == head])
  return distances


def _violations(scenario, **maxmicro_changes):
  """Distances where maxmicro is further than `RATIO` x the float32
  reference from the float64 one, and the table of all distances."""
  truth = _train_reference(torch.float64, scenario['grad_clip_norm'])
  float32 = _distances(*_train_reference(torch.float32,
                                         scenario['grad_clip_norm']), truth)
  ours = _distances(*_train_maxmicro(**dict(scenario, **maxmicro_changes)),
                    truth)
  table = '; '.join(f'{name} {ours[name]:.2g} (float32 torch '
                    f'{float32[name]:.2g})' for name in ours)
  return [name for name in ours
          if ours[name] > RATIO * max(float32[name], FLOAT32_FLOOR)], table


@pytest.mark.parametrize('scenario', [DEFAULT, TINY_CLIP],
                         ids=['clip_20', 'clip_0.001'])
def test_training_steps_match_the_official_recipe(scenario):
  violations, table = _violations(scenario)
  print(f'grad_clip_norm={scenario["grad_clip_norm"]}: {table}')
  assert not violations, table


def test_the_check_sees_fc_lr5_off_and_doubled_weight_decay():
  violations, table = _violations(DEFAULT, fc_lr5=False)
  assert {'all updates', 'fc_emb_t'} <= set(violations), table
  violations, table = _violations(TINY_CLIP, weight_decay=2e-4)
  assert 'all updates' in violations, table
