r"""Throughput of the MANet-R50 train step, its FLOP utilisation and compile time.

  PYTHONPATH=. python benchmarks/train_step.py                # CPU, N=2 + torch
  PYTHONPATH=. python benchmarks/train_step.py --batch=128 --models=manet,tsn
      --steps=20                                              # on a GPU
  PYTHONPATH=. python benchmarks/train_step.py --batch=32 --models=vit-b \
      --torch_model=vit-b --torch_variants=bf16,bf16-compile  # ViT-B 16x224
  PYTHONPATH=. python benchmarks/train_step.py --batch=8 --models=vswin-s \
      --torch_model=vswin-s --torch_variants=bf16,bf16-compile  # 32x224

`--models=vit-b` times configs/videomae.py:base's step (AdamW, the backbone
at 0.1x) on 16 frames, and `--torch_model=vit-b` transformers' VideoMAE with
SDPA attention beside it. `--models=vswin-s` (configs/vswin.py:small) and
`--models=i3d` (configs/i3d.py) take 32 frames; their PyTorch references
are torchvision's swin3d_s (AdamW) and mmaction2's ResNet3d with I3DHead
(SGD, tests/resnet3d_test.py).

Times `train.train_step` (the real one: SGD with MANet's parameter groups,
grad clipping, BatchNorm updates, CE + 50 x MSE of `configs/manet.py:paper`)
on random uint8 clips of T=8 frames of 224x224, already on the device, so the
input pipeline is not measured. Model FLOP utilisation (MFU) is the step's
convolution and matmul FLOPs (`benchmarks/flops.py`, counted on the traced
step: XLA's cost analysis misses cuDNN's convolutions on a GPU) per second
over the device's peak. With `--torch` (the default on CPU) it also times the
same step of the PyTorch reference MANet (tests/torch_reference.py): on CPU
in float32, with as many threads as XLA:CPU (one per core); on a GPU with
bfloat16 autocast, then also channels_last, then also `torch.compile`
(`--torch_variants`). `--profile=DIR` traces 3 steps of the first JAX model
with `jax.profiler`. On CPU the steps
take turns, after 2 warm-up steps each, in an order that reverses every
round and after a short pause each, and each reports its median: on a shared
machine all then see the same load. `--xla_defaults` adds each model
compiled with XLA's default options instead of maxmicro's
(`maxmicro/xla_options.py`). On an accelerator each model runs its steps back
to back, the host waiting only after the last, as in training.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from unittest import mock

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import flops as flops_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import i3d  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import manet  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import tsn  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import videomae  # noqa: E402  pylint: disable=g-import-not-at-top
from configs import vswin  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import sharding  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import tasks  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import train  # noqa: E402  pylint: disable=g-import-not-at-top
from maxmicro import xla_options  # noqa: E402  pylint: disable=g-import-not-at-top

# Dense peak FLOP/s by device kind and compute dtype (vendor data sheets).
PEAK_FLOPS = {
    ('H100', 'bfloat16'): 989e12, ('H100', 'float32'): 67e12,
    ('H200', 'bfloat16'): 989e12, ('H200', 'float32'): 67e12,
    ('A100', 'bfloat16'): 312e12, ('A100', 'float32'): 19.5e12,
    ('TPU v5', 'bfloat16'): 197e12, ('TPU v4', 'bfloat16'): 275e12,
}


def cpu_peak_flops():
  """Cores x clock x FLOPs/cycle of FMA vectors (an upper bound, float32)."""
  flags, mhz = '', None
  with open('/proc/cpuinfo') as file:
    for line in file:
      if line.startswith('flags') and not flags:
        flags = line
      if line.startswith('cpu MHz') and mhz is None:
        mhz = float(line.split(':')[1])
  lanes = 16 if 'avx512f' in flags else 8 if 'avx2' in flags else 4
  flops_per_cycle = 2 * 2 * lanes  # Two FMA units, 2 FLOPs per FMA.
  return os.cpu_count() * (mhz or 2000) * 1e6 * flops_per_cycle


def peak_flops(dtype_name):
  device = jax.devices()[0]
  if device.platform == 'cpu':
    return cpu_peak_flops()
  for (kind, dtype), flops in PEAK_FLOPS.items():
    if kind in device.device_kind and dtype == dtype_name:
      return flops * jax.device_count()
  return None


# `--models` names and what they build: MANet / TSN-R50 as the paper trains
# them (8 frames), ViT-B as configs/videomae.py:base (16 frames), VSwin-S and
# I3D-R50 as configs/vswin.py:small and configs/i3d.py (32 frames).
MODELS = {'manet': 'manet-r50', 'tsn': 'tsn-r50', 'vit-b': 'vit-b',
          'vswin-s': 'vswin-s', 'i3d': 'i3d-r50'}
CLIP_CONFIGS = {'vit-b': lambda: videomae.get_config('base'),
                'vswin-s': lambda: vswin.get_config('small'),
                'i3d': lambda: i3d.get_config()}


def _config(model_name, batch, dtype, label_vectors):
  if model_name in CLIP_CONFIGS:
    config = CLIP_CONFIGS[model_name]()
  else:
    config = (manet if model_name == 'manet' else tsn).get_config('paper')
  config.model.dtype = dtype
  config.loss.label_vectors = label_vectors
  config.train.global_batch_size = batch
  config.lock()
  return config


def jax_step(model_name, batch, dtype, label_vectors, xla_defaults=False):
  """Compile time, FLOPs per step, and a function that runs one JAX step.

  With `xla_defaults`, the step is compiled with XLA's default options
  instead of maxmicro's (`maxmicro/xla_options.py`).
  """
  config = _config(model_name, batch, dtype, label_vectors)
  mesh = sharding.make_mesh()
  trainer = train.make_trainer(config, tasks.get_task(config), mesh,
                               num_train_examples=100 * batch)
  state = trainer.init_state(jax.random.key(0))
  rng = np.random.default_rng(0)
  frames = config.model.num_segments
  batch_arrays = sharding.global_batch({
      'video': rng.integers(0, 256, (batch, frames, 224, 224, 3),
                            dtype=np.uint8),
      'label': rng.integers(52, size=batch).astype(np.int32)}, mesh)
  step_rng = jax.random.key(1)
  started = time.perf_counter()
  with mock.patch.object(xla_options, 'compiler_options',
                         (lambda: None) if xla_defaults else
                         xla_options.compiler_options):
    jitted = trainer.jit_train_step()
  traced = jitted.trace(state, batch_arrays, step_rng)
  compiled = traced.lower().compile()
  compile_seconds = time.perf_counter() - started
  flops = flops_lib.count_flops(traced.jaxpr)
  holder = {'state': state}  # The step donates its state.

  def step():
    holder['state'], metrics = compiled(holder['state'], batch_arrays,
                                        step_rng)
    return metrics['loss']

  return compile_seconds, flops, frames, step


# PyTorch's variants: on an accelerator, bfloat16 autocast (as JAX's bfloat16
# compute), then channels_last memory, then `torch.compile` on top.
TORCH_VARIANTS = {'eager': {}, 'bf16': dict(autocast=True),
                  'bf16-channels_last': dict(autocast=True,
                                             channels_last=True),
                  'bf16-channels_last-compile': dict(
                      autocast=True, channels_last=True, compiled=True),
                  # A ViT has no convolutions past its patch embedding.
                  'bf16-compile': dict(autocast=True, compiled=True)}


def _clip_reference(model_name, batch):
  """(module, logits of `(N, T, 3, S, S)` video, optimizer, frames) of a clip
  model's PyTorch reference, with its recipe's optimizer."""
  import torch  # pylint: disable=g-import-not-at-top
  if model_name == 'vit-b':
    import transformers  # pylint: disable=g-import-not-at-top
    model = transformers.VideoMAEForVideoClassification(
        transformers.VideoMAEConfig(num_labels=52, use_mean_pooling=True,
                                    attn_implementation='sdpa'))
    return (model, lambda video: model(pixel_values=video).logits,
            torch.optim.AdamW(model.parameters(), lr=1e-3 * batch / 16,
                              weight_decay=0.01), 16)
  if model_name == 'vswin-s':
    import torchvision  # pylint: disable=g-import-not-at-top
    model = torchvision.models.video.swin3d_s(num_classes=52)
    return (model, lambda video: model(video.transpose(1, 2)),
            torch.optim.AdamW(model.parameters(), lr=1e-3 * batch / 4,
                              weight_decay=0.02), 32)
  from tests import resnet3d_test  # pylint: disable=g-import-not-at-top
  model = resnet3d_test.Recognizer('i3d')
  return (model, lambda video: model(video.transpose(1, 2)),
          torch.optim.SGD(model.parameters(), lr=0.01 * batch / 64,
                          momentum=0.9, weight_decay=1e-4), 32)


def torch_clip_step(model_name, batch, device='cpu', autocast=False,
                    compiled=False):
  """One step of a clip model's PyTorch reference (`_clip_reference`) on
  random clips of 224."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count())
  model, logits_of, optimizer, num_frames = _clip_reference(model_name, batch)
  model.train().to(device)
  frames = torch.randint(0, 256, (batch, num_frames, 3, 224, 224),
                         dtype=torch.uint8, device=device)
  labels = torch.randint(52, (batch,), device=device)
  mean = torch.tensor([123.675, 116.28, 103.53], device=device).view(
      1, 1, 3, 1, 1)
  std = torch.tensor([58.395, 57.12, 57.375], device=device).view(
      1, 1, 3, 1, 1)

  def loss_of(video):
    return torch.nn.functional.cross_entropy(logits_of(video), labels)

  if compiled:
    loss_of = torch.compile(loss_of)

  def step():
    with torch.autocast(device_type=torch.device(device).type,
                        dtype=torch.bfloat16, enabled=autocast):
      loss = loss_of((frames.float() - mean) / std)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()

  return step


