"""Frame sampling and augmentation: small pure functions on numpy arrays.

They follow the official MANet pipeline (mmaction2 0.24 `SampleFrames`,
`Resize`, `MultiScaleCrop`, `Flip`, `CenterCrop`) as DESIGN.md states it.
Frames are uint8 `(T, H, W, 3)`; randomness comes from the
`np.random.Generator` that grain hands to each example.
"""

import cv2
import numpy as np

# MultiScaleCrop's 13 fixed offsets, in (w_step, h_step) units.
CROP_OFFSET_STEPS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2),
                     (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))


def sample_train_indices(num_frames, num_segments, rng):
  """TSN training sampling: one random frame per segment, `(num_segments,)`.

  mmaction2 `SampleFrames(clip_len=1, num_clips=num_segments)` in train mode,
  including its final `mod num_frames` (which only matters for clips shorter
  than `num_segments`).
  """
  average = num_frames // num_segments
  if average > 0:
    indices = (np.arange(num_segments) * average +
               rng.integers(average, size=num_segments))
  elif num_frames > num_segments:
    indices = np.sort(rng.integers(num_frames, size=num_segments))
  else:
    indices = np.around(np.arange(num_segments) * num_frames / num_segments)
  return indices.astype(np.int64) % num_frames


def sample_test_indices(num_frames, num_segments, num_clips=1):
  """TSN test sampling: segment centres, `(num_clips * num_segments,)`.

  With `avg = num_frames / num_segments`, clip c of C takes
  `int(arange(T) * avg + avg * (2c + 1) / (2C))`: for one clip the official
  `avg / 2` offset, for several clips offsets evenly spread in each segment.
  Clips are consecutive in the result.
  """
  average = num_frames / num_segments
  offsets = average * (2 * np.arange(num_clips) + 1) / (2 * num_clips)
  indices = np.arange(num_segments)[None, :] * average + offsets[:, None]
  return indices.astype(np.int64).reshape(-1) % num_frames


def resize_short_side(frames, size):
  """Resizes `(T, H, W, 3)` frames so that min(H, W) == size, ratio kept.

  Bilinear; the long side is rounded as mmcv's `rescale_size` does. Frames
  already at that size are returned as they are.
  """
  height, width = frames.shape[1:3]
  scale = size / min(height, width)
  new_width, new_height = int(width * scale + 0.5), int(height * scale + 0.5)
  return resize(frames, new_height, new_width)


def resize(frames, height, width):
  """Resizes `(T, H, W, 3)` frames to `(T, height, width, 3)`, bilinear."""
  if frames.shape[1:3] == (height, width):
    return frames
  return np.stack([
      cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
      for frame in frames
  ])


def multi_scale_crop_box(height, width, rng, image_size,
                         scales=(1.0, 0.875, 0.75, 0.66), max_distort=1):
  """Draws one MultiScaleCrop box for a `height` x `width` frame.

  `base = min(height, width)`; crop sizes `int(base * s)` for s in `scales`;
  a (w, h) pair is drawn from the pairs whose scale indices differ by at most
  `max_distort`; each side is snapped to `image_size` when it is less than 3
  from it (mmaction2: `abs(size - input_size) < 3`); the offset is drawn
  from the 13 fixed grid positions `CROP_OFFSET_STEPS` with
  `w_step = (width - w) // 4`, `h_step = (height - h) // 4`.

  Returns:
    `(top, left, crop_height, crop_width)`.
  """
  base = min(height, width)
  sizes = [int(base * scale) for scale in scales]
  candidates = [(crop_width, crop_height)
                for i, crop_height in enumerate(sizes)
                for j, crop_width in enumerate(sizes)
                if abs(i - j) <= max_distort]
  crop_width, crop_height = candidates[rng.integers(len(candidates))]
  if abs(crop_width - image_size) < 3:
    crop_width = image_size
  if abs(crop_height - image_size) < 3:
    crop_height = image_size
  w_step, h_step = (width - crop_width) // 4, (height - crop_height) // 4
  x_steps, y_steps = CROP_OFFSET_STEPS[rng.integers(len(CROP_OFFSET_STEPS))]
  return y_steps * h_step, x_steps * w_step, crop_height, crop_width


def crop(frames, box):
  """Crops `(T, H, W, 3)` frames to `box = (top, left, height, width)`."""
  top, left, height, width = box
  return frames[:, top:top + height, left:left + width]


def center_crop_box(height, width, size):
  """mmaction2 CenterCrop box: `((H - size) // 2, (W - size) // 2, size, size)`."""
  return (height - size) // 2, (width - size) // 2, size, size


def center_crop(frames, size):
  """Centre `size` x `size` crop of `(T, H, W, 3)` frames."""
  return crop(frames, center_crop_box(*frames.shape[1:3], size))


def flip(frames):
  """Horizontal flip of `(T, H, W, 3)` frames."""
  return frames[:, :, ::-1]


def augment_train_clip(frames, rng, *, image_size, resize_short_side_to,
                       scales, max_distort, flip_probability):
  """The official train augmentation, one draw for the whole clip.

  Resize the short side to `resize_short_side_to`, multi-scale crop, resize
  the crop to `image_size` x `image_size` (ratio not kept), flip with
  `flip_probability`. `(T, H, W, 3)` uint8 in, `(T, S, S, 3)` uint8 out.
  """
  frames = resize_short_side(frames, resize_short_side_to)
  box = multi_scale_crop_box(*frames.shape[1:3], rng, image_size, scales,
                             max_distort)
  frames = resize(crop(frames, box), image_size, image_size)
  if rng.random() < flip_probability:
    frames = flip(frames)
  return np.ascontiguousarray(frames)


def eval_clip(frames, *, image_size, resize_short_side_to):
  """Eval preprocessing: resize the short side, centre crop. `(T, S, S, 3)`."""
  frames = resize_short_side(frames, resize_short_side_to)
  return np.ascontiguousarray(center_crop(frames, image_size))


def preprocess_eval_clip(frames, num_segments, data_config):
  """A decoded video as eval sees it: uint8 `(C*T, S, S, 3)`.

  Samples `data_config.eval_num_clips` (C) clips of `num_segments` (T)
  segment-centre frames from `frames` (uint8 `(N, H, W, 3)`, all frames of a
  video), resizes the short side to `data_config.resize_short_side` and
  centre-crops `data_config.image_size` (S). The predictor uses this so that
  it sees a video exactly as evaluation does.
  """
  indices = sample_test_indices(len(frames), num_segments,
                                data_config.eval_num_clips)
  return eval_clip(frames[indices], image_size=data_config.image_size,
                   resize_short_side_to=data_config.resize_short_side)
