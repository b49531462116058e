r"""CPU inference: MANet-R50's (ViT-B's, VSwin-T's) eval-mode forward beside
PyTorch.

  PYTHONPATH=. python benchmarks/inference.py            # torch, jax, folded
  PYTHONPATH=. python benchmarks/inference.py --rounds=7 \
      --variants=torch,jax-folded,jax,jax-xla-defaults,jax-conv1x1
  PYTHONPATH=. python benchmarks/inference.py --variants=torch,jax-folded \
      --rounds=1 --profile=/tmp/inference_profile        # where the time goes
  PYTHONPATH=. python benchmarks/inference.py --model=vit-b --batch=1 \
      --variants=torch,jax         # ViT-B/16, 16x224, beside transformers
  PYTHONPATH=. python benchmarks/inference.py --model=vswin-t --batch=1 \
      --variants=torch,jax         # Swin-T, 32x224, beside torchvision
  PYTHONPATH=. python benchmarks/inference.py --model=i3d --batch=1 \
      --variants=torch,jax         # I3D-R50, 32x224, beside mmaction2

`--model=vit-b` runs `configs/videomae.py:base` against transformers'
`VideoMAEForVideoClassification` (SDPA attention) with the same random
weights (every tensor drawn), converted by `maxmicro.convert`; 16 frames.
`--model=vswin-t` runs `configs/vswin.py:tiny` against torchvision's
`swin3d_t` the same way, and `--model=i3d` `configs/i3d.py` against
mmaction2's own `ResNet3d` + `I3DHead` (tests/resnet3d_test.py); 32 frames.

Each variant runs in its own process: a worker that builds its model, loads
the same weights (the PyTorch reference MANet of tests/torch_reference.py,
`randomize`d, converted by `maxmicro.convert` for JAX), compiles, warms up
and then runs one forward whenever this parent asks. The parent asks the
workers in turn, `--rounds` times, in an order that reverses every round and
after a pause of `--pause` seconds (torch's OpenMP threads spin on after a
forward and would slow whatever runs next), and prints each round: on a
shared machine the variants of one round see the same load, so the ratio is
read round by round. A forward is what evaluation runs: uint8 clips of
`--batch` x 8 frames of 224x224 in, normalised, the eval-mode model (float32,
dropout off, BatchNorm from its statistics), softmax out. JAX runs
`evaluate.score_videos` jitted as `evaluate.make_score_fn` does; torch the
reference under `torch.no_grad()` in eval mode, with `torch.set_num_threads`
equal to XLA:CPU's intra-op threads (one per core).

Variants (`JAX_VARIANTS`): `torch`; `jax` (what `--mode=eval` and
`--mode=predict` run: maxmicro's XLA:CPU options, 1x1 convolutions as
matmuls); `jax-folded` (the same with BatchNorm folded into the
convolutions once, at load, `models.folding`); `jax-xla-defaults` (`jax`
with XLA's default options); `jax-conv1x1` (`jax` with 1x1 convolutions left
to XLA as convolutions); and YNNPACK for dots or for convolutions.
"""

import argparse
import gzip
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Frames per clip of each --model.
MODEL_FRAMES = {'manet': 8, 'vit-b': 16, 'vswin-t': 32, 'i3d': 32}
MODEL = 'manet'  # Set from --model in main and in the workers, with:
NUM_SEGMENTS = 8
IMAGE_SIZE = 224
_YNN_TYPE = 'xla_cpu_experimental_ynn_fusion_type'
# name: (XLA compile options: 'maxmicro' for `xla_options.compiler_options()`,
# else a dict, None for XLA's defaults; BatchNorm folded into the
# convolutions once, at load (`models.folding`); 1x1 convolutions as matmuls)
JAX_VARIANTS = {
    'jax': ('maxmicro', False, True),
    'jax-folded': ('maxmicro', True, True),
    'jax-xla-defaults': (None, False, True),
    'jax-conv1x1': ('maxmicro', False, False),
    'jax-folded-xla-defaults': (None, True, True),
    'jax-folded-ynn-dot': ({_YNN_TYPE: 'LIBRARY_FUSION_TYPE_REDUCE,'
                                       'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'},
                           True, True),
    'jax-ynn-dot': ({_YNN_TYPE: 'LIBRARY_FUSION_TYPE_REDUCE,'
                                'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'},
                    False, True),
    'jax-folded-ynn-conv': (
        {_YNN_TYPE: 'LIBRARY_FUSION_TYPE_REDUCE,'
                    'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'}, True, True),
}


