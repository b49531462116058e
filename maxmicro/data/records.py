"""Fast reads of built MA-52 records: parse the raw example, decode on demand.

Indexing a TFDS data source decodes every frame of a clip (45-75 JPEGs) when
training needs 8. `Ma52Records` returns the raw JPEG bytes of the same
records (the layout of `tfds_builders/ma52` is unchanged) and
`decode_frames` decodes only the frames sampled.
"""

import numpy as np
import simplejpeg
from tensorflow_datasets.proto import tf_example_pb2

from maxmicro.data import build


class Ma52Records:
  """Random access to one (sub)split of a built `ma52`, frames still JPEG.

  `records[i]` is a dict: `jpegs` (list of T JPEG `bytes`), `label`,
  `body_label` (ints) and `video_id` (str). Picklable, so grain worker
  processes can open it.
  """

  def __init__(self, data_dir, builder_config, split):
    builder = build.load_builder(data_dir, builder_config)
    if not builder.is_prepared():
      raise FileNotFoundError(
          f'ma52/{builder_config} is not built under {builder.data_dir}; '
          f'build it with maxmicro.data.build.prepare_ma52 (or `tfds build '
          f'tfds_builders/ma52 --config={builder_config}`).')
    # The raw array_record source under TFDS' one: bytes, no decoding.
    self._raw = builder.as_data_source(split=split).data_source
    self.split = split

  def __len__(self):
    return len(self._raw)

  def __getitem__(self, index):
    return parse_record(self._raw[index])

  def __repr__(self):
    return f'Ma52Records(split={self.split!r}, size={len(self)})'


def parse_record(serialized):
  """A serialized `ma52` example as a dict of JPEG bytes and plain values."""
  feature = tf_example_pb2.Example.FromString(serialized).features.feature
  return {
      'jpegs': list(feature['video'].bytes_list.value),
      'label': int(feature['label'].int64_list.value[0]),
      'body_label': int(feature['body_label'].int64_list.value[0]),
      'video_id': feature['video_id'].bytes_list.value[0].decode(),
  }


def decode_frames(jpegs, indices):
  """Decodes the frames `indices` of a clip: uint8 `(len(indices), H, W, 3)`."""
  return np.stack([simplejpeg.decode_jpeg(jpegs[i], colorspace='RGB')
                   for i in indices])
