r"""Wall time and peak memory of `run.py --mode=predict` on one video, by stage.

  PYTHONPATH=. python benchmarks/predict.py --workdir=W --video=clip.mp4

Runs the command as a user would, each time in a fresh process, against a
fresh persistent compilation cache (so the first run is cold, the next warm):
`--runs` times plain (wall time from the command to its exit, peak resident
memory), then `--runs` times with every stage timed in the process (the same
`run.main`, with timers wrapped around the library calls it makes):

  start-up: interpreter start and `run.py`'s imports;
  checkpoint: finding the checkpoint and reading its config;
  restore: restoring the variables, folding BatchNorm, building the scorer;
  decode: opening the video and decoding (`video.read_sampled_frames`);
  preprocess: resizing and cropping the sampled frames;
  export: tracing the forward, or reading it back (`Predictor._scorer`);
  compile: lowering and compiling it, or loading it from JAX's cache;
  forward: running it;
  top-5 printed: when the top-5 reached stdout; exit: the process gone.

Also times the floor: `python -c pass`, `import jax`, and `import run`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spawn(arguments, environment, cwd=REPO):
  """(wall seconds, peak resident MiB, stdout) of one child process."""
  started = time.perf_counter()
  process = subprocess.Popen(arguments, cwd=cwd, env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  # wait4 gives this child's own peak memory (getrusage would give the
  # maximum over all children so far).
  stdout = process.stdout.read()
  stderr = process.stderr.read()
  _, status, usage = os.wait4(process.pid, 0)
  process.returncode = os.waitstatus_to_exitcode(status)
  seconds = time.perf_counter() - started
  if process.returncode:
    raise RuntimeError(f'{arguments} failed:\n{stderr[-3000:]}')
  return seconds, usage.ru_maxrss / 1024, stdout


def child(args):
  """The predict command with its stages timed; prints them as JSON."""
  started = time.time()
  marks = {'interpreter': started - args.spawned_at}
  sys.path.insert(0, REPO)
  import run  # pylint: disable=g-import-not-at-top
  from unittest import mock  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from maxmicro import commands  # pylint: disable=g-import-not-at-top
  from maxmicro import predict  # pylint: disable=g-import-not-at-top
  from maxmicro.data import transforms  # pylint: disable=g-import-not-at-top
  from maxmicro.data import video  # pylint: disable=g-import-not-at-top
  marks['imports'] = time.time() - started
  timings = {}

  peaks = {'imports': _peak_mib()}

  def timed(name, function):
    def wrapper(*positional, **keywords):
      begun = time.perf_counter()
      result = function(*positional, **keywords)
      timings[name] = timings.get(name, 0.0) + time.perf_counter() - begun
      peaks[name] = _peak_mib()
      return result
    return wrapper

  original_scorer = predict.Predictor._scorer

  def scorer(self, clip):
    begun = time.perf_counter()
    jitted = original_scorer(self, clip)
    timings['export'] = time.perf_counter() - begun

    def score(*arguments):
      begun = time.perf_counter()
      compiled = jitted.lower(*arguments).compile()
      timings['compile'] = time.perf_counter() - begun
      peaks['compile'] = _peak_mib()
      begun = time.perf_counter()
      result = jax.block_until_ready(compiled(*arguments))
      timings['forward'] = time.perf_counter() - begun
      peaks['forward'] = _peak_mib()
      return result
    return score

  original_format_text = predict.format_text

  def format_text(*positional):
    text = original_format_text(*positional)
    timings['top-5 printed'] = time.time() - started + marks['interpreter']
    return text

  with mock.patch.object(commands, 'open_checkpoint',
                         timed('checkpoint', commands.open_checkpoint)), \
      mock.patch.object(predict, 'from_checkpoint',
                        timed('restore', predict.from_checkpoint)), \
      mock.patch.object(predict.Predictor, '_scorer', scorer), \
      mock.patch.object(video, 'read_sampled_frames',
                        timed('decode', video.read_sampled_frames)), \
      mock.patch.object(transforms, 'eval_clip',
                        timed('preprocess', transforms.eval_clip)), \
      mock.patch.object(predict, 'format_text', format_text):
    flags.FLAGS(['run.py', f'--workdir={args.workdir}', '--mode=predict',
                 f'--video={args.video}',
                 f'--output_json={args.output_json}'])
    run.main(['run.py'])
  print(json.dumps({'start-up': marks['interpreter'] + marks['imports'],
                    **timings, 'peak_mib_after': peaks}))


def _peak_mib():
  """This process' peak resident memory so far (Linux), MiB."""
  with open('/proc/self/status') as status:
    for line in status:
      if line.startswith('VmHWM:'):
        return round(int(line.split()[1]) / 1024)
  return None


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--video', required=True)
  parser.add_argument('--runs', type=int, default=3)
  parser.add_argument('--compare_with', default=None,
                      help='Another checkout (e.g. the last commit, from '
                      '`git archive`): its plain runs alternate with this '
                      "one's, after this one's cold run.")
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--spawned_at', type=float, help=argparse.SUPPRESS)
  parser.add_argument('--output_json', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    return child(args)
  python = sys.executable
  with tempfile.TemporaryDirectory() as scratch:
    environment = dict(os.environ, PYTHONPATH=REPO,
                       XDG_CACHE_HOME=os.path.join(scratch, 'cache'))
    environment.pop('JAX_COMPILATION_CACHE_DIR', None)
    output_json = os.path.join(scratch, 'predictions.json')
    for name, code in (('python -c pass', 'pass'),
                       ('import jax', 'import jax'),
                       ('import run', 'import run')):
      seconds, peak, _ = _spawn([python, '-c', code], environment)
      print(json.dumps({'floor': name, 'wall_s': round(seconds, 2),
                        'peak_mib': round(peak)}), flush=True)
    command = [python, 'run.py', f'--workdir={args.workdir}',
               '--mode=predict', f'--video={args.video}',
               f'--output_json={output_json}']
    other = None
    if args.compare_with:
      other = os.path.abspath(args.compare_with)
      other_environment = dict(environment, PYTHONPATH=other)
    for index in range(args.runs):
      seconds, peak, stdout = _spawn(command, environment)
      print(json.dumps({'run': index + 1,
                        'cache': 'cold' if index == 0 else 'warm',
                        'wall_s': round(seconds, 2), 'peak_mib': round(peak),
                        'top1': stdout.splitlines()[1].strip()}), flush=True)
      if other:
        seconds, peak, stdout = _spawn(
            [python, os.path.join(other, 'run.py'), *command[2:]],
            other_environment, cwd=other)
        print(json.dumps({'run': index + 1, 'checkout': other,
                          'wall_s': round(seconds, 2),
                          'peak_mib': round(peak),
                          'top1': stdout.splitlines()[1].strip()}),
              flush=True)
    # Stages, against a fresh cache again.
    environment['XDG_CACHE_HOME'] = os.path.join(scratch, 'cache_timed')
    for index in range(args.runs):
      seconds, peak, stdout = _spawn(
          [python, os.path.abspath(__file__), '--child',
           f'--workdir={args.workdir}', f'--video={args.video}',
           f'--output_json={output_json}', f'--spawned_at={time.time()}'],
          environment)
      stages = json.loads(stdout.strip().splitlines()[-1])
      print(json.dumps({
          'timed_run': index + 1, 'cache': 'cold' if index == 0 else 'warm',
          **{name: round(value, 2) if isinstance(value, float) else value
             for name, value in stages.items()},
          'exit': round(seconds, 2), 'peak_mib': round(peak)}), flush=True)


if __name__ == '__main__':
  main()
