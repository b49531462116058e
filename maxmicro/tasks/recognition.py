"""Micro-action recognition on MA-52, as a task of the trainer.

The model is `models.build_model(config)` (TSN, TSM or MANet); the loss is
cross-entropy plus the label-embedding term (`maxmicro.losses`); a training
batch is uint8 clips and their action ids; evaluation scores the validation
split with the MA-52 metrics and writes a report; the best checkpoint is the
one with the highest action top-1.
"""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from maxmicro import batch_mixing
from maxmicro import evaluate
from maxmicro import labels as labels_lib
from maxmicro import losses
from maxmicro import metrics as metrics_lib
from maxmicro import models
from maxmicro import ops
from maxmicro import prepare
from maxmicro.data import pipeline
from maxmicro.tasks import base

# Per-evaluation reports: a metrics JSON with per-class F1, a confusion
# matrix and a per-class F1 chart.
EVAL_SUBDIR = 'eval'


def loss_fn(params, batch_stats, batch, rng, *, model, loss_config,
            label_vectors, mixing=(0.0, 0.0)):
  """The training loss of a batch, for `jax.value_and_grad`.

  Args:
    params: the trainable tree, `{'model': ..., ['label_vectors': (52, D)]}`.
    batch_stats: the model's BatchNorm statistics.
    batch: `video` uint8 `(B, T, S, S, 3)` and `label` int32 `(B,)`.
    rng: this step's dropout key.
    model, loss_config: bound with `functools.partial`.
    label_vectors: fixed `(52, D)` vectors, or None (learnable ones live in
      `params`, or the loss has no embedding term).
    mixing: `(mixup_alpha, cutmix_alpha)`; any non-zero mixes the batch
      (`batch_mixing`) and weighs the loss of both labels.

  Returns:
    `(loss, (parts, batch_stats))`: the scalar loss, its parts and the batch
    accuracy, and the updated statistics.
  """
  video = ops.normalise(batch['video'])
  labels = batch['label']
  if any(mixing):
    mix_rng, rng = jax.random.split(rng)
    video, partner, lam = batch_mixing.mix(video, mix_rng, *mixing)
  outputs, updates = model.apply(
      {'params': params['model'], 'batch_stats': batch_stats},
      video, train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
  vectors = params.get('label_vectors', label_vectors)
  loss, parts = losses.compute_loss(outputs, labels, vectors, loss_config)
  if any(mixing):
    partner_loss, partner_parts = losses.compute_loss(
        outputs, labels[partner], vectors, loss_config)
    loss = lam * loss + (1 - lam) * partner_loss
    parts = jax.tree.map(lambda a, b: lam * a + (1 - lam) * b, parts,
                         partner_parts)
  parts['accuracy'] = jnp.mean(
      jnp.argmax(outputs['action_logits'], -1) == labels)
  # A backbone without BatchNorm (a ViT) has no statistics to update.
  return loss, (parts, updates.get('batch_stats', batch_stats))


def write_eval_report(workdir, split, step, metrics, predictions):
  """Writes the metrics JSON and the two plots of one evaluation.

  Returns the paths written (none on processes other than 0).
  """
  if jax.process_index() != 0:
    return []
  from maxmicro import plots  # pylint: disable=g-import-not-at-top
  directory = os.path.join(workdir, EVAL_SUBDIR)
  os.makedirs(directory, exist_ok=True)
  stem = os.path.join(directory, f'{split}_step{step}')
  action_predictions = np.argmax(predictions.scores, axis=1)
  f1, present = metrics_lib.f1_per_class(
      predictions.labels, action_predictions, labels_lib.NUM_ACTIONS)
  report = {
      'split': split, 'step': int(step),
      'num_videos': int(len(predictions.labels)),
      **{key: float(metrics[key]) for key in metrics_lib.METRIC_NAMES},
      'per_class_f1': {
          f'{labels_lib.ACTION_CODES[i]} {labels_lib.ACTION_NAMES[i]}':
              (float(f1[i]) if present[i] else None)
          for i in range(labels_lib.NUM_ACTIONS)},
  }
  paths = [stem + '_metrics.json', stem + '_confusion.png',
           stem + '_f1.png']
  with open(paths[0], 'w') as file:
    json.dump(report, file, indent=1)
  matrix = metrics_lib.confusion_matrix(
      predictions.labels, action_predictions, labels_lib.NUM_ACTIONS)
  title = f'{split}, step {step}'
  plots.confusion_matrix(matrix, paths[1], title=title)
  plots.per_class_f1(f1, present, paths[2], title=title)
  return paths


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """What an evaluation gives the trainer to log."""
  split: str
  metrics: dict  # name -> fraction
  num_examples: int


class Evaluator:
  """Scores `config.data.eval_split` and writes its report; compiled once."""

  def __init__(self, config, model, mesh, variables_shardings, workdir):
    self.config = config
    self.mesh = mesh
    self.workdir = workdir
    self.score_fn = evaluate.make_score_fn(
        model, config.model.num_segments, mesh, variables_shardings)

  def __call__(self, variables, step):
    split = self.config.data.eval_split
    metrics, predictions = evaluate.evaluate(
        self.score_fn, variables,
        evaluate.eval_iterator(self.config, split), self.mesh)
    write_eval_report(self.workdir, split, step, metrics, predictions)
    return EvalResult(split, metrics, len(predictions.labels))


class Recognition(base.Task):
  """MA-52 recognition: model, loss, data and evaluation of a config."""
  best_metric = 'action_top1'
  batch_keys = ('video', 'label')

  def __init__(self, config):
    self.config = config
    self.model = models.build_model(config)
    self.input_shape = models.input_shape(config)
    self.label_vectors = None  # numpy (52, D)
    if config.loss.embedding != 'none':
      self.label_vectors = losses.load_label_vectors(
          config.loss.label_vectors, config.model.embedding_dim)
    self.learnable_vectors = (config.loss.learnable_label_vectors and
                              self.label_vectors is not None)

  def extra_params(self):
    """Trainable arrays beside the model's: learnable label vectors."""
    if self.learnable_vectors:
      return {'label_vectors': self.label_vectors}
    return {}

  def learning_rate_multipliers(self):
    """The backbone at `optim.backbone_lr_multiplier` of the heads' rate
    (VideoMAE fine-tuning recipes; 1 for MANet)."""
    multiplier = self.config.optim.get('backbone_lr_multiplier', 1.0)
    return {} if multiplier == 1.0 else {'backbone': multiplier}

  def loss_fn(self):
    """`loss_fn` with the model and the fixed label vectors bound."""
    fixed = (None if self.learnable_vectors or self.label_vectors is None
             else jnp.asarray(self.label_vectors))
    return functools.partial(
        loss_fn, model=self.model, loss_config=self.config.loss,
        label_vectors=fixed, mixing=(self.config.data.mixup_alpha,
                                     self.config.data.cutmix_alpha))

  def ensure_data(self, log):
    """Checks that the dataset is built; writes and builds the demo's."""
    prepare.ensure_dataset(self.config, log)

  def num_train_examples(self):
    return pipeline.num_examples(self.config.data,
                                 self.config.data.train_split)

  def train_iterator(self, per_process_batch_size):
    """This process' endless, checkpointable training batches."""
    return pipeline.make_train_iterator(
        self.config.data, num_segments=self.config.model.num_segments,
        per_process_batch_size=per_process_batch_size, seed=self.config.seed,
        process_index=jax.process_index(), process_count=jax.process_count())

  def make_evaluator(self, mesh, variables_shardings, workdir):
    return Evaluator(self.config, self.model, mesh, variables_shardings,
                     workdir)
