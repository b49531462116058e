"""Frame sampling and augmentation: small pure functions on numpy arrays.

They follow the official MANet pipeline (mmaction2 0.24 `SampleFrames`,
`Resize`, `MultiScaleCrop`, `Flip`, `CenterCrop`) as DESIGN.md states it, and
for the video-transformer recipe mmaction2 1.x's `RandomResizedCrop`,
`ColorJitter` and `RandomErasing` (`mmaction/datasets/transforms/
processing.py`), which draw nothing when they are off so that the ResNet
path's augmentations stay the same draw for draw.
Frames are uint8 `(T, H, W, 3)`; randomness comes from the
`np.random.Generator` that grain hands to each example.
"""

import cv2
import numpy as np

# `augment_train_clip`'s crops (config.data.train_crop).
TRAIN_CROPS = ('multi_scale', 'random_resized')

# MultiScaleCrop's 13 fixed offsets, in (w_step, h_step) units.
CROP_OFFSET_STEPS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2),
                     (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))


def sample_train_indices(num_frames, num_segments, rng, frame_interval=None):
  """Training sampling: `(num_segments,)` frame indices.

  With `frame_interval` None, TSN's: one random frame per segment, mmaction2
  `SampleFrames(clip_len=1, num_clips=num_segments)` in train mode,
  including its final `mod num_frames` (which only matters for clips shorter
  than `num_segments`). With an interval k, a 3D network's dense clip:
  `SampleFrames(clip_len=num_segments, frame_interval=k, num_clips=1)`, T
  frames k apart from a random start, wrapped around the video's end
  (`out_of_bound_opt='loop'`).
  """
  if frame_interval is not None:
    span = num_segments * frame_interval
    offset = (rng.integers(num_frames - span + 1) if num_frames > span - 1
              else 0)
    return _dense_clip(offset, num_frames, num_segments, frame_interval)
  average = num_frames // num_segments
  if average > 0:
    indices = (np.arange(num_segments) * average +
               rng.integers(average, size=num_segments))
  elif num_frames > num_segments:
    indices = np.sort(rng.integers(num_frames, size=num_segments))
  else:
    indices = np.around(np.arange(num_segments) * num_frames / num_segments)
  return indices.astype(np.int64) % num_frames


def _dense_clip(offsets, num_frames, clip_length, frame_interval):
  """Clips of `clip_length` frames `frame_interval` apart from each offset,
  consecutive and wrapped around the video's end: `(C * T,)` int64."""
  offsets = np.asarray(offsets, np.int64).reshape(-1, 1)
  indices = offsets + np.arange(clip_length) * frame_interval
  return indices.reshape(-1) % num_frames


