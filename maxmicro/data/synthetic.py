"""A fake MA-52: real H.264 mp4 files in the official layout, written in seconds.

Each of the 52 classes is a small bright blob moving over a textured, noisy
background. Where it moves says the body part (a region of the portrait frame
per body part); how it moves says the action within the part: the axis of the
motion (4 angles) and its kind (1 or 2 back-and-forth cycles per clip, a
circle, or a pulse in place). A single frame shows the region and, away from
the centre, the axis; telling the kinds apart needs several frames, so a
frame-level model cannot get every class right while a temporal one can.
"""

import pathlib

import cv2
import numpy as np

from maxmicro import labels
from maxmicro.data import video

# Region centre (x, y) of each body part, as fractions of (width, height).
_BODY_PART_CENTRES = (
    (0.50, 0.50),  # body
    (0.50, 0.17),  # head
    (0.22, 0.52),  # upper limb
    (0.50, 0.85),  # lower limb
    (0.78, 0.52),  # body-hand
    (0.22, 0.17),  # head-hand
    (0.78, 0.85),  # leg-hand
)
# Blob colour of each body part (RGB).
_BODY_PART_COLOURS = ((250, 240, 60), (250, 80, 80), (80, 250, 80),
                      (80, 160, 250), (250, 140, 20), (240, 80, 240),
                      (60, 240, 240))
_SPLITS = (('train', 'videos_train', 'train_list_videos.txt'),
           ('val', 'videos_val', 'val_list_videos.txt'),
           ('test', 'videos_test', 'test_list_videos.txt'))


def class_motion(action_id):
  """(body part, axis angle in radians, kind) of a class; kind in 0..3.

  Kinds: 0 one back-and-forth cycle, 1 two cycles, 2 a circle (an ellipse
  along the axis), 3 a pulse (the blob grows and shrinks in place, with a
  small drift along the axis).
  """
  body_part = int(labels.ACTION_TO_BODY[action_id])
  index_in_part = action_id - int(
      np.flatnonzero(labels.ACTION_TO_BODY == body_part)[0])
  return body_part, (index_in_part % 4) * np.pi / 4, index_in_part // 4


def render_clip(action_id, *, size, num_frames, rng):
  """Renders one clip of class `action_id`: uint8 `(T, H, W, 3)`."""
  width, height = size
  body_part, angle, kind = class_motion(action_id)
  # Background: smooth random texture plus stripes, fixed over the clip.
  coarse = rng.uniform(40, 200, size=(6, 5, 3)).astype(np.float32)
  background = cv2.resize(coarse, (width, height),
                          interpolation=cv2.INTER_CUBIC)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  stripes = 18 * np.sin(xx * rng.uniform(0.3, 0.8) + yy * rng.uniform(0, 0.5))
  background += stripes[..., None]

  # Motion, with per-video jitter of phase, amplitude and centre.
  time = (np.arange(num_frames) + 0.5) / num_frames
  phase = 2 * np.pi * (time + rng.uniform(-0.06, 0.06))
  scale = min(width, height)
  amplitude = 0.2 * scale * rng.uniform(0.85, 1.15)
  radius = 0.09 * scale * rng.uniform(0.9, 1.1)
  radii = np.full(num_frames, radius)
  if kind == 0:
    along, across = np.sin(phase), np.zeros_like(phase)
  elif kind == 1:
    along, across = np.sin(2 * phase), np.zeros_like(phase)
  elif kind == 2:
    along, across = np.cos(phase), 0.6 * np.sin(phase)
  else:
    along, across = 0.3 * np.sin(phase), np.zeros_like(phase)
    radii = radius * (1 + 0.6 * np.sin(2 * phase))
  centre_x, centre_y = _BODY_PART_CENTRES[body_part]
  centre_x = centre_x * width + rng.uniform(-0.03, 0.03) * scale
  centre_y = centre_y * height + rng.uniform(-0.03, 0.03) * scale
  direction = np.array([np.cos(angle), np.sin(angle)])
  normal = np.array([-direction[1], direction[0]])
  offsets = amplitude * (along[:, None] * direction + across[:, None] * normal)
  blob_x = centre_x + offsets[:, 0]  # (T,)
  blob_y = centre_y + offsets[:, 1]

  distance = np.sqrt((xx[None] - blob_x[:, None, None])**2 +
                     (yy[None] - blob_y[:, None, None])**2)  # (T, H, W)
  alpha = np.clip(radii[:, None, None] + 0.5 - distance, 0, 1)[..., None]
  colour = np.asarray(_BODY_PART_COLOURS[body_part], np.float32)
  frames = background[None] * (1 - alpha) + colour * alpha
  frames += rng.normal(0, 6, size=frames.shape).astype(np.float32)
  return np.clip(frames, 0, 255).astype(np.uint8)


def _split_counts(videos_per_class):
  if isinstance(videos_per_class, int):
    held_out = max(1, videos_per_class // 2)
    return {'train': videos_per_class, 'val': held_out, 'test': held_out}
  train, val, test = videos_per_class
  return {'train': train, 'val': val, 'test': test}


def write_fake_ma52(root, videos_per_class=2, size=(80, 96), num_frames=24,
                    seed=0):
  """Writes a fake MA-52 in the official on-disk layout under `root`.

  `root` gets `videos_{train,val,test}/` of H.264 mp4 files, the three
  `*_list_videos.txt` lists (`<file>.mp4 <action_id>`, CRLF line endings, the
  test list's last line without one, test labels a placeholder 0, as in the
  official lists) and `label_name.txt`.

  Args:
    root: directory to write (created if needed).
    videos_per_class: videos of each of the 52 classes in train; val and test
      get half as many (at least 1). A (train, val, test) triple sets each.
    size: (width, height) of the frames; even numbers. Portrait by default,
      like MA-52's 1080x1296.
    num_frames: frames per video, or a (low, high) range drawn per video
      (inclusive), like MA-52's 45-75.
    seed: everything written is a function of the arguments.

  Returns:
    `root` as a `pathlib.Path`.
  """
  root = pathlib.Path(root)
  rng = np.random.default_rng(seed)
  counts = _split_counts(videos_per_class)
  for split, video_dir, list_name in _SPLITS:
    (root / video_dir).mkdir(parents=True, exist_ok=True)
    videos = [(action_id, index) for action_id in range(labels.NUM_ACTIONS)
              for index in range(counts[split])]
    if split == 'test':  # Shuffled, so that test order does not give labels.
      videos = [videos[i] for i in rng.permutation(len(videos))]
    lines = []
    for action_id, index in videos:
      if isinstance(num_frames, int):
        length = num_frames
      else:
        length = int(rng.integers(num_frames[0], num_frames[1] + 1))
      frames = render_clip(action_id, size=size, num_frames=length, rng=rng)
      if split == 'test':  # The official test list holds placeholder labels.
        name, listed_label = f'test{len(lines):04d}.mp4', 0
      else:
        name = f'{index:04d}_{action_id:02d}_{split}.mp4'
        listed_label = action_id
      video.write_video(root / video_dir / name, frames)
      lines.append(f'{name} {listed_label}')
    text = '\r\n'.join(lines)
    if split != 'test':  # The official test list ends without a newline.
      text += '\r\n'
    (root / list_name).write_bytes(text.encode())
  names = '\n'.join(
      f'{i}\t{name}' for i, name in enumerate(labels.ACTION_NAMES))
  (root / 'label_name.txt').write_text(names + '\n')
  return root
