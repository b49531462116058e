"""What a task gives the trainer (`maxmicro.train`), with the defaults.

A task has `model`, `input_shape`, `batch_keys`, `best_metric`, and:
- `loss_fn()`: the loss for `jax.value_and_grad`, its static parts bound;
- `ensure_data(log)`: builds the demo's data if asked; checks what training
  reads is there;
- `num_train_examples()`, `train_iterator(per_process_batch_size)`;
- `make_evaluator(mesh, variables_shardings, workdir)`: compiled once, then
  called with the variables and the step;
- `extra_params()`, `learning_rate_multipliers()`, `pretrained_variables(log)`:
  below, where most tasks need nothing.
"""


class Task:
  """The defaults of the parts most tasks do not need."""

  def extra_params(self):
    """Trainable arrays beside the model's: `{name: array}`."""
    return {}

  def learning_rate_multipliers(self):
    """`{module: multiplier}` on top of the optimizer's groups
    (`optim.make_optimizer`)."""
    return {}

  def pretrained_variables(self, log):
    """`{collection: {module: tree}}` loaded into a fresh state; the
    trainer's `config.init_from` (ImageNet weights) is separate."""
    del log
    return {}