def torch_step(batch, device='cpu', autocast=False, channels_last=False,
               compiled=False, model_name='manet'):
  """A function that runs one step of the PyTorch reference of
  `model_name`: MANet (tests/torch_reference.py) or a clip model."""
  if model_name in CLIP_CONFIGS:
    assert not channels_last, 'channels_last is for 2D convolutions'
    return torch_clip_step(model_name, batch, device, autocast, compiled)
  import torch  # pylint: disable=g-import-not-at-top
  from tests import torch_reference  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  # XLA:CPU's intra-op pool has one thread per core; give torch the same.
  torch.set_num_threads(os.cpu_count())
  model = torch_reference.MANetReference(num_segments=8).train().to(device)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
  head = model.cls_head
  last = {id(head.fc_emb_t.weight), id(head.fc_emb_t.bias)}
  decay, no_decay = [], []
  for name, parameter in model.named_parameters():
    if id(parameter) in last:
      continue
    (decay if name.endswith('weight') and parameter.ndim > 1
     else no_decay).append(parameter)
  lr = 0.00125 * batch / 10
  optimizer = torch.optim.SGD([
      {'params': decay, 'weight_decay': 1e-4},
      {'params': no_decay, 'weight_decay': 0.0},
      {'params': [head.fc_emb_t.weight], 'lr': 5 * lr, 'weight_decay': 1e-4},
      {'params': [head.fc_emb_t.bias], 'lr': 10 * lr, 'weight_decay': 0.0},
  ], lr=lr, momentum=0.9)
  frames = torch.randint(0, 256, (batch * 8, 224, 224, 3), dtype=torch.uint8,
                         device=device)
  labels = torch.randint(52, (batch,), device=device)
  vectors = torch.randn(52, 300, device=device)
  mean = torch.tensor([123.675, 116.28, 103.53], device=device).view(
      1, 3, 1, 1)
  std = torch.tensor([58.395, 57.12, 57.375], device=device).view(1, 3, 1, 1)

  def loss_of(video):
    logits, embedding = model(video)
    return (torch.nn.functional.cross_entropy(logits, labels) +
            50 * torch.nn.functional.mse_loss(embedding.float(),
                                              vectors[labels]))

  if compiled:
    loss_of = torch.compile(loss_of)

  def step():
    video = (frames.permute(0, 3, 1, 2).float() - mean) / std
    if channels_last:
      video = video.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=torch.device(device).type,
                        dtype=torch.bfloat16, enabled=autocast):
      loss = loss_of(video)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
    optimizer.step()
    return loss.detach()

  return step


