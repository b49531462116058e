r"""maxmicro's entry point: train, evaluate, predict or submit.

  python run.py --config=configs/demo.py --workdir=workdirs/demo
  python run.py --workdir=workdirs/demo --mode=eval
  python run.py --workdir=workdirs/demo --mode=predict --video=clip.mp4
  python run.py --workdir=workdirs/demo --mode=submit
  python run.py --config=configs/mmad_demo.py --workdir=W --mode=features

`train` needs `--config` (with `:arg` and `--config.x=y` overrides) and
resumes from the workdir's latest checkpoint. `eval`, `predict` and `submit`
use the config saved with the checkpoint unless `--config` is given; a
detection (MMA-52) checkpoint gets `maxmicro.detection_commands`' modes, and
`features` extracts a detection config's backbone features.

Exit codes: 0 done; 1 bad input or a failure, said in one paragraph on
stderr (`--verbose` adds the traceback); 42 (`preemption.EXIT_PREEMPTED`)
stopped by SIGTERM after saving a checkpoint: rerun to resume.
"""

import gc
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from maxmicro import checkpoint
from maxmicro import commands
from maxmicro import compile_cache
from maxmicro import config_checks
from maxmicro import preemption
from maxmicro import prepare
from maxmicro import sharding
from maxmicro.data import ma52_layout
from maxmicro.data import video

config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, metrics and reports.',
                    required=True)
flags.DEFINE_enum('mode', 'train',
                  ['train', 'eval', 'predict', 'submit', 'features'],
                  'What to do (features: detection only).')
flags.DEFINE_string('video', None, 'predict: a video file or a folder of them.')
flags.DEFINE_string('checkpoint', 'latest',
                    'eval/predict/submit: latest, best or a step number.')
flags.DEFINE_string('split', None, 'eval: a labelled split (default: '
                    'config.data.eval_split).')
flags.DEFINE_integer('top_k', 5, 'predict: actions (detection: detections) '
                     'to list per video.')
flags.DEFINE_string('output_json', None, 'predict: where to write the JSON '
                    '(default WORKDIR/predictions.json).')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() '
                  '(also on when JAX_COORDINATOR_ADDRESS is set).')
flags.DEFINE_bool('verbose', False, 'On errors, show the Python traceback.')
FLAGS = flags.FLAGS

# Bad input, missing files and divergence end as a one-paragraph message.
USER_ERRORS = (ValueError, OSError, FloatingPointError,
               checkpoint.CheckpointError, prepare.DatasetMissingError,
               video.VideoError, ma52_layout.Ma52LayoutError,
               sharding.CollectiveError)


def train():
  from maxmicro import metrics, train as train_lib  # pylint: disable=g-import-not-at-top
  if FLAGS.config is None:
    raise ValueError('--mode=train needs --config (e.g. configs/demo.py).')
  config_checks.check_config(FLAGS.config)
  results = train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  if results:
    print(metrics.format_table(results))


def evaluate():
  from maxmicro import metrics  # pylint: disable=g-import-not-at-top
  results, step, split = commands.evaluate_checkpoint(
      FLAGS.workdir, FLAGS.config, FLAGS.checkpoint, FLAGS.split)
  print(f'{split} metrics of checkpoint step {step} (percent):')
  print(metrics.format_table(results))


def predict():
  from maxmicro import predict as predict_lib  # pylint: disable=g-import-not-at-top
  if not FLAGS.video:
    raise ValueError('--mode=predict needs --video=PATH (a video file or a '
                     'folder of them).')
  paths = predict_lib.find_videos(FLAGS.video)
  predictor = predict_lib.from_checkpoint(
      *commands.open_checkpoint(FLAGS.workdir, FLAGS.checkpoint))
  results = {}
  for path in paths:
    results[path] = predictor(path, top_k=FLAGS.top_k)
    print(predict_lib.format_text(path, results[path]), flush=True)
  output = FLAGS.output_json or os.path.join(FLAGS.workdir, 'predictions.json')
  with open(output, 'w') as file:
    file.write(predict_lib.format_json(results))
  print(f'wrote {output}')


def submit():
  zip_path, count, step = commands.submit_checkpoint(
      FLAGS.workdir, FLAGS.config, FLAGS.checkpoint)
  print(f'wrote {zip_path} ({count} test videos, checkpoint step {step})')


MODES = {'train': train, 'eval': evaluate, 'predict': predict,
         'submit': submit}


def detects():
  """Whether the mode is detection's: `features`, or eval, predict or
  submit of an MMA-52 checkpoint (or `--config`)."""
  if FLAGS.mode in ('train', 'features'):
    return FLAGS.mode == 'features'
  return commands.dataset_of(FLAGS.workdir, FLAGS.checkpoint,
                             FLAGS.config) == 'mma52'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not FLAGS['verbosity'].present:
    # Orbax and TFDS log every file they write at INFO; progress is printed.
    logging.set_verbosity(logging.WARNING)
  # The imported modules live as long as the process: frozen, they are out
  # of the collector's way, and out of its final pass at exit, which would
  # otherwise walk every imported object (benchmarks/RESULTS.md).
  gc.freeze()
  try:
    if FLAGS.mode == 'predict':
      # A rerun loads the compiled forward instead of compiling it again.
      compile_cache.enable()
    sharding.maybe_initialize_distributed(FLAGS.distributed)
    if detects():
      from maxmicro import detection_commands  # pylint: disable=g-import-not-at-top
      detection_commands.MODES[FLAGS.mode](FLAGS)
    else:
      MODES[FLAGS.mode]()
  except preemption.Preempted as stop:
    print(stop, file=sys.stderr)
    sys.exit(preemption.EXIT_PREEMPTED)
  except Exception as error:  # pylint: disable=broad-exception-caught
    if FLAGS.verbose:
      raise
    # Anything else is a bug or an unforeseen failure: still one paragraph.
    what = ('' if isinstance(error, USER_ERRORS) else
            f'unexpected {type(error).__name__}: ')
    print(f'error ({FLAGS.mode}): {what}{error} (rerun with --verbose for '
          'the traceback)', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=config_checks.parse_flags)
