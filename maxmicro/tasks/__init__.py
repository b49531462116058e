"""Tasks: what the trainer needs to know of a benchmark task.

The trainer (`maxmicro.train`) runs any task: it asks the task for its model,
its loss, its training data and its evaluator, and knows nothing else of it.
A task is picked by the dataset a config names (`config.data.dataset`);
detection trains on features extracted once, or end to end from frames when
`config.detection.end_to_end` is set.

What a task gives the trainer: `model`, `input_shape`, `batch_keys`,
`best_metric`, `loss_fn()`, `extra_params()` (trainable arrays beside the
model's), `learning_rate_multipliers()` (`{module: multiplier}`, see
`optim.make_optimizer`), `pretrained_variables(log)` (`{collection: {module:
tree}}` loaded into a fresh state), `ensure_data(log)`,
`num_train_examples()`, `train_iterator(per_process_batch_size)` and
`make_evaluator(mesh, variables_shardings, workdir)`.
"""

from maxmicro.tasks import detection
from maxmicro.tasks import detection_end_to_end
from maxmicro.tasks import recognition

# config.data.dataset -> the task that trains on it.
TASKS = {
    'ma52': recognition.Recognition,
    'mma52': detection.Detection,
}


def get_task(config):
  """The task of `config`, built: its model, and its files loaded and checked.

  Raises:
    ValueError: a file the task loads (label vectors) is missing or bad.
    checkpoint.CheckpointError: end to end, the backbone workdir has no
      checkpoint.
  """
  if detection_end_to_end.is_end_to_end(config):
    return detection_end_to_end.DetectionEndToEnd(config)
  return TASKS[config.data.dataset](config)
