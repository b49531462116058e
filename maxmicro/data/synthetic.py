"""Fake MA-52 and MMA-52: real H.264 mp4 files in the official layouts.

Each of the 52 classes is a small bright blob moving over a textured, noisy
background. Where it moves says the body part (a region of the portrait frame
per body part); how it moves says the action within the part: the axis of the
motion (4 angles) and its kind (1 or 2 back-and-forth cycles per clip, a
circle, or a pulse in place). A single frame shows the region and, away from
the centre, the axis; telling the kinds apart needs several frames, so a
frame-level model cannot get every class right while a temporal one can.

`write_fake_ma52` writes one trimmed clip per video (one motion period per
clip); `write_fake_mma52` writes untrimmed videos in which several instances,
most of them overlapping, each draw their class's blob (one period every
0.7-0.9 s) exactly while they are active, different body parts side by side.
"""

import json
import pathlib

import cv2
import numpy as np

from maxmicro import labels
from maxmicro.data import mma52_layout
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


def _background(width, height, rng):
  """A smooth random texture plus stripes: float32 `(H, W, 3)`."""
  coarse = rng.uniform(40, 200, size=(6, 5, 3)).astype(np.float32)
  background = cv2.resize(coarse, (width, height),
                          interpolation=cv2.INTER_CUBIC)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  stripes = 18 * np.sin(xx * rng.uniform(0.3, 0.8) + yy * rng.uniform(0, 0.5))
  return background + stripes[..., None]


def _blob_path(action_id, phase, *, size, amplitude, radius, rng):
  """Where the blob of `action_id` is at each `phase` (radians, `(T,)`).

  Returns:
    (x, y, radii), each `(T,)` in pixels: the motion of `class_motion` about
    the body part's region centre (jittered by up to 3% of the short side).
  """
  width, height = size
  body_part, angle, kind = class_motion(action_id)
  radii = np.full(len(phase), radius)
  if kind == 0:
    along, across = np.sin(phase), np.zeros_like(phase)
  elif kind == 1:
    along, across = np.sin(2 * phase), np.zeros_like(phase)
  elif kind == 2:
    along, across = np.cos(phase), 0.6 * np.sin(phase)
  else:
    along, across = 0.3 * np.sin(phase), np.zeros_like(phase)
    radii = radius * (1 + 0.6 * np.sin(2 * phase))
  scale = min(width, height)
  centre_x, centre_y = _BODY_PART_CENTRES[body_part]
  centre_x = centre_x * width + rng.uniform(-0.03, 0.03) * scale
  centre_y = centre_y * height + rng.uniform(-0.03, 0.03) * scale
  direction = np.array([np.cos(angle), np.sin(angle)])
  normal = np.array([-direction[1], direction[0]])
  offsets = amplitude * (along[:, None] * direction + across[:, None] * normal)
  return centre_x + offsets[:, 0], centre_y + offsets[:, 1], radii


def _draw_blob(frames, action_id, blob_x, blob_y, radii):
  """`frames` (float `(T or 1, H, W, 3)`) with the class's blob drawn in."""
  height, width = frames.shape[1:3]
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  distance = np.sqrt((xx[None] - blob_x[:, None, None])**2 +
                     (yy[None] - blob_y[:, None, None])**2)  # (T, H, W)
  alpha = np.clip(radii[:, None, None] + 0.5 - distance, 0, 1)[..., None]
  body_part = class_motion(action_id)[0]
  colour = np.asarray(_BODY_PART_COLOURS[body_part], np.float32)
  return frames * (1 - alpha) + colour * alpha


def _add_noise(frames, rng):
  """`frames` plus per-pixel noise (sd 6), as uint8."""
  frames = frames + rng.normal(0, 6, size=frames.shape).astype(np.float32)
  return np.clip(frames, 0, 255).astype(np.uint8)