def sample_test_indices(num_frames, num_segments, num_clips=1,
                        frame_interval=None):
  """Test sampling: `(num_clips * num_segments,)` frame indices.

  With `frame_interval` None, TSN's segment centres: with
  `avg = num_frames / num_segments`, clip c of C takes
  `int(arange(T) * avg + avg * (2c + 1) / (2C))`: for one clip the official
  `avg / 2` offset, for several clips offsets evenly spread in each segment.
  With an interval k, mmaction2 1.x's 3D test clips: T frames k apart,
  starting at `max_offset // 2` for one clip and at
  `round(c * max_offset / (C - 1))` for several (`max_offset` the frames
  left after one clip's span, at least 0), wrapped around the video's end.
  Clips are consecutive in the result.
  """
  if frame_interval is not None:
    max_offset = max(num_frames - num_segments * frame_interval, 0)
    if num_clips > 1:
      offsets = np.round(np.arange(num_clips) * max_offset / (num_clips - 1))
    else:
      offsets = np.array([max_offset // 2])
    return _dense_clip(offsets, num_frames, num_segments, frame_interval)
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


def random_resized_crop_box(height, width, rng, area_range=(0.08, 1.0),
                            aspect_range=(3 / 4, 4 / 3), max_attempts=10):
  """Draws one RandomResizedCrop box for a `height` x `width` frame.

  mmaction2's: `max_attempts` (area, aspect) pairs drawn at once, the aspect
  log-uniform, sides rounded; the first that fits is placed uniformly at
  random, else the centred square of the short side.

  Returns:
    `(top, left, crop_height, crop_width)`.
  """
  aspects = np.exp(rng.uniform(np.log(aspect_range[0]),
                               np.log(aspect_range[1]), max_attempts))
  areas = rng.uniform(*area_range, max_attempts) * height * width
  widths = np.round(np.sqrt(areas * aspects)).astype(np.int64)
  heights = np.round(np.sqrt(areas / aspects)).astype(np.int64)
  for crop_height, crop_width in zip(heights, widths):
    if crop_height <= height and crop_width <= width:
      left = rng.integers(0, width - crop_width + 1)
      top = rng.integers(0, height - crop_height + 1)
      return int(top), int(left), int(crop_height), int(crop_width)
  side = min(height, width)
  return (height - side) // 2, (width - side) // 2, side, side


# ITU-R 601 luma weights, as mmaction2's ColorJitter's grayscale.
_LUMA = np.array([0.2989, 0.587, 0.114], np.float32)


def color_jitter(frames, rng, brightness, contrast, saturation, hue):
  """mmaction2's ColorJitter: one draw of the four factors for the clip.

  Brightness, contrast and saturation factors are uniform in `1 -/+ x`, the
  hue shift in `-/+ hue` (a fraction of the hue circle, applied as OpenCV's
  0-179 hue plus `int(255 * h)`), applied in a random order. mmaction2 draws
  the order once per dataset worker; here once per clip, so that the order
  does not depend on how many workers run. In place on one float32 copy:
  the input pipeline's costliest step.
  """
  factors = (rng.uniform(1 - brightness, 1 + brightness),
             rng.uniform(1 - contrast, 1 + contrast),
             rng.uniform(1 - saturation, 1 + saturation),
             rng.uniform(-hue, hue))
  order = rng.permutation(4)
  video = frames.astype(np.float32)
  for op in order:
    factor = factors[op]
    if op == 3:
      if factor != 0:
        video = _shift_hue(video, int(factor * 255)).astype(np.float32)
    elif factor != 1:
      # Blend with black (brightness), the frame's mean luma (contrast) or
      # each pixel's luma (saturation).
      toward = None
      if op == 1:
        toward = (video @ _LUMA).mean(axis=(1, 2))[:, None, None, None]
      elif op == 2:
        toward = (video @ _LUMA)[..., None]
      video *= factor
      if toward is not None:
        video += (1 - factor) * toward
  return np.clip(video, 0, 255).astype(np.uint8)


def _shift_hue(video, offset):
  """Float RGB frames with OpenCV's 8-bit hue (0-179) shifted by `offset`."""
  frames = np.clip(video, 0, 255).astype(np.uint8)
  # All frames as one tall image: one OpenCV call each way.
  hsv = cv2.cvtColor(frames.reshape(-1, *frames.shape[2:]), cv2.COLOR_RGB2HSV)
  hsv[..., 0] = (hsv[..., 0].astype(np.int16) + offset) % 180
  return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(frames.shape)


def random_erase(frames, rng, probability, area_range=(0.02, 1 / 3),
                 aspect_range=(0.3, 1 / 0.3), fill=128):
  """mmaction2's RandomErasing ('const' mode): with `probability`, one box of
  `area_range` of the frame (aspect log-uniform) set to `fill` in every
  frame of the clip."""
  if rng.random() > probability:
    return frames
  height, width = frames.shape[1:3]
  aspect = np.exp(rng.uniform(np.log(aspect_range[0]),
                              np.log(aspect_range[1])))
  area = height * width * rng.uniform(*area_range)
  box_height = min(int(round(np.sqrt(area * aspect))), height)
  box_width = min(int(round(np.sqrt(area / aspect))), width)
  top = rng.integers(0, height - box_height) if height > box_height else 0
  left = rng.integers(0, width - box_width) if width > box_width else 0
  frames = frames.copy()
  frames[:, top:top + box_height, left:left + box_width] = fill
  return frames


def augment_train_clip(frames, rng, *, image_size, resize_short_side_to,
                       scales, max_distort, flip_probability,
                       train_crop='multi_scale', area_range=(0.08, 1.0),
                       aspect_range=(3 / 4, 4 / 3),
                       jitter=(0.0, 0.0, 0.0, 0.0), erase_probability=0.0,
                       erase_area_range=(0.02, 1 / 3)):
  """The train augmentation, one draw for the whole clip.

  Resize the short side to `resize_short_side_to`, crop (`train_crop`:
  'multi_scale', the official MANet `MultiScaleCrop` of `scales` and
  `max_distort`, or 'random_resized' of `area_range` and `aspect_range`),
  resize the crop to `image_size` x `image_size` (ratio not kept), colour
  jitter (`jitter`: brightness, contrast, saturation, hue; all 0 is off),
  random erasing with `erase_probability`, flip with `flip_probability`:
  the order of the MAC 2024 winner's pipeline. `(T, H, W, 3)` uint8 in,
  `(T, S, S, 3)` uint8 out.
  """
  frames = resize_short_side(frames, resize_short_side_to)
  if train_crop == 'random_resized':
    box = random_resized_crop_box(*frames.shape[1:3], rng, area_range,
                                  aspect_range)
  else:
    box = multi_scale_crop_box(*frames.shape[1:3], rng, image_size, scales,
                               max_distort)
  frames = resize(crop(frames, box), image_size, image_size)
  if any(jitter):
    frames = color_jitter(frames, rng, *jitter)
  if erase_probability:
    frames = random_erase(frames, rng, erase_probability, erase_area_range)
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
                                data_config.eval_num_clips,
                                data_config.frame_interval)
  return eval_clip(frames[indices], image_size=data_config.image_size,
                   resize_short_side_to=data_config.resize_short_side)
