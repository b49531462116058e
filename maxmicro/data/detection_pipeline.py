"""MMA-52 detection data: per-step features on disk -> windows -> batches.

The detector trains on backbone features extracted once
(`maxmicro.detection.features`, `run.py --mode=features`), stored beside the
records in a features directory:

  meta.json           what made them (`identity`) and their width; written
                      last, so a directory without it is incomplete
  <split>.npy         float16 `(S, C)`: the steps of every video of the
                      split, one video after another
  <split>_index.npz   per video: id, fps, frame count, step and instance
                      offsets; the instances in seconds and their classes

Step j of a video is the feature of frame `j * frame_stride`, at
`j * frame_stride / fps` seconds; a video of n frames has
`ceil(n / frame_stride)` steps.

Train, one visible line each: this process' videos ->
`grain.MapDataset.source` -> `shuffle(seed)` -> `random_map` (a random window
of L steps, its instances clipped to it, in steps, padded to K) -> `repeat()`
-> `to_iter_dataset` -> `batch(drop_remainder)`.
Eval: every window of every video (L steps at a stride), this process' share,
padded with masked windows so that every process yields as many batches.
"""

import dataclasses
import json
import math
import os
import shutil

import grain
import numpy as np

from maxmicro import labels
from maxmicro.data import label_shuffles

FORMAT_VERSION = 1
META_NAME = 'meta.json'
SPLITS = ('train', 'validation', 'test')


class FeaturesError(ValueError):
  """Features that are missing, incomplete, or from another backbone."""


class MissingFeaturesError(FeaturesError):
  """No complete features where the config says they are."""


def default_features_dir(data_config):
  """`<data_dir>/mma52_features/<builder_config>`, beside the TFDS records."""
  root = data_config.data_dir or os.path.join('~', 'tensorflow_datasets')
  return os.path.join(os.path.expanduser(root), 'mma52_features',
                      data_config.builder_config)


def _paths(directory, split):
  return (os.path.join(directory, f'{split}.npy'),
          os.path.join(directory, f'{split}_index.npz'))


