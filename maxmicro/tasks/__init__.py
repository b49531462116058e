"""Tasks: what the trainer needs to know of a benchmark task.

The trainer (`maxmicro.train`) runs any task: it asks the task for its model,
its loss, its training data and its evaluator, and knows nothing else of it.
A task is picked by the dataset a config names (`config.data.dataset`).
"""

from maxmicro.tasks import detection
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
  """
  return TASKS[config.data.dataset](config)