def _wait(loss):
  assert np.isfinite(float(loss))  # Also waits for the step to finish.


def time_interleaved(steps, rounds, pause=0.5):
  """Median seconds per step of each of `steps`, run in turn each round.

  Interleaving puts every step under the same load: on a shared machine,
  timing one framework after the other compares two different loads. The
  order reverses every round and each step starts after a `pause`: a
  framework's worker threads keep spinning for a while after its step
  (OpenMP's, torch's), and would otherwise slow whichever step comes next.
  """
  for step in steps.values():
    for _ in range(2):  # Warm up.
      _wait(step())
  seconds = {name: [] for name in steps}
  order = list(steps)
  for _ in range(rounds):
    for name in order:
      time.sleep(pause)
      started = time.perf_counter()
      _wait(steps[name]())
      seconds[name].append(time.perf_counter() - started)
    order.reverse()
  return {name: float(np.median(times)) for name, times in seconds.items()}


def time_consecutive(steps, count):
  """Mean seconds per step of each of `steps`, `count` steps back to back.

  As in training: the host queues the next step while the device runs this
  one, and waits only at the end.
  """
  seconds = {}
  for name, step in steps.items():
    for _ in range(2):  # Warm up.
      _wait(step())
    started = time.perf_counter()
    for _ in range(count):
      loss = step()
    _wait(loss)
    seconds[name] = (time.perf_counter() - started) / count
  return seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=None,
                      help='Clips per step (default: 2 on CPU, 128 else).')
  parser.add_argument('--steps', type=int, default=None)
  parser.add_argument('--models', default='manet',
                      help='Comma-separated: ' + ', '.join(MODELS) +
                      '; empty: PyTorch only '
                      '(on a GPU, each framework in its own process keeps '
                      'the memory to itself).')
  parser.add_argument('--dtype', default='auto',
                      help='auto (float32 on CPU, bfloat16 on GPU/TPU), '
                      'float32 or bfloat16.')
  parser.add_argument('--torch', default=None, choices=('yes', 'no'),
                      help='Also time PyTorch (default: yes on CPU).')
  parser.add_argument('--torch_model', default='manet',
                      choices=('manet', *CLIP_CONFIGS),
                      help='The PyTorch reference to time.')
  parser.add_argument('--xla_defaults', action='store_true',
                      help="Also time each model compiled with XLA's default "
                      "options instead of maxmicro's.")
  parser.add_argument('--torch_variants', default=None,
                      help='Comma-separated, of ' + ', '.join(TORCH_VARIANTS)
                      + ' (default: eager on CPU, the bf16 ones else).')
  parser.add_argument('--profile', default=None,
                      help='Folder for a jax.profiler trace of 3 steps of '
                      'the first JAX model, after the timing.')
  args = parser.parse_args()
  on_cpu = jax.default_backend() == 'cpu'
  batch = args.batch or (2 if on_cpu else 128)
  steps = args.steps or (5 if on_cpu else 20)
  dtype = args.dtype
  if dtype == 'auto':
    dtype = 'float32' if on_cpu else 'bfloat16'
  with tempfile.TemporaryDirectory() as scratch:
    label_vectors = os.path.join(scratch, 'label_vectors.npy')
    np.save(label_vectors, np.random.default_rng(0).normal(
        size=(52, 300)).astype(np.float32))
    device = jax.devices()[0]
    peak = peak_flops(dtype)
    compiled, steps_to_time = {}, {}
    variants = [(name, False) for name in args.models.split(',') if name]
    if args.xla_defaults:
      variants += [(name, True) for name in args.models.split(',') if name]
    for model_name, xla_defaults in variants:
      compile_seconds, flops, frames, step = jax_step(
          model_name, batch, dtype, label_vectors, xla_defaults)
      key = model_name + (' (XLA defaults)' if xla_defaults else '')
      compiled[key] = (model_name, xla_defaults, compile_seconds, flops,
                       frames)
      steps_to_time[key] = step
    with_torch = args.torch == 'yes' or (args.torch is None and on_cpu)
    torch_variants = []
    if with_torch:
      torch_variants = (args.torch_variants or (
          'eager' if on_cpu else
          'bf16,bf16-channels_last,bf16-channels_last-compile')).split(',')
    torch_device = 'cpu' if on_cpu else 'cuda'
    for variant in torch_variants:
      steps_to_time[f'torch {variant}'] = torch_step(
          batch, torch_device, **TORCH_VARIANTS[variant],
          model_name=args.torch_model)
    if on_cpu:
      seconds = time_interleaved(steps_to_time, steps)
    else:
      seconds = time_consecutive(steps_to_time, steps)
    if args.profile and compiled:
      first = steps_to_time[next(iter(compiled))]
      with jax.profiler.trace(args.profile):
        for _ in range(3):
          loss = first()
        _wait(loss)
  threads = f'{os.cpu_count()} threads' if on_cpu else None
  for key, (model_name, xla_defaults, compile_seconds, flops,
            frames) in compiled.items():
    print(json.dumps({
        'model': MODELS[model_name], 'framework': 'jax',
        'xla_options': 'defaults' if xla_defaults else 'maxmicro',
        'batch': batch, 'frames': frames, 'size': 224, 'dtype': dtype,
        'device': f'{jax.device_count()}x {device.device_kind}' + (
            f' ({threads})' if threads else ''),
        'compile_s': round(compile_seconds, 1),
        'step_s': round(seconds[key], 4),
        'clips_per_s': round(batch / seconds[key], 2),
        'tflops_per_step': round(flops / 1e12, 3),
        'mfu': (round(flops / seconds[key] / peak, 4)
                if peak and flops else None),
    }), flush=True)
  for variant in torch_variants:
    key = f'torch {variant}'
    print(json.dumps({
        'model': MODELS[args.torch_model], 'framework': 'torch',
        'variant': variant, 'batch': batch,
        'frames': (CLIP_CONFIGS[args.torch_model]().model.num_segments
                   if args.torch_model in CLIP_CONFIGS else 8), 'size': 224,
        'device': (f'cpu ({threads})' if on_cpu else
                   f'{device.device_kind}'),
        'step_s': round(seconds[key], 4),
        'clips_per_s': round(batch / seconds[key], 2)}), flush=True)
    for name in compiled:
      print(json.dumps({'jax': name, 'torch': variant,
                        'jax_over_torch_speed': round(
                            seconds[key] / seconds[name], 3)}), flush=True)


if __name__ == '__main__':
  main()
