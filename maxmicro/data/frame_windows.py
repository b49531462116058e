"""MMA-52 detection data for end-to-end training: windows of frames.

The end-to-end detector (`maxmicro.tasks.detection_end_to_end`) trains on
the frames that feature extraction (`maxmicro.detection.features`) would run
through the backbone. Step j of a video is its frame `j * frame_stride`,
preprocessed as evaluation does (short side resized, centre crop). A window
of L steps starts at a multiple of the backbone's clip length T and holds
`ceil(L / T) * T` step frames, so that its clips of T steps are exactly the
clips extraction cuts from the whole video (the temporal shift mixes the
same neighbours, and zero-fills at the same clip edges); the features of the
steps past L are dropped by the model. Steps past the video's end repeat its
last step frame, as extraction pads, and are masked. Only the frames a
window needs are decoded from the records' JPEGs.

Training batches come from `detection_pipeline.make_train_iterator` with
`TrainFrameWindow` (a random aligned window, its instances in steps, padded
to K), the pipeline of the feature windows.
"""

import dataclasses

import grain
import numpy as np

from maxmicro.data import detection_pipeline
from maxmicro.data import records as records_lib
from maxmicro.data import transforms


@dataclasses.dataclass(frozen=True)
class FrameWindowSpec:
  """How videos become windows of frames."""
  window: detection_pipeline.WindowSpec  # L, K, frame stride, classes.
  clip_steps: int  # T, the backbone's `num_segments`.
  image_size: int  # S, the backbone's crop.
  resize_short_side: int  # Before the centre crop.

  @property
  def frames_per_window(self):
    """`ceil(L / T) * T`: whole clips covering the window's L steps."""
    clips = -(-self.window.window_size // self.clip_steps)
    return clips * self.clip_steps

  @property
  def input_shape(self):
    """`(1, F, S, S, 3)`: one window's step frames, the model's input."""
    size = self.image_size
    return (1, self.frames_per_window, size, size, 3)


def aligned_starts(num_video_steps, window_size, clip_steps):
  """The first steps a training window may take: multiples of T, up to the
  first one from which the window reaches the video's end."""
  last_start = max(num_video_steps - window_size, 0)
  return np.arange(0, -(-last_start // clip_steps) * clip_steps + 1,
                   clip_steps)


def window_frame_indices(num_frames, start, spec):
  """Frame indices of the `frames_per_window` steps from `start`; steps past
  the video's last one repeat its frame (extraction's padding)."""
  stride = spec.window.frame_stride
  last_step = detection_pipeline.num_steps(num_frames, stride) - 1
  steps = np.arange(start, start + spec.frames_per_window)
  return np.minimum(steps, last_step) * stride


def frame_window_example(video, start, spec):
  """The window of `video` (a `parse_mma52_record` dict) from step `start`.

  Returns:
    `frames` uint8 `(F, S, S, 3)` with F = `spec.frames_per_window`, `mask`
    bool `(L,)` (False past the video's end), and `window_instances`'
    `segments` `(K, 2)` in steps, `labels` `(K,)`, `valid` `(K,)`.
  """
  num_frames = len(video['jpegs'])
  indices = window_frame_indices(num_frames, start, spec)
  unique, inverse = np.unique(indices, return_inverse=True)
  frames = transforms.eval_clip(
      records_lib.decode_frames(video['jpegs'], unique),
      image_size=spec.image_size,
      resize_short_side_to=spec.resize_short_side)[inverse]
  size = spec.window.window_size
  length = min(
      detection_pipeline.num_steps(num_frames, spec.window.frame_stride) -
      start, size)
  return {'frames': frames, 'mask': np.arange(size) < length,
          **detection_pipeline.window_instances(video, start, length,
                                                spec.window)}


class TrainFrameWindow(grain.transforms.RandomMap):
  """A video to a random clip-aligned window of it (uniform start)."""

  def __init__(self, spec):
    self.spec = spec

  def random_map(self, element, rng):
    starts = aligned_starts(
        detection_pipeline.num_steps(len(element['jpegs']),
                                     self.spec.window.frame_stride),
        self.spec.window.window_size, self.spec.clip_steps)
    return frame_window_example(element, int(rng.choice(starts)), self.spec)
