"""Tasks: what the trainer needs to know of a benchmark task.

The trainer (`maxmicro.train`) runs any task: it asks the task for its model,
its loss, its training data and its evaluator, and knows nothing else of it.
A task is picked by the dataset a config names (`config.data.dataset`);
detection trains on features extracted once, or end to end from frames when
`config.detection.end_to_end` is set.

What a task gives the trainer: `maxmicro.tasks.base`.
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
