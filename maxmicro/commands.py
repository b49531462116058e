"""What `run.py`'s modes do, and what they tell the user.

Each mode checks its arguments and finds the checkpoint before it touches any
data; errors name the flag or file at fault and say what to do next.
"""

import dataclasses
import os

import jax

from maxmicro import checkpoint
from maxmicro import config_checks
from maxmicro import evaluate
from maxmicro import models
from maxmicro import prepare
from maxmicro import sharding
from maxmicro import submit
from maxmicro.data import pipeline
from maxmicro.tasks import recognition

_HOW_TO_GET_A_CHECKPOINT = (
    'train first (python run.py --config=configs/demo.py --workdir=WORKDIR) '
    'or convert official weights (python -m maxmicro.convert '
    '--torch_checkpoint=... --config=... --out=WORKDIR).')


def open_checkpoint(workdir, which='latest'):
  """`checkpoint.open_for_reading`, with what to do when there is none."""
  try:
    return checkpoint.open_for_reading(workdir, which)
  except checkpoint.NoCheckpointError as error:
    raise checkpoint.NoCheckpointError(
        f'{str(error).rstrip(".")}: {_HOW_TO_GET_A_CHECKPOINT}') from None
  except checkpoint.CheckpointError as error:
    raise checkpoint.CheckpointError(
        f'--checkpoint={which} --workdir={workdir}: {error}') from None


def dataset_of(workdir, which='latest', config=None):
  """The dataset (so the task) a mode works on: `config`'s, else the one
  saved with the checkpoint."""
  if config is not None:
    return config.data.dataset
  manager, _, saved = open_checkpoint(workdir, which)
  manager.close()
  return saved.data.dataset


def resolve_config(saved, override=None):
  """The config eval and submit use: `override` if given, else the saved one.

  Raises:
    ValueError: `override` builds a different model than the checkpoint
      holds; the message names the differing fields.
  """
  if override is None:
    return saved
  saved_model = checkpoint.config_to_json(saved)['model']
  new_model = checkpoint.config_to_json(override)['model']
  differing = sorted(key for key in set(saved_model) | set(new_model)
                     if saved_model.get(key) != new_model.get(key))
  if differing:
    raise ValueError(
        'the --config model differs from the checkpoint\'s in ' +
        ', '.join(f'model.{key} ({new_model.get(key)!r} vs saved '
                  f'{saved_model.get(key)!r})' for key in differing) +
        '; leave --config out to use the saved config.')
  return override


@dataclasses.dataclass
class Inference:
  """A checkpoint ready to score a split on the mesh."""
  config: object
  step: int
  mesh: object
  variables: object
  score_fn: object

  def iterator(self, split):
    return evaluate.eval_iterator(self.config, split)


def load_inference(workdir, config=None, which='latest', check=None):
  """Finds a checkpoint, then (only then) checks the data and loads it.

  Args:
    workdir: the run's workdir.
    config: a config to use instead of the saved one (its model section must
      match the checkpoint's), or None.
    which: 'latest', 'best' or a step number.
    check: called with the config before any data is touched (argument
      checks such as "this split has labels").

  Raises:
    checkpoint.CheckpointError, ValueError, prepare.DatasetMissingError.
  """
  manager, step, saved = open_checkpoint(workdir, which)
  try:
    config = resolve_config(saved, config)
    config_checks.check_config(config, training=False)
    if check is not None:
      check(config)
    prepare.ensure_dataset(config)
    mesh = sharding.make_mesh()
    variables = evaluate.restore_variables(manager, step, config,
                                           sharding.replicated(mesh))
  finally:
    manager.close()
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), variables)
  score_fn = evaluate.make_score_fn(models.build_model(config),
                                    config.model.num_segments, mesh, shardings)
  return Inference(config, step, mesh, variables, score_fn)


def evaluate_checkpoint(workdir, config=None, which='latest', split=None):
  """`--mode=eval`: the metrics of a checkpoint on a labelled split.

  Writes the evaluation report to `WORKDIR/eval/` and returns
  `(metrics, step, split)`. The test split is refused: its labels are
  placeholders.
  """
  def check(config):
    name = split or config.data.eval_split
    if not pipeline.has_ground_truth(name):
      raise ValueError(
          f'--split={name}: split {name!r} has no ground-truth labels (MA-52 '
          'test labels are placeholders), so it has no metrics. Evaluate on '
          'validation, or write its challenge submission with --mode=submit.')
  inference = load_inference(workdir, config, which, check)
  split = split or inference.config.data.eval_split
  metrics, predictions = evaluate.evaluate(
      inference.score_fn, inference.variables, inference.iterator(split),
      inference.mesh)
  recognition.write_eval_report(workdir, split, inference.step, metrics,
                                predictions)
  return metrics, inference.step, split


def submit_checkpoint(workdir, config=None, which='latest', split='test'):
  """`--mode=submit`: scores `split` and writes the submission into `workdir`.

  Returns `(zip_path, number_of_videos, step)`.
  """
  inference = load_inference(workdir, config, which)
  predictions = evaluate.predict_split(
      inference.score_fn, inference.variables, inference.iterator(split),
      inference.mesh)
  zip_path = os.path.join(os.path.abspath(workdir), submit.ZIP_NAME)
  if jax.process_index() == 0:
    zip_path = submit.write_submission(workdir, predictions.video_ids,
                                       predictions.scores)
  return zip_path, len(predictions.video_ids), inference.step
