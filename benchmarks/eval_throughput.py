r"""`--mode=eval` throughput: the input pipeline overlapped with the device, or not.

  PYTHONPATH=. python benchmarks/eval_throughput.py --workdir=workdirs/demo

Scores the checkpoint's evaluation split with `evaluate.predict_split` as
`run.py --mode=eval` does (`commands.load_inference`), in two ways that take
turns, `--rounds` times each, after one untimed pass that compiles:
`overlapped` (batch i+1 is read while the device scores batch i; eval's way
on accelerators) and `serial` (each batch's scores waited for before the
next batch is read; eval's way on a CPU). Prints videos/s of each (median over rounds)
and their ratio as JSON.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from maxmicro import commands  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import evaluate  # noqa: E402  pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--split', default=None)
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  inference = commands.load_inference(args.workdir)
  split = args.split or inference.config.data.eval_split

  ways = {'overlapped': True, 'serial': False}
  count = None
  seconds = {name: [] for name in ways}
  order = list(ways)
  for round_index in range(args.rounds + 1):
    for name in order:
      started = time.perf_counter()
      predictions = evaluate.predict_split(
          inference.score_fn, inference.variables, inference.iterator(split),
          inference.mesh, overlap=ways[name])
      if round_index:  # The first round compiles.
        seconds[name].append(time.perf_counter() - started)
      count = len(predictions.video_ids)
    order.reverse()
  rates = {name: count / statistics.median(times)
           for name, times in seconds.items()}
  print(json.dumps({
      'workdir': args.workdir, 'split': split, 'videos': count,
      'batch': inference.config.eval.global_batch_size,
      'grain_workers': inference.config.data.num_workers,
      'videos_per_s': {name: round(rate, 1) for name, rate in rates.items()},
      'overlapped_over_serial': round(rates['overlapped'] / rates['serial'],
                                      3),
      'seconds': seconds}))


if __name__ == '__main__':
  main()