def num_steps(num_frames, frame_stride):
  return -(-int(num_frames) // frame_stride)


class SplitWriter:
  """Writes one split's features video by video, in bounded memory.

  Steps go to a raw file as they come; `close` prepends the `.npy` header
  (the total length is known only then) and writes the index.
  """

  def __init__(self, directory, split, feature_dim):
    self.directory, self.split, self.feature_dim = directory, split, feature_dim
    self._raw_path = os.path.join(directory, f'{split}.raw.tmp')
    self._raw = open(self._raw_path, 'wb')
    self._videos = []  # (video_id, fps, num_frames, steps, segments, labels)

  def add(self, video, features):
    """Appends a video (`parse_mma52_record`'s fields) and its `(n, C)`."""
    features = np.asarray(features, np.float16)
    if features.shape[1] != self.feature_dim:
      raise ValueError(f'features of width {features.shape[1]}, expected '
                       f'{self.feature_dim}.')
    self._raw.write(np.ascontiguousarray(features).tobytes())
    self._videos.append((video['video_id'], float(video['fps']),
                         int(video['num_frames']), len(features),
                         np.asarray(video['segments'], np.float32),
                         np.asarray(video['labels'], np.int32)))

  def close(self):
    """Writes `<split>.npy` and `<split>_index.npz`; returns the video count."""
    self._raw.close()
    features_path, index_path = _paths(self.directory, self.split)
    steps = [video[3] for video in self._videos]
    header_path = features_path + '.tmp'
    with open(header_path, 'wb') as out:
      np.lib.format.write_array_header_1_0(out, {
          'descr': np.lib.format.dtype_to_descr(np.dtype(np.float16)),
          'fortran_order': False, 'shape': (sum(steps), self.feature_dim)})
      with open(self._raw_path, 'rb') as raw:
        shutil.copyfileobj(raw, out)
    os.remove(self._raw_path)
    os.replace(header_path, features_path)
    instances = [len(video[5]) for video in self._videos]
    np.savez(
        index_path,
        video_ids=np.array([video[0] for video in self._videos], dtype=str),
        fps=np.array([video[1] for video in self._videos], np.float64),
        num_frames=np.array([video[2] for video in self._videos], np.int64),
        step_offsets=np.cumsum([0] + steps).astype(np.int64),
        instance_offsets=np.cumsum([0] + instances).astype(np.int64),
        segments=np.concatenate(
            [video[4].reshape(-1, 2) for video in self._videos] +
            [np.zeros((0, 2), np.float32)]),
        labels=np.concatenate([video[5] for video in self._videos] +
                              [np.zeros(0, np.int32)]))
    return len(self._videos)


def write_meta(directory, meta):
  with open(os.path.join(directory, META_NAME), 'w') as file:
    json.dump(meta, file, indent=1, sort_keys=True)


def read_meta(directory, *, how_to_extract):
  """The features' `meta.json`.

  Raises:
    MissingFeaturesError: none there (never extracted, or cut short); the
      message ends with `how_to_extract`.
  """
  path = os.path.join(directory, META_NAME)
  if not os.path.exists(path):
    raise MissingFeaturesError(
        f'no complete backbone features in {directory} (no {META_NAME}); '
        f'{how_to_extract}')
  with open(path) as file:
    return json.load(file)


def identity_differences(found, expected, ignore=()):
  """`key=found (now expected)` for each field of two identities that
  differs (`ignore` left out); empty when they agree."""
  return [f'{key}={found.get(key)!r} (now {expected.get(key)!r})'
          for key in sorted(set(found) | set(expected))
          if key not in ignore and found.get(key) != expected.get(key)]


def check_identity(meta, expected, directory, *, how_to_extract):
  """Refuses features made by another backbone, stride or dataset.

  Raises:
    FeaturesError: naming every field of `meta['identity']` that differs
      from `expected`.
  """
  differing = identity_differences(meta.get('identity', {}), expected)
  if differing:
    raise FeaturesError(
        f'the features in {directory} are stale: they were extracted with ' +
        '; '.join(differing) + f'. {how_to_extract}')


class SplitFeatures:
  """One split's features (memory-mapped) and annotations, by video.

  `split_features[i]` is a dict: `features` float16 `(n, C)`, `video_id`,
  `fps`, `num_frames`, `segments` float32 `(K, 2)` seconds, `labels` int32
  `(K,)`; the annotations shuffled as `shuffle_labels` says
  (`shuffle_annotations`, drawn from `seed`). Picklable (the memory map
  reopens), so grain workers can read it.
  """

  def __init__(self, directory, split, shuffle_labels='none', seed=0):
    self.directory, self.split = directory, split
    features_path, index_path = _paths(directory, split)
    if not os.path.exists(index_path):
      raise FeaturesError(f'no features of split {split!r} in {directory}.')
    with np.load(index_path) as index:
      self.index = {key: index[key] for key in index.files}
    label_shuffles.shuffle_annotations(self.index, shuffle_labels,
                        np.random.default_rng(seed))
    self._features_path = features_path
    self._features = None

  @property
  def features(self):
    if self._features is None:
      self._features = np.load(self._features_path, mmap_mode='r')
    return self._features

  def __getstate__(self):
    return {**self.__dict__, '_features': None}

  def __len__(self):
    return len(self.index['video_ids'])

  def __getitem__(self, i):
    steps = self.index['step_offsets'][i:i + 2]
    instances = self.index['instance_offsets'][i:i + 2]
    return {
        'features': self.features[steps[0]:steps[1]],
        'video_id': str(self.index['video_ids'][i]),
        'fps': float(self.index['fps'][i]),
        'num_frames': int(self.index['num_frames'][i]),
        'segments': self.index['segments'][instances[0]:instances[1]],
        'labels': self.index['labels'][instances[0]:instances[1]],
    }

  @property
  def feature_dim(self):
    return self.features.shape[1]


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  """How videos become the detector's fixed-shape windows."""
  window_size: int  # L, steps.
  max_instances: int  # K, instances kept per window.
  frame_stride: int  # Frames per step.
  # (52,) int: the detector's output index of each class, -1 if not trained.
  class_index: np.ndarray

  @classmethod
  def of(cls, detection_config, classes):
    class_index = np.full(labels.NUM_ACTIONS, -1, np.int64)
    class_index[list(classes)] = np.arange(len(classes))
    return cls(window_size=detection_config.window_size,
               max_instances=detection_config.max_instances,
               frame_stride=detection_config.frame_stride,
               class_index=class_index)


def window_starts(num_video_steps, window_size, stride):
  """First steps of the windows that cover a video, the last flush with its
  end (a video no longer than a window is one window, padded)."""
  if num_video_steps <= window_size:
    return [0]
  starts = list(range(0, num_video_steps - window_size, stride))
  return starts + [num_video_steps - window_size]


def window_example(video, start, spec):
  """The window of `video` that starts at step `start`.

  Returns:
    `features` float32 `(L, C)` (zero past the video's end), `mask` bool
    `(L,)`, and the instances visible in the window, clipped to it, in steps
    from its start, padded to K: `segments` float32 `(K, 2)`, `labels` int32
    `(K,)` (detector indices), `valid` bool `(K,)`. Instances of classes not
    trained, and any past the K-th, are left out.
  """
  size = spec.window_size
  features = np.asarray(video['features'][start:start + size], np.float32)
  length = len(features)
  window = {'features': np.zeros((size, features.shape[1]), np.float32),
            'mask': np.arange(size) < length,
            **window_instances(video, start, length, spec)}
  window['features'][:length] = features
  return window


def window_instances(video, start, length, spec):
  """The instances of `video` in its window from step `start` with `length`
  real steps: clipped to them, in steps from `start`, padded to K.

  Returns:
    `segments` float32 `(K, 2)`, `labels` int32 `(K,)` (detector indices),
    `valid` bool `(K,)`. Instances of classes not trained, and any past the
    K-th, are left out.
  """
  instances = {'segments': np.zeros((spec.max_instances, 2), np.float32),
               'labels': np.zeros(spec.max_instances, np.int32),
               'valid': np.zeros(spec.max_instances, bool)}
  steps = (np.asarray(video['segments'], np.float64) * video['fps'] /
           spec.frame_stride - start)
  steps = np.clip(steps, 0, length)
  labels = spec.class_index[np.asarray(video['labels'], np.int64)]
  keep = np.flatnonzero((steps[:, 1] > steps[:, 0]) &
                        (labels >= 0))[:spec.max_instances]
  instances['segments'][:len(keep)] = steps[keep]
  instances['labels'][:len(keep)] = labels[keep]
  instances['valid'][:len(keep)] = True
  return instances


class TrainWindow(grain.transforms.RandomMap):
  """A video to a random window of it (uniform start)."""

  def __init__(self, spec):
    self.spec = spec

  def random_map(self, element, rng):
    last_start = max(len(element['features']) - self.spec.window_size, 0)
    return window_example(element, int(rng.integers(last_start + 1)),
                          self.spec)


def _process_range(size, process_index, process_count):
  """This process' contiguous share of `size` items."""
  return (size * process_index // process_count,
          size * (process_index + 1) // process_count)


def make_train_iterator(source, window, *, per_process_batch_size, seed,
                        process_index, process_count):
  """An endless, checkpointable iterator of this process' training windows.

  Args:
    source: the training videos: `SplitFeatures`, or the records that
      end-to-end training reads (`records.Mma52Records`).
    window: a grain `RandomMapTransform` cutting one random window of a
      video: `TrainWindow(spec)` of features, or
      `frame_windows.TrainFrameWindow` of frames.
    per_process_batch_size, seed, process_index, process_count: as named;
      each process reads its contiguous share of the videos.

  Returns:
    A `grain.DatasetIterator` of dicts of the window's arrays with a leading
    batch dimension B; epochs (one window per video) reshuffled. The same
    seed gives the same batches.
  """
  first, stop = _process_range(len(source), process_index, process_count)
  process_seed = int(np.random.SeedSequence(
      [seed, process_index]).generate_state(1)[0])
  dataset = (
      grain.MapDataset.source(source)[first:stop]
      .shuffle(seed=process_seed)
      .random_map(window, seed=process_seed)
      .repeat()
      .to_iter_dataset(grain.ReadOptions(
          num_threads=1, prefetch_buffer_size=per_process_batch_size))
      .batch(per_process_batch_size, drop_remainder=True))
  return iter(dataset)


def eval_windows(split_features, spec, window_stride):
  """`(video index, first step)` of every window of every video, in order."""
  return [(video, start) for video in range(len(split_features))
          for start in window_starts(
              len(split_features[video]['features']), spec.window_size,
              window_stride)]


def make_eval_batches(split_features, spec, windows, *,
                      per_process_batch_size, process_index, process_count):
  """This process' share of `windows`, in padded batches (one pass).

  Every process yields `ceil(ceil(W / processes) / B)` batches.

  Yields:
    Dicts: `features` float32 `(B, L, C)`, `mask` bool `(B, L)`, `window`
    int32 `(B,)` (index into `windows`; -1 on padding rows), `valid` bool
    `(B,)`.
  """
  first, stop = _process_range(len(windows), process_index, process_count)
  num_batches = math.ceil(math.ceil(len(windows) / process_count) /
                          per_process_batch_size)
  ids = list(range(first, stop))
  ids += [-1] * (num_batches * per_process_batch_size - len(ids))
  for batch in range(num_batches):
    rows = ids[batch * per_process_batch_size:
               (batch + 1) * per_process_batch_size]
    examples = []
    for row in rows:
      video, start = windows[max(row, 0)]
      examples.append(window_example(split_features[video], start, spec))
    yield {'features': np.stack([e['features'] for e in examples]),
           'mask': np.stack([e['mask'] for e in examples]) &
                   (np.array(rows) >= 0)[:, None],
           'window': np.array(rows, np.int32),
           'valid': np.array(rows) >= 0}
