r"""Training as it runs: grain decoding JPEGs on the host while the device steps.

  PYTHONPATH=. python benchmarks/end_to_end.py --root=/tmp/e2e   # on a GPU
  PYTHONPATH=. python benchmarks/end_to_end.py --root=/tmp/e2e --smoke

Writes a synthetic MA-52 (`synthetic.write_fake_ma52`), builds it as
`ma52/default` (JPEG frames at short side 256, what `tfds build` makes of
MA-52), then trains `configs/manet.py:paper` on it through
`train.train_and_evaluate`, the loop `run.py` runs: grain worker processes
sample, decode and augment the clips, the device steps. The trainer's own
progress lines give clips/s and the share of the time spent waiting for
data; their median (the first report, which compiles, left out) is printed
as JSON beside the settings. Compare with `benchmarks/train_step.py`'s
step-only figure of the same batch, measured in the same session.

The records are what training reads, and they have MA-52's frame size
whatever the sources' (short side 256; 256 x 307 for its 1080 x 1296
videos): the sources are written at 256 x 308 and with 16-24 frames (a clip
decodes 8), which makes them quicker to render; `--prepare_only` writes and
builds them, so that this can run on the host while a GPU is busy.

`--smoke` runs the same path with the demo's tiny model on small videos, to
check the script on a CPU in a minute or two.
"""

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import time

from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import demo  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import manet  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import prepare  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import train  # noqa: E402  pylint: disable=g-import-not-at-top

PROGRESS = re.compile(r'([\d.]+) clips/s \| data wait (\d+)%')


def make_config(args):
  """The training config of the run, from `args`."""
  if args.smoke:
    config = demo.get_config()
    size, frames = (80, 96), (20, 28)
  else:
    config = manet.get_config('paper')
    size, frames = (256, 308), (16, 24)
    label_vectors = os.path.join(args.root, 'label_vectors.npy')
    os.makedirs(args.root, exist_ok=True)
    np.save(label_vectors, np.random.default_rng(0).normal(
        size=(52, 300)).astype(np.float32))
    config.loss.label_vectors = label_vectors
    config.data.builder_config = 'default'
  config.init_from = None
  config.synthetic_data = dict(
      manual_dir=os.path.join(args.root, 'ma52'),
      videos_per_class=(args.videos_per_class, 1, 1), size=size,
      num_frames=frames, seed=0)
  config.data.data_dir = os.path.join(args.root, 'tensorflow_datasets')
  config.data.num_workers = args.workers
  config.train.global_batch_size = args.batch
  config.train.num_epochs = args.epochs
  config.train.log_every_steps = args.log_every_steps
  config.train.checkpoint_every_steps = 10**9  # Only the final save.
  config.train.eval_every_epochs = 10**6  # Only the final evaluation.
  config.eval.global_batch_size = args.batch
  config.lock()
  return config


class _Tee:
  """Writes to the console and keeps the lines."""

  def __init__(self, stream):
    self.stream, self.lines = stream, []

  def write(self, text):
    self.stream.write(text)
    self.lines.extend(text.splitlines())

  def flush(self):
    self.stream.flush()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', required=True,
                      help='Scratch folder: videos, records, workdir.')
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--workers', type=int,
                      default=max(1, (os.cpu_count() or 2) - 2),
                      help='grain worker processes.')
  parser.add_argument('--videos_per_class', type=int, default=3,
                      help='Training videos per class (x 52).')
  parser.add_argument('--epochs', type=int, default=12)
  parser.add_argument('--log_every_steps', type=int, default=4)
  parser.add_argument('--smoke', action='store_true')
  parser.add_argument('--prepare_only', action='store_true',
                      help='Write and build the records, then stop.')
  args = parser.parse_args()
  if args.smoke:
    args.batch, args.workers = min(args.batch, 16), min(args.workers, 1)
    args.videos_per_class, args.epochs = 1, 2
    args.log_every_steps = 1
  flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags.
  config = make_config(args)
  if args.prepare_only:
    prepare.ensure_dataset(config)
    return
  tee = _Tee(sys.stdout)
  started = time.perf_counter()
  with contextlib.redirect_stdout(tee):
    train.train_and_evaluate(config, os.path.join(args.root, 'workdir'))
  reports = [(float(rate), int(wait) / 100) for line in tee.lines
             for rate, wait in PROGRESS.findall(line)]
  if not reports:
    raise SystemExit('no progress line with a throughput: train longer '
                     '(--epochs) or log more often (--log_every_steps).')
  print(json.dumps({
      'model': 'demo' if args.smoke else 'manet-r50 (paper)',
      'batch': args.batch, 'grain_workers': args.workers,
      'host_cores': os.cpu_count(),
      'clips_per_sec_median': statistics.median(r for r, _ in reports),
      'data_wait_median': statistics.median(w for _, w in reports),
      'reports': reports,
      'wall_s_with_build_and_compile': round(time.perf_counter() - started),
  }))


if __name__ == '__main__':
  main()