def _clips(batch):
  """The same uint8 `(N, T, S, S, 3)` clips in every worker."""
  return np.random.default_rng(0).integers(
      0, 256, (batch, NUM_SEGMENTS, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)


# Each clip model's PyTorch reference, every tensor drawn (norm scales about
# 1, the rest of trained weights' scale; `randomize` for convolutional
# networks), with `logits((N, T, 3, S, S) video)`.


def _vit_b_reference():
  """transformers' VideoMAE ViT-B/16 of configs/videomae.py:base."""
  import transformers  # pylint: disable=g-import-not-at-top
  from configs import videomae  # pylint: disable=g-import-not-at-top
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  model = videomae.get_config('base').model
  reference = transformers.VideoMAEForVideoClassification(
      transformers.VideoMAEConfig(
          hidden_size=model.embed_dim, num_hidden_layers=model.depth,
          num_attention_heads=model.num_heads,
          intermediate_size=model.mlp_dim, num_frames=model.num_segments,
          image_size=IMAGE_SIZE, patch_size=model.patch_size,
          num_labels=model.num_classes, qkv_bias=True, use_mean_pooling=True,
          layer_norm_eps=1e-6, attn_implementation='sdpa'))
  torch_reference.draw_every_tensor(reference, scale=0.02)
  return reference, lambda video: reference(pixel_values=video).logits


def _vswin_t_reference():
  """torchvision's swin3d_t with 52 classes."""
  import torchvision  # pylint: disable=g-import-not-at-top
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  reference = torch_reference.draw_every_tensor(
      torchvision.models.video.swin3d_t(num_classes=52), scale=0.02)
  return reference, lambda video: reference(video.transpose(1, 2))


def _i3d_reference():
  """mmaction2's own ResNet3d + I3DHead of configs/i3d.py."""
  from tests import resnet3d_test  # pylint: disable=g-import-not-at-top
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  reference = torch_reference.randomize(resnet3d_test.Recognizer('i3d'),
                                        seed=0)
  return reference, lambda video: reference(video.transpose(1, 2))


def _config(name, arg=None):
  """`configs/<name>.py:<arg>`, imported in the worker that needs it."""
  return importlib.import_module(f'configs.{name}').get_config(arg)


# A clip model's --model: (its config, its PyTorch reference).
CLIP_MODELS = {
    'vit-b': (lambda: _config('videomae', 'base'), _vit_b_reference),
    'vswin-t': (lambda: _config('vswin', 'tiny'), _vswin_t_reference),
    'i3d': (lambda: _config('i3d'), _i3d_reference),
}


def torch_forward(batch, weights_path):
  """Writes the reference's weights to `weights_path`; returns a forward."""
  import torch  # pylint: disable=g-import-not-at-top
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  if MODEL in CLIP_MODELS:
    return _torch_clip_forward(batch, weights_path)
  from maxmicro import ops  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  model = torch_reference.randomize(
      torch_reference.MANetReference(num_segments=NUM_SEGMENTS), seed=0)
  np.savez(weights_path, **{key: value.numpy() for key, value
                            in model.state_dict().items()})
  frames = torch.from_numpy(_clips(batch)).flatten(0, 1)  # (N*T, S, S, 3)
  mean = torch.tensor(ops.IMAGENET_MEAN).view(1, 3, 1, 1)
  std = torch.tensor(ops.IMAGENET_STD).view(1, 3, 1, 1)

  def forward():
    with torch.no_grad():
      video = (frames.permute(0, 3, 1, 2).float() - mean) / std
      logits, _ = model(video)
      return torch.softmax(logits, -1).numpy()

  return 0.0, None, forward


def _torch_clip_forward(batch, weights_path):
  """The forward of `MODEL`'s PyTorch reference (`CLIP_MODELS`)."""
  import torch  # pylint: disable=g-import-not-at-top
  from maxmicro import ops  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  model, logits_of = CLIP_MODELS[MODEL][1]()
  np.savez(weights_path, **{key: value.numpy() for key, value
                            in model.state_dict().items()})
  clips = torch.from_numpy(_clips(batch))  # (N, T, S, S, 3)
  mean = torch.tensor(ops.IMAGENET_MEAN).view(1, 1, 3, 1, 1)
  std = torch.tensor(ops.IMAGENET_STD).view(1, 1, 3, 1, 1)

  def forward():
    with torch.no_grad():
      video = (clips.permute(0, 1, 4, 2, 3).float() - mean) / std
      return torch.softmax(logits_of(video), -1).numpy()

  return 0.0, None, forward


def jax_forward(variant, batch, weights_path):
  """(compile s, GFLOP per forward, forward) of a JAX variant."""
  import functools  # pylint: disable=g-import-not-at-top
  from unittest import mock  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import flops  # pylint: disable=g-import-not-at-top
  from configs import manet  # pylint: disable=g-import-not-at-top
  from maxmicro import convert  # pylint: disable=g-import-not-at-top
  from maxmicro import evaluate  # pylint: disable=g-import-not-at-top
  from maxmicro import models  # pylint: disable=g-import-not-at-top
  from maxmicro import ops  # pylint: disable=g-import-not-at-top
  from maxmicro import xla_options  # pylint: disable=g-import-not-at-top
  from maxmicro.models import folding  # pylint: disable=g-import-not-at-top
  options, folded, matmul = JAX_VARIANTS[variant]
  if options == 'maxmicro':
    options = xla_options.compiler_options()
  if MODEL in CLIP_MODELS:
    config = CLIP_MODELS[MODEL][0]()
  else:
    config = manet.get_config('paper')
  config.model.dtype = 'float32'
  model = models.build_model(config)
  with np.load(weights_path) as state_dict:
    variables = convert.torch_to_variables(dict(state_dict), config)
  if folded:
    model = folding.fold_model(model)
    variables = folding.fold_variables(variables)
  variables = jax.device_put(variables)
  video = jax.device_put(_clips(batch))
  score = jax.jit(functools.partial(evaluate.score_videos, model=model,
                                    num_segments=NUM_SEGMENTS),
                  compiler_options=options)
  conv = ops.conv_or_matmul if matmul else jax.lax.conv_general_dilated
  started = time.perf_counter()
  with mock.patch.object(ops, 'conv_or_matmul', conv):
    traced = score.trace(variables, video)
  compiled = traced.lower().compile()
  compile_seconds = time.perf_counter() - started
  gflop = flops.count_flops(traced.jaxpr) / 1e9

  def forward():
    return np.asarray(compiled(variables, video))

  return compile_seconds, gflop, forward


def cpu_peak_gflops():
  """Cores x clock x FMA FLOPs per cycle (2 units; AVX-512 or AVX2 lanes)."""
  flags, mhz = '', 2000.0
  with open('/proc/cpuinfo') as file:
    for line in file:
      if line.startswith('flags') and not flags:
        flags = line
      if line.startswith('cpu MHz'):
        mhz = float(line.split(':')[1])
  lanes = 16 if ' avx512f' in flags else 8 if ' avx2' in flags else 4
  return os.cpu_count() * mhz / 1e3 * 2 * 2 * lanes


def worker(args):
  """Serves forwards to the parent over stdin/stdout (one JSON line each)."""
  global MODEL, NUM_SEGMENTS
  MODEL, NUM_SEGMENTS = args.model, MODEL_FRAMES[args.model]
  if args.worker == 'torch':
    compile_seconds, gflop, forward = torch_forward(args.batch, args.weights)
  else:
    compile_seconds, gflop, forward = jax_forward(args.worker, args.batch,
                                                  args.weights)
  scores = forward()
  forward()  # Warm-up.
  reply = lambda **fields: print(json.dumps(fields), flush=True)  # noqa: E731
  reply(ready=True, compile_s=compile_seconds, gflop=gflop,
        scores=scores.tolist())
  for command in sys.stdin:
    command = command.strip()
    if command == 'run':
      started, cpu_started = time.perf_counter(), time.process_time()
      forward()
      reply(seconds=time.perf_counter() - started,
            cpu_seconds=time.process_time() - cpu_started)
    elif command.startswith('profile '):
      reply(**profile(forward, command.split(' ', 1)[1]))
    else:
      return


def profile(forward, log_dir):
  """Seconds per kind of XLA:CPU op in one forward (`jax.profiler`).

  An op's time is from its thunk's start to its `end:` event (convolutions
  and dots run asynchronously on the intra-op threads) or the thunk's own
  duration. Independent ops may overlap, so kinds can sum to more than the
  forward's wall time.
  """
  import jax  # pylint: disable=g-import-not-at-top
  started = time.perf_counter()
  with jax.profiler.trace(log_dir, create_perfetto_trace=True):
    forward()
  wall = time.perf_counter() - started
  [path] = [os.path.join(root, name) for root, _, names in os.walk(log_dir)
            for name in names if name == 'perfetto_trace.json.gz']
  with gzip.open(path) as file:
    events = json.load(file)
  events = events['traceEvents'] if isinstance(events, dict) else events
  starts, ends = {}, {}
  for event in events:
    if event.get('ph') != 'X':
      continue
    name = event['name']
    if name.startswith('end: '):
      ends[name[len('end: '):]] = event['ts'] + event['dur']
    elif 'hlo_op' in event.get('args', {}):
      starts.setdefault(name, []).append((event['ts'], event['dur']))
  by_kind, count = {}, {}
  for name, runs in starts.items():
    begun, duration = runs[0]
    seconds = ((ends[name] - begun) if name in ends else
               sum(duration for _, duration in runs)) / 1e6
    kind = re.sub(r'[.\d]+$', '', name)
    by_kind[kind] = by_kind.get(kind, 0.0) + seconds
    count[kind] = count.get(kind, 0) + 1
  kinds = sorted(by_kind.items(), key=lambda item: -item[1])
  return {'trace': path, 'forward_wall_s': round(wall, 3),
          'seconds_by_op_kind': [(kind, round(seconds, 3), count[kind])
                                 for kind, seconds in kinds]}


class Worker:
  """A worker process of one variant."""

  def __init__(self, name, batch, weights, model='manet'):
    self.name = name
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), f'--worker={name}',
         f'--batch={batch}', f'--weights={weights}', f'--model={model}'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self.ready = self.ask(None)

  def ask(self, command):
    if command is not None:
      self.process.stdin.write(command + '\n')
      self.process.stdin.flush()
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(f'worker {self.name} died (see its stderr above).')
    return json.loads(line)

  def close(self):
    self.process.stdin.close()
    self.process.wait()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--variants', default='torch,jax,jax-folded',
                      help='Comma-separated: torch, ' +
                      ', '.join(JAX_VARIANTS) + '.')
  parser.add_argument('--model', default='manet', choices=MODEL_FRAMES)
  parser.add_argument('--batch', type=int, default=4, help='Clips.')
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--pause', type=float, default=1.0,
                      help='Seconds of quiet before each forward.')
  parser.add_argument('--profile', default=None,
                      help='Also profile one forward of each JAX variant '
                      'into this directory.')
  parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--weights', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args)
  global MODEL, NUM_SEGMENTS
  MODEL, NUM_SEGMENTS = args.model, MODEL_FRAMES[args.model]
  names = args.variants.split(',')
  unknown = set(names) - set(JAX_VARIANTS) - {'torch'}
  if unknown:
    parser.error(f'unknown --variants {sorted(unknown)}')
  if 'torch' not in names:
    parser.error('--variants must include torch (it makes the weights).')
  with tempfile.TemporaryDirectory() as scratch:
    weights = os.path.join(scratch, f'{args.model}.npz')
    # torch first: it writes the weights that the JAX workers convert.
    workers = [Worker(name, args.batch, weights, args.model)
               for name in sorted(names, key=lambda name: name != 'torch')]
    reference = np.asarray(workers[0].ready['scores'])
    peak = cpu_peak_gflops()
    for each in workers:
      scores = np.asarray(each.ready['scores'])
      print(json.dumps({
          'variant': each.name, 'compile_s': round(each.ready['compile_s'], 1),
          'gflop_per_forward': each.ready['gflop'] and round(
              each.ready['gflop'], 1),
          'max_abs_diff_to_torch_probabilities': float(
              np.abs(scores - reference).max())}), flush=True)
    seconds = {each.name: [] for each in workers}
    cpu_seconds = {each.name: [] for each in workers}
    order = list(workers)
    for round_index in range(args.rounds):
      for each in order:
        time.sleep(args.pause)
        timing = each.ask('run')
        seconds[each.name].append(timing['seconds'])
        cpu_seconds[each.name].append(timing['cpu_seconds'])
      order.reverse()
      row = {name: round(times[-1], 3) for name, times in seconds.items()}
      print(json.dumps({'round': round_index + 1, 'seconds': row,
                        'cpu_seconds': {
                            name: round(times[-1], 2)
                            for name, times in cpu_seconds.items()},
                        'torch_over': {
                            name: round(row['torch'] / value, 2)
                            for name, value in row.items()
                            if name != 'torch'}}), flush=True)
    # The model's convolution and matmul FLOPs (folding changes none).
    gflop = next((each.ready['gflop'] for each in workers
                  if each.ready['gflop']), None)
    for name, times in seconds.items():
      median = float(np.median(times))
      print(json.dumps({
          'variant': name, 'model': args.model, 'batch': args.batch,
          'frames': NUM_SEGMENTS,
          'size': IMAGE_SIZE, 'threads': os.cpu_count(),
          'median_s': round(median, 3), 'min_s': round(min(times), 3),
          'median_cpu_s': round(float(np.median(cpu_seconds[name])), 2),
          'speed_vs_torch_median_of_rounds': None if name == 'torch' else
          round(float(np.median(np.asarray(seconds['torch']) /
                                np.asarray(times))), 2),
          'gflop_per_s': round(gflop / median, 1) if gflop else None,
          'peak_gflop_per_s': round(peak, 1)}), flush=True)
    if args.profile:
      for each in workers:
        if each.name != 'torch':
          time.sleep(args.pause)
          print(json.dumps({'variant': each.name, **each.ask(
              f'profile {os.path.join(args.profile, each.name)}')}),
                flush=True)
    for each in workers:
      each.close()


if __name__ == '__main__':
  main()
