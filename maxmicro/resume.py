"""The state a run starts from: `initial_state` decides the resume order.

The trainer calls `initial_state` once, before its first step; the
checkpoint format itself (items, commit markers, `set_aside`) is
`maxmicro.checkpoint`'s. Resuming never deletes a checkpoint and never
silently restarts from scratch over ones that fail to restore
(`restore_latest`).
"""

import jax

from maxmicro import checkpoint
from maxmicro import train_state


def load_pretrained(state, pretrained, variables_shardings):
  """`state` with whole modules of its model replaced by `pretrained`
  (`{collection: {module: tree}}`), placed as the state's variables are.

  Raises:
    ValueError: a module's tree differs from the model's in structure or
      shapes.
  """
  variables = {collection: dict(modules)
               for collection, modules in state.variables.items()}
  for collection, modules in pretrained.items():
    for module, tree in modules.items():
      expected = variables[collection].get(module)
      if expected is None and not jax.tree.leaves(tree):
        continue  # An empty collection (a ViT has no BatchNorm).
      if (jax.tree.structure(tree) != jax.tree.structure(expected) or
          [leaf.shape for leaf in jax.tree.leaves(tree)] !=
          [leaf.shape for leaf in jax.tree.leaves(expected)]):
        raise ValueError(f'the pretrained {collection}/{module} do not fit '
                         'the model\'s (another architecture?).')
      variables[collection][module] = jax.device_put(
          jax.device_get(tree), variables_shardings[collection][module])
  return state.with_variables(variables)


def initial_state(trainer, manager, iterator, rng, log):
  """Resume order: this workdir's latest checkpoint (`restore_latest`), else
  a fresh initialisation with `config.init_from` backbone weights and the
  task's pretrained modules (`task.pretrained_variables`) loaded."""
  state, _ = restore_latest(
      manager, trainer.abstract_state, lambda: trainer.init_state(rng),
      iterator, log)
  if state is not None:
    return state
  state = trainer.init_state(rng)
  if trainer.config.init_from:
    from maxmicro import convert  # pylint: disable=g-import-not-at-top
    log(f'initialising the backbone from {trainer.config.init_from}')
    variables = convert.load_backbone_init(
        trainer.config.init_from, jax.device_get(state.variables),
        trainer.config)
    state = state.with_variables(jax.device_put(
        variables, train_state.state_to_items(trainer.state_shardings)[0]))
  pretrained = trainer.task.pretrained_variables(log)
  if pretrained:
    state = load_pretrained(
        state, pretrained,
        train_state.state_to_items(trainer.state_shardings)[0])
  return state


def restore_latest(manager, abstract_state, init_state, iterator, log):
  """The state to resume training from: the workdir's latest complete step.

  All of it, or only its variables (put into `init_state()`) if it has no
  optimizer state, as `checkpoint.save_variables` writes. A newer step that a kill cut
  short (no commit marker), or one that fails to restore while an older one
  restores, is renamed aside with a warning; if every step fails the first
  error is raised, so a config that no longer fits its checkpoints never
  silently restarts from scratch.

  Args:
    manager: the workdir's manager.
    abstract_state: the `TrainState` of `jax.ShapeDtypeStruct`s with
      shardings that restored arrays take.
    init_state: `() -> TrainState`, a freshly initialised state.
    iterator: the fresh train iterator, whose state is restored in place.
    log: prints a line.

  Returns:
    `(state, iterator restored)`; `(None, False)` without any checkpoint.
  """
  unreadable = []  # (step, error) of committed steps that failed.
  for step in checkpoint.steps_newest_first(manager):
    if not checkpoint.is_committed(manager, step):
      aside = checkpoint.set_aside(manager, step, 'incomplete')
      log(f'warning: checkpoint step {step} is incomplete (a save was cut '
          f'short); moved it to {aside} and looking at older steps')
      continue
    try:
      state, restored_iterator = _restore_step(
          manager, step, abstract_state, init_state, iterator, log)
    except Exception as error:  # pylint: disable=broad-exception-caught
      # Orbax and TensorStore raise many types for a damaged file.
      log(f'warning: checkpoint step {step} does not restore '
          f'({type(error).__name__}: {error}); trying older steps')
      unreadable.append((step, error))
      continue
    for bad_step, _ in unreadable:
      aside = checkpoint.set_aside(manager, bad_step, 'unreadable')
      log(f'warning: moved unreadable checkpoint step {bad_step} to {aside}')
    return state, restored_iterator
  if unreadable:
    step, error = unreadable[0]
    raise checkpoint.CheckpointError(
        f'no checkpoint in {manager.directory} restores into this config; '
        f'step {step} fails with {type(error).__name__}: {error}') from error
  return None, False


def _restore_step(manager, step, abstract_state, init_state, iterator, log):
  """The state (and iterator) of checkpoint `step`; see `restore_latest`."""
  abstract_variables, abstract_train = train_state.state_to_items(
      abstract_state)
  if checkpoint.has_item(manager, step, 'train'):
    restore_iterator = checkpoint.has_item(manager, step, 'iterator')
    restored = checkpoint.restore(
        manager, step, variables=abstract_variables, train=abstract_train,
        iterator=iterator if restore_iterator else None)
    log(f'resuming from step {step}')
    return (train_state.state_from_items(restored['variables'],
                                         restored['train']),
            restore_iterator)
  variables = checkpoint.restore(
      manager, step, variables=abstract_variables)['variables']
  log(f'starting from the variables of checkpoint step {step} '
      '(no optimizer state in it)')
  return init_state().with_variables(variables), False
