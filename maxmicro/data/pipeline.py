"""The grain input pipeline: built MA-52 records to uint8 host batches.

Train, one visible line each:
  records of this process' slice of the split (`tfds.split_for_jax_process`)
  -> `grain.MapDataset.source` -> `shuffle(seed)` -> `random_map` (TSN
  sampling, decode the sampled JPEGs, multi-scale crop, flip) -> `repeat()`
  (reshuffled every epoch) -> `to_iter_dataset` -> `batch(drop_remainder)`
  -> `mp_prefetch` (worker processes).
Eval: the same records -> `map` (segment centres, resize, centre crop), padded
with masked examples so that every process yields the same number of full
batches -> `batch`.

Batches are numpy and uint8; normalisation happens on the device, in the step.
"""

import math

from absl import flags
import grain
import numpy as np
import tensorflow_datasets as tfds

from maxmicro.data import build
from maxmicro.data import ma52_layout
from maxmicro.data import records
from maxmicro.data import transforms


def has_ground_truth(split):
  """False for splits whose labels are placeholders (MA-52's `test`).

  Metrics must never be reported on such a split. `split` may be a subsplit
  such as `'test[:100]'`.
  """
  return split.split('[')[0] not in ma52_layout.SPLITS_WITHOUT_LABELS


def num_examples(data_config, split):
  """Videos in `split` (e.g. 'train', 'validation[:10%]') of the built data."""
  builder = build.load_builder(data_config.data_dir,
                               data_config.builder_config)
  return builder.info.splits[split].num_examples


def _process_records(data_config, split, process_index, process_count):
  """This process' slice of `split`: disjoint, together they cover it."""
  return records.Ma52Records(
      data_config.data_dir, data_config.builder_config,
      tfds.split_for_jax_process(split, process_index=process_index,
                                 process_count=process_count))


class TrainClip(grain.transforms.RandomMap):
  """A record to a training example: sampled frames, augmented, uint8."""

  def __init__(self, data_config, num_segments):
    self.num_segments = num_segments
    self.frame_interval = data_config.frame_interval
    self.image_size = data_config.image_size
    self.resize_short_side = data_config.resize_short_side
    self.scales = tuple(data_config.crop_scales)
    self.max_distort = data_config.max_distort
    self.flip_probability = data_config.flip_probability
    self.options = dict(
        train_crop=data_config.train_crop,
        area_range=tuple(data_config.crop_area_range),
        aspect_range=tuple(data_config.crop_aspect_range),
        jitter=tuple(data_config.color_jitter),
        erase_probability=data_config.erase_probability,
        erase_area_range=tuple(data_config.erase_area_range))

  def random_map(self, element, rng):
    indices = transforms.sample_train_indices(
        len(element['jpegs']), self.num_segments, rng, self.frame_interval)
    video = transforms.augment_train_clip(
        records.decode_frames(element['jpegs'], indices), rng,
        image_size=self.image_size,
        resize_short_side_to=self.resize_short_side, scales=self.scales,
        max_distort=self.max_distort, flip_probability=self.flip_probability,
        **self.options)
    return {
        'video': video,  # (T, S, S, 3) uint8
        'label': np.int32(element['label']),
        'body_label': np.int32(element['body_label']),
    }


class EvalClip(grain.transforms.Map):
  """A record to an eval example: C clips of segment centres, centre crop."""

  def __init__(self, data_config, num_segments):
    self.num_segments = num_segments
    self.frame_interval = data_config.frame_interval
    self.num_clips = data_config.eval_num_clips
    self.image_size = data_config.image_size
    self.resize_short_side = data_config.resize_short_side

  def map(self, element):
    indices = transforms.sample_test_indices(
        len(element['jpegs']), self.num_segments, self.num_clips,
        self.frame_interval)
    video = transforms.eval_clip(
        records.decode_frames(element['jpegs'], indices),
        image_size=self.image_size,
        resize_short_side_to=self.resize_short_side)
    return {
        'video': video,  # (C*T, S, S, 3) uint8
        'label': np.int32(element['label']),
        'body_label': np.int32(element['body_label']),
        'video_id': np.asarray(element['video_id']),
        'mask': np.True_,
    }


class PaddingClip(grain.transforms.Map):
  """Any index to a masked all-zero eval example (pads the last batches)."""

  def __init__(self, data_config, num_segments):
    self.shape = (data_config.eval_num_clips * num_segments,
                  data_config.image_size, data_config.image_size, 3)

  def map(self, element):
    del element
    return {
        'video': np.zeros(self.shape, np.uint8),
        'label': np.int32(0),
        'body_label': np.int32(0),
        'video_id': np.asarray(''),
        'mask': np.False_,
    }


