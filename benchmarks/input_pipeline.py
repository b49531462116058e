"""Input pipeline throughput: built records vs decoding mp4s on the fly.

  PYTHONPATH=. python benchmarks/input_pipeline.py [--videos=8] [--clips=400]

Writes fake MA-52 videos at the source resolution (1080 wide x 1296 high,
H.264, 48 frames), builds them as `ma52/default` (short side 256, every frame),
then measures, each in a fresh single-threaded process on this machine:
  records: the full training pipeline of maxmicro.data.pipeline (8 frames,
    TSN sampling, JPEG decode of the sampled frames, resize, multi-scale crop
    to 224, flip, batching) with no worker processes and one read thread;
  records, ViT recipe: the same with configs/videomae.py:base's data (16
    frames, random resized crop, colour jitter, random erasing, flip);
  on the fly: the official approach, decoding the source mp4 for each clip
    (up to its last sampled frame), then the same sampling and augmentation.
Reports clips/s (wall), clips per CPU-second and each process' peak RSS.
"""

import argparse
import json
import multiprocessing
import os
import pathlib
import resource
import tempfile
import time

import av
import cv2
import numpy as np

from configs import common
from configs import videomae
from maxmicro import labels
from maxmicro.data import build
from maxmicro.data import pipeline
from maxmicro.data import synthetic
from maxmicro.data import transforms
from maxmicro.data import video

SOURCE_SIZE = (1080, 1296)  # (width, height) of MA-52's videos.
NUM_SEGMENTS = 8


def _write_source_videos(root, num_videos, num_frames):
  """An MA-52 layout with `num_videos` train videos at the source size."""
  rng = np.random.default_rng(0)
  for split in ('train', 'val', 'test'):
    (root / f'videos_{split}').mkdir(parents=True)
  lines = []
  for index in range(num_videos):
    action_id = int(rng.integers(labels.NUM_ACTIONS))
    small = synthetic.render_clip(action_id, size=(270, 324),
                                  num_frames=num_frames, rng=rng)
    frames = np.stack([cv2.resize(f, SOURCE_SIZE, interpolation=cv2.INTER_CUBIC)
                       for f in small])
    noise = rng.integers(-4, 5, size=frames.shape, dtype=np.int16)
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)  # Sensor noise.
    name = f'{index:04d}_{action_id:02d}_0001.mp4'
    video.write_video(root / 'videos_train' / name, frames)
    lines.append(f'{name} {action_id}')
  (root / 'train_list_videos.txt').write_bytes(
      ('\r\n'.join(lines) + '\r\n').encode())
  # Tiny val/test lists: the builder needs all three.
  for split, list_name in (('val', 'val_list_videos.txt'),
                           ('test', 'test_list_videos.txt')):
    first = lines[0].split()[0]
    os.link(root / 'videos_train' / first, root / f'videos_{split}' / first)
    (root / list_name).write_bytes(f'{first} 0'.encode())
  return [root / 'videos_train' / line.split()[0] for line in lines]


def _single_thread():
  cv2.setNumThreads(1)