def render_clip(action_id, *, size, num_frames, rng):
  """Renders one clip of class `action_id`: uint8 `(T, H, W, 3)`."""
  width, height = size
  background = _background(width, height, rng)  # Fixed over the clip.
  # One motion period over the clip, with per-video jitter of phase,
  # amplitude and centre.
  time = (np.arange(num_frames) + 0.5) / num_frames
  phase = 2 * np.pi * (time + rng.uniform(-0.06, 0.06))
  scale = min(width, height)
  amplitude = 0.2 * scale * rng.uniform(0.85, 1.15)
  radius = 0.09 * scale * rng.uniform(0.9, 1.1)
  path = _blob_path(action_id, phase, size=size, amplitude=amplitude,
                    radius=radius, rng=rng)
  return _add_noise(_draw_blob(background[None], action_id, *path), rng)


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


# The fake MMA-52: untrimmed videos with overlapping instances.
_MMA52_SPLITS = ('train', 'val', 'test')
# Chance that an instance after the second overlaps an earlier one (the
# second always overlaps the first); MMA-52 has 86-88% overlapping instances.
_OVERLAP_PROBABILITY = 0.85


def _sample_instances(num_frames, *, count, frames_range, classes, rng):
  """`count` (start_frame, end_frame, class) of a video of `num_frames`.

  Instances are active on frames start <= i < end, end <= num_frames - 1 (as
  in MMA-52's CSVs). The second overlaps the first and the later ones most
  often overlap an earlier one; a video's classes are distinct, and an
  overlapping instance takes a body part that its overlaps do not use
  whenever `classes` allows, so that the blobs do not hide each other.
  """
  low, high = frames_range[0], min(frames_range[1], num_frames - 1)
  instances = []
  for index in range(count):
    # Skewed log-uniform: a median of about 80 of (8, 450), as in MMA-52.
    length = int(round(low * (high / low)**(rng.uniform()**0.7)))
    if index == 1 or (index > 1 and rng.random() < _OVERLAP_PROBABILITY):
      start, end, _ = instances[0 if index == 1 else rng.integers(index)]
      # Overlap by at least a quarter of the shorter of the two.
      overlap = max(1, min(length, end - start) // 4)
      first = max(0, start - length + overlap)
      last = min(num_frames - 1 - length, end - overlap)
    else:
      first, last = 0, num_frames - 1 - length
    start = int(rng.integers(first, last + 1))
    end = start + length
    used = {instance[2] for instance in instances}
    busy_parts = {class_motion(instance[2])[0] for instance in instances
                  if instance[0] < end and start < instance[1]}
    unused = [c for c in classes if c not in used]
    free = [c for c in unused if class_motion(c)[0] not in busy_parts]
    instances.append((start, end, int(rng.choice(free or unused))))
  return instances


def render_untrimmed(instances, *, size, num_frames, fps, rng):
  """Renders a video of (start_frame, end_frame, class) instances.

  Each instance's blob moves as `class_motion` says (period 0.7-0.9 s, phase
  random) on frames start <= i < end, and nowhere else; instances active
  together are drawn together.

  Returns:
    uint8 `(num_frames, H, W, 3)`.
  """
  width, height = size
  scale = min(width, height)
  frames = np.repeat(_background(width, height, rng)[None], num_frames, axis=0)
  for start, end, action_id in instances:
    period = fps * rng.uniform(0.7, 0.9)  # Frames.
    phase = 2 * np.pi * ((np.arange(end - start) + 0.5) / period +
                         rng.uniform(0, 1))
    path = _blob_path(action_id, phase, size=size,
                      amplitude=0.15 * scale * rng.uniform(0.85, 1.15),
                      radius=0.08 * scale * rng.uniform(0.9, 1.1), rng=rng)
    frames[start:end] = _draw_blob(frames[start:end], action_id, *path)
  return _add_noise(frames, rng)


def _draw_range(value, rng):
  """`value` if an int, else an int drawn from the inclusive (low, high)."""
  if isinstance(value, int):
    return value
  return int(rng.integers(value[0], value[1] + 1))


def write_fake_mma52(root, videos_per_split=(30, 15, 15), size=(96, 96),
                     num_frames=(146, 451), instances_per_video=(1, 5),
                     instance_frames=(8, 450), classes=None, fps=30,
                     write_json=True, seed=0):
  """Writes a fake MMA-52 in the official on-disk layout under `root`.

  `root` gets `{train,val,test}/<video_id>.mp4` (H.264) and
  `anns/{train,val,test}.csv` as the official files are written: header
  `id,video_id,start_frame,end_frame,class,total_frames,fps`, LF endings, fps
  `30.0` in train and val; test.csv holds one placeholder row per video
  (frames 0-20, a dummy class, fps `30`, no final newline), while its videos
  do hold instances. With `write_json`, also `mmad.json` as the challenge's
  csv2json.py writes it (seconds, rounded to 4 places).

  Args:
    root: directory to write (created if needed).
    videos_per_split: videos in train; val and test get half as many (at
      least 1). A (train, val, test) triple sets each.
    size: (width, height) of the frames; even numbers.
    num_frames: frames per video, or an inclusive (low, high) range drawn per
      video; at least 21 (test.csv's placeholder spans frames 0-20).
    instances_per_video: inclusive (low, high) range of instances per video
      (at most the number of `classes`).
    instance_frames: inclusive (low, high) range of instance lengths, capped
      by the video's length; skewed towards short ones (median about 80 for
      (8, 450), as in MMA-52).
    classes: class ids (0-51) to draw from; None: all 52. Fewer classes on
      distinct body parts make an easier set.
    fps: frames per second, or a tuple to draw from per video (e.g. (29, 30)).
    write_json: also write `mmad.json`.
    seed: everything written is a function of the arguments.

  Returns:
    `root` as a `pathlib.Path`.
  """
  root = pathlib.Path(root)
  classes = list(range(labels.NUM_ACTIONS) if classes is None else classes)
  if not all(0 <= c < labels.NUM_ACTIONS for c in classes) or not classes:
    raise ValueError(f'classes must be ids in 0..51, got {classes}.')
  if min(np.atleast_1d(num_frames)) <= max(20, instance_frames[0]):
    raise ValueError(f'num_frames {num_frames} must exceed 20 and the '
                     f'shortest instance ({instance_frames[0]} frames).')
  rng = np.random.default_rng(seed)
  counts = _split_counts(videos_per_split)  # train, val, test
  fps_choices = (fps,) if isinstance(fps, int) else tuple(fps)
  (root / 'anns').mkdir(parents=True, exist_ok=True)
  database = {}
  for split in _MMA52_SPLITS:
    (root / split).mkdir(exist_ok=True)
    rows = []
    for index in range(counts[split]):
      video_id = f'{split}{index:04d}'
      length = _draw_range(num_frames, rng)
      video_fps = int(rng.choice(fps_choices))
      count = min(_draw_range(instances_per_video, rng), len(classes))
      instances = _sample_instances(length, count=count,
                                    frames_range=instance_frames,
                                    classes=classes, rng=rng)
      frames = render_untrimmed(instances, size=size, num_frames=length,
                                fps=video_fps, rng=rng)
      video.write_video(root / split / f'{video_id}.mp4', frames,
                        fps=video_fps)
      if split == 'test':  # A placeholder, like the official test.csv.
        instances = [(0, 20, index % (labels.NUM_ACTIONS - 1) + 1)]
      fps_text = f'{video_fps}' if split == 'test' else f'{video_fps:.1f}'
      rows += [f'{len(rows) + i},{video_id},{start},{end},{action_id},'
               f'{length},{fps_text}'
               for i, (start, end, action_id) in enumerate(instances)]
      database[video_id] = {
          'subset': split, 'duration': round(length / video_fps, 4),
          'actions': [[action_id, round(start / video_fps, 4),
                       round(end / video_fps, 4)]
                      for start, end, action_id in instances]}
    text = '\n'.join([mma52_layout.HEADER] + rows)
    if split != 'test':  # The official test.csv ends without a newline.
      text += '\n'
    (root / 'anns' / f'{split}.csv').write_bytes(text.encode())
  if write_json:
    with open(root / 'mmad.json', 'w') as file:
      json.dump(database, file, indent=4, separators=(',', ':'))
  return root
