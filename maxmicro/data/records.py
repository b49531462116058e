"""Fast reads of built MA-52 and MMA-52 records: parse raw, decode on demand.

Indexing a TFDS data source decodes every frame of a video (45-75 JPEGs for
an MA-52 clip, 146-451 for an MMA-52 video) when training needs a few.
`Ma52Records` and `Mma52Records` return the raw JPEG bytes of the same
records (the layouts of `tfds_builders/ma52` and `tfds_builders/mma52` are
unchanged) and `decode_frames` decodes only the frames sampled.
"""

import numpy as np
import simplejpeg
from tensorflow_datasets.proto import tf_example_pb2

from maxmicro.data import build


class _Records:
  """Random access to one (sub)split of a built dataset, frames still JPEG.

  Subclasses set `dataset` (the TFDS name) and `parse` (serialized example
  to dict). Picklable, so grain worker processes can open it.
  """
  dataset = None
  parse = None

  def __init__(self, data_dir, builder_config, split):
    builder = build.load_builder(data_dir, builder_config,
                                 dataset=self.dataset)
    if not builder.is_prepared():
      raise FileNotFoundError(
          f'{self.dataset}/{builder_config} is not built under '
          f'{builder.data_dir}; build it with maxmicro.data.build.prepare_'
          f'{self.dataset} (or `tfds build tfds_builders/{self.dataset} '
          f'--config={builder_config}`).')
    # The raw array_record source under TFDS' one: bytes, no decoding.
    self._raw = builder.as_data_source(split=split).data_source
    self.split = split

  def __len__(self):
    return len(self._raw)

  def __getitem__(self, index):
    return self.parse(self._raw[index])

  def __repr__(self):
    return f'{type(self).__name__}(split={self.split!r}, size={len(self)})'


def parse_record(serialized):
  """A serialized `ma52` example as a dict of JPEG bytes and plain values."""
  feature = tf_example_pb2.Example.FromString(serialized).features.feature
  return {
      'jpegs': list(feature['video'].bytes_list.value),
      'label': int(feature['label'].int64_list.value[0]),
      'body_label': int(feature['body_label'].int64_list.value[0]),
      'video_id': feature['video_id'].bytes_list.value[0].decode(),
  }


def parse_mma52_record(serialized):
  """A serialized `mma52` example as a dict of JPEG bytes and arrays.

  Returns:
    `jpegs` (list of T JPEG `bytes`), `video_id` (str), `fps` (float),
    `num_frames` (int, T), `segments` (float32 `(K, 2)`, seconds) and
    `labels` (int32 `(K,)`; K = 0 in the unlabelled test split).
  """
  feature = tf_example_pb2.Example.FromString(serialized).features.feature
  return {
      'jpegs': list(feature['video'].bytes_list.value),
      'video_id': feature['video_id'].bytes_list.value[0].decode(),
      'fps': float(feature['fps'].float_list.value[0]),
      'num_frames': int(feature['num_frames'].int64_list.value[0]),
      'segments': np.array(feature['segments'].float_list.value,
                           np.float32).reshape(-1, 2),
      'labels': np.array(feature['labels'].int64_list.value, np.int32),
  }


class Ma52Records(_Records):
  """Random access to one (sub)split of a built `ma52`, frames still JPEG.

  `records[i]` is a dict: `jpegs` (list of T JPEG `bytes`), `label`,
  `body_label` (ints) and `video_id` (str). Picklable, so grain worker
  processes can open it.
  """
  dataset = 'ma52'
  parse = staticmethod(parse_record)


class Mma52Records(_Records):
  """Random access to one (sub)split of a built `mma52`, frames still JPEG.

  `records[i]` is `parse_mma52_record`'s dict. Picklable.
  """
  dataset = 'mma52'
  parse = staticmethod(parse_mma52_record)


def decode_frames(jpegs, indices):
  """Decodes the frames `indices` of a clip: uint8 `(len(indices), H, W, 3)`."""
  return np.stack([simplejpeg.decode_jpeg(jpegs[i], colorspace='RGB')
                   for i in indices])