def _measure_records(data_dir, num_clips, recipe, result_queue):
  _single_thread()
  if recipe == 'vit':
    config = videomae.get_config('size=base')
    name = 'records, ViT recipe (16x224, random resized crop, jitter, erasing)'
  else:
    config = common.get_base_config()
    config.model.num_segments = NUM_SEGMENTS
    name = 'records (8x224, full train pipeline)'
  data_config = config.data
  num_segments = config.model.num_segments
  data_config.data_dir = str(data_dir)
  data_config.num_workers = 0
  data_config.read_threads = 1
  batch_size = 8
  iterator = pipeline.make_train_iterator(
      data_config, num_segments=num_segments,
      per_process_batch_size=batch_size, seed=0, process_index=0,
      process_count=1)
  next(iterator)  # Warm up: open files, first decode.
  start_wall, start_cpu = time.perf_counter(), time.process_time()
  for _ in range(num_clips // batch_size):
    batch = next(iterator)
  wall = time.perf_counter() - start_wall
  cpu = time.process_time() - start_cpu
  assert batch['video'].shape == (batch_size, num_segments, 224, 224, 3)
  clips = (num_clips // batch_size) * batch_size
  result_queue.put(_result(name, clips, wall, cpu))


def _decode_sampled(path, indices):
  """Decodes `path` up to its last sampled frame; returns the sampled ones."""
  wanted = set(int(i) for i in indices)
  frames = {}
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    for number, frame in enumerate(container.decode(stream)):
      if number in wanted:
        frames[number] = frame.to_ndarray(format='rgb24')
      if number >= max(wanted):
        break
  return np.stack([frames[int(i)] for i in indices])


def _measure_on_the_fly(paths, num_frames, num_clips, result_queue):
  _single_thread()
  data_config = common.get_base_config().data
  rng = np.random.default_rng(0)
  clips = []
  start_wall, start_cpu = time.perf_counter(), time.process_time()
  for clip_index in range(num_clips):
    indices = transforms.sample_train_indices(num_frames, NUM_SEGMENTS, rng)
    frames = _decode_sampled(paths[clip_index % len(paths)], indices)
    clip = transforms.augment_train_clip(
        frames, rng, image_size=data_config.image_size,
        resize_short_side_to=data_config.resize_short_side,
        scales=tuple(data_config.crop_scales),
        max_distort=data_config.max_distort,
        flip_probability=data_config.flip_probability)
    clips.append(clip)
    if len(clips) == 8:
      np.stack(clips)  # Batching, as the pipeline does.
      clips = []
  wall = time.perf_counter() - start_wall
  cpu = time.process_time() - start_cpu
  result_queue.put(_result('on the fly (decode 1080x1296 mp4 per clip)',
                           num_clips, wall, cpu))


def _peak_rss_mib():
  """This process' peak resident memory (VmHWM; ru_maxrss survives exec)."""
  with open('/proc/self/status') as status:
    for line in status:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) / 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _result(name, clips, wall, cpu):
  peak_mib = _peak_rss_mib()
  return {'path': name, 'clips': clips, 'wall_s': round(wall, 2),
          'clips_per_s': round(clips / wall, 1),
          'clips_per_cpu_s': round(clips / cpu, 1),
          'peak_rss_mib': round(peak_mib)}


def _run_in_fresh_process(target, *args):
  context = multiprocessing.get_context('spawn')
  queue = context.Queue()
  process = context.Process(target=target, args=(*args, queue))
  process.start()
  result = queue.get()
  process.join()
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--videos', type=int, default=8)
  parser.add_argument('--frames', type=int, default=48)
  parser.add_argument('--clips', type=int, default=400)
  parser.add_argument('--on_the_fly_clips', type=int, default=24)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    start = time.perf_counter()
    paths = _write_source_videos(tmp / 'manual', args.videos, args.frames)
    print(f'wrote {args.videos} videos of {args.frames} frames at '
          f'{SOURCE_SIZE[0]}x{SOURCE_SIZE[1]} in '
          f'{time.perf_counter() - start:.1f}s')
    start = time.perf_counter()
    build.prepare_ma52(tmp / 'manual', tmp / 'data', 'default')
    build_s = time.perf_counter() - start
    print(f'built ma52/default ({args.videos + 2} videos) in {build_s:.1f}s '
          f'with {os.cpu_count()} decode workers')
    results = [
        _run_in_fresh_process(_measure_records, tmp / 'data', args.clips,
                              'manet'),
        _run_in_fresh_process(_measure_records, tmp / 'data', args.clips,
                              'vit'),
        _run_in_fresh_process(_measure_on_the_fly, paths, args.frames,
                              args.on_the_fly_clips),
    ]
  print('| path | clips | wall s | clips/s | clips/CPU-s | peak RSS MiB |')
  print('| --- | --- | --- | --- | --- | --- |')
  for r in results:
    print(f"| {r['path']} | {r['clips']} | {r['wall_s']} | {r['clips_per_s']} "
          f"| {r['clips_per_cpu_s']} | {r['peak_rss_mib']} |")
  speedup = results[0]['clips_per_cpu_s'] / results[-1]['clips_per_cpu_s']
  print(f'records / on the fly: {speedup:.1f}x per CPU-second')
  print(json.dumps({'results': results, 'speedup_per_cpu_s': round(speedup, 1),
                    'build_s': round(build_s, 1), 'cpus': os.cpu_count()}))


if __name__ == '__main__':
  main()