def _process_seed(seed, process_index):
  """A seed per process, so that processes draw different augmentations."""
  return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])


def _prefetch(dataset, data_config):
  """Runs `dataset` in `data_config.num_workers` worker processes (0: none)."""
  if not data_config.num_workers:
    return dataset
  if not flags.FLAGS.is_parsed():
    # Grain's worker processes read grain's absl flags.
    raise RuntimeError(
        f'config.data.num_workers={data_config.num_workers} needs parsed absl '
        'flags (grain workers read them): run under absl.app.run, call '
        'absl.flags.FLAGS.mark_as_parsed() first, or set num_workers=0.')
  return dataset.mp_prefetch(grain.MultiprocessingOptions(
      num_workers=data_config.num_workers,
      per_worker_buffer_size=data_config.prefetch_buffer_size))


def make_train_iterator(data_config, *, num_segments, per_process_batch_size,
                        seed, process_index, process_count):
  """An endless, checkpointable iterator of this process' training batches.

  Args:
    data_config: `config.data` (see configs/common.py).
    num_segments: T, frames sampled per clip (one per segment).
    per_process_batch_size: B, clips per batch on this process.
    seed: drives shuffling and augmentation; the same seed gives the same
      batches.
    process_index: this JAX process (`jax.process_index()`).
    process_count: `jax.process_count()`.

  Returns:
    A `grain.DatasetIterator` (with `get_state`/`set_state`, checkpointable
    with `grain.checkpoint.CheckpointHandler`) yielding dicts: `video` uint8
    `(B, T, S, S, 3)` (S = `data_config.image_size`), `label` int32 `(B,)`,
    `body_label` int32 `(B,)`. Epochs repeat forever, reshuffled each time;
    an incomplete last batch of an epoch is not dropped but carries on into
    the next epoch (the stream of examples is endless).
  """
  process_seed = _process_seed(seed, process_index)
  dataset = (
      grain.MapDataset.source(_process_records(
          data_config, data_config.train_split, process_index, process_count))
      .shuffle(seed=process_seed)
      .random_map(TrainClip(data_config, num_segments), seed=process_seed)
      .repeat()  # Endless; each epoch reshuffled and re-augmented.
      .to_iter_dataset(grain.ReadOptions(
          num_threads=data_config.read_threads,
          prefetch_buffer_size=per_process_batch_size))
      .batch(per_process_batch_size, drop_remainder=True))
  return iter(_prefetch(dataset, data_config))


def num_eval_batches(data_config, split, *, per_process_batch_size,
                     process_count):
  """Batches each process yields for one pass over `split` (all the same)."""
  largest_slice = math.ceil(num_examples(data_config, split) / process_count)
  return math.ceil(largest_slice / per_process_batch_size)


def make_eval_iterator(data_config, split, *, num_segments,
                       per_process_batch_size, process_index, process_count):
  """One pass over this process' slice of `split`, padded to full batches.

  Every video is seen exactly once across processes, and every process
  yields the same number of batches (`num_eval_batches`), padding with masked
  rows (whole masked batches where needed), so multi-host eval cannot
  deadlock.

  Returns:
    A finite iterable (each `iter()` is a new pass) of dicts: `video` uint8
    `(B, C*T, S, S, 3)` with the C = `data_config.eval_num_clips` clips
    consecutive, `label` int32 `(B,)`, `body_label` int32 `(B,)`, `video_id`
    str `(B,)`, `mask` bool `(B,)` (False on padding rows). On a split without
    ground truth (`has_ground_truth`) labels are placeholders.
  """
  source = _process_records(data_config, split, process_index, process_count)
  num_batches = num_eval_batches(
      data_config, split, per_process_batch_size=per_process_batch_size,
      process_count=process_count)
  num_padding = num_batches * per_process_batch_size - len(source)
  examples = grain.MapDataset.source(source).map(
      EvalClip(data_config, num_segments))
  padding = grain.MapDataset.range(num_padding).map(
      PaddingClip(data_config, num_segments))
  dataset = (grain.MapDataset.concatenate([examples, padding])
             .batch(per_process_batch_size, drop_remainder=True))
  if not data_config.num_workers:
    return dataset
  return _prefetch(dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=data_config.read_threads, prefetch_buffer_size=1)),
                   data_config)
