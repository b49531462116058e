"""Top-k micro-actions of a video file with a trained checkpoint.

  predictor = predict.load('workdirs/demo')
  for row in predictor('clip.mp4'):
    print(row['code'], row['name'], row['body_name'], row['probability'])

A video of any size, length and frame rate is sampled as evaluation samples
(`transforms.sample_test_indices`: only those frames are converted from the
decoder's output, `video.read_sampled_frames`), then resized and cropped by
`transforms.eval_clip`, so the scores are those `run.py --mode=eval` gives
the same frames.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from maxmicro import checkpoint
from maxmicro import compile_cache
from maxmicro import evaluate
from maxmicro import labels
from maxmicro import metrics
from maxmicro import models
from maxmicro.data import transforms
from maxmicro.data import video as video_lib

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v')


class Predictor:
  """Scores videos with fixed model variables on one device."""

  def __init__(self, config, variables):
    self.config = config
    self.variables = jax.device_put(variables, jax.local_devices()[0])
    self._score = evaluate.make_score_fn(models.build_model(config),
                                         config.model.num_segments)
    self._scorers = {}  # Clip shape -> scorer (see `_scorer`).

  def preprocess(self, frames):
    """All frames of a video, uint8 `(N, H, W, 3)` -> `(C*T, S, S, 3)`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f'frames must be uint8 (N, H, W, 3), got '
                       f'{frames.dtype} {frames.shape}.')
    return transforms.preprocess_eval_clip(
        frames, self.config.model.num_segments, self.config.data)

  def read_clip(self, path):
    """A video file as `preprocess` sees it, decoding only what it samples.

    Equal to `preprocess(read_video(path))`.
    """
    frames = video_lib.read_sampled_frames(path, functools.partial(
        transforms.sample_test_indices,
        num_segments=self.config.model.num_segments,
        num_clips=self.config.data.eval_num_clips,
        frame_interval=self.config.data.frame_interval))
    return transforms.eval_clip(
        frames, image_size=self.config.data.image_size,
        resize_short_side_to=self.config.data.resize_short_side)

  def scores(self, video):
    """Action probabilities `(52,)` of a video path or its decoded frames."""
    if isinstance(video, (str, os.PathLike)):
      clip = self.read_clip(video)
    else:
      clip = self.preprocess(video)
    clip = jnp.asarray(clip)[None]
    return np.asarray(self._scorer(clip)(self.variables, clip)[0])

  def _scorer(self, clip):
    """The jitted scorer; with `compile_cache.enable()`, traced once ever."""
    if not compile_cache.enabled():
      return self._score
    if clip.shape not in self._scorers:
      self._scorers[clip.shape] = compile_cache.jit_exported(
          self._score, (self.variables, clip), name='predict',
          key=checkpoint.config_to_json(self.config))
    return self._scorers[clip.shape]

  def __call__(self, video, top_k=5):
    """The `top_k` actions of a video, best first.

    Args:
      video: a video file path, or uint8 `(N, H, W, 3)` decoded frames.
      top_k: how many actions to return.

    Returns:
      A list of dicts: `rank` (1-based), `action_id`, `code` (e.g. "C8"),
      `name`, `body_id`, `body_name`, `probability`.

    Raises:
      maxmicro.data.video.VideoError: the file is missing or not a video.
    """
    probabilities = self.scores(video)
    return [{
        'rank': rank + 1,
        'action_id': int(action),
        'code': labels.ACTION_CODES[action],
        'name': labels.ACTION_NAMES[action],
        'body_id': int(labels.ACTION_TO_BODY[action]),
        'body_name': labels.BODY_NAMES[labels.ACTION_TO_BODY[action]],
        'probability': float(probabilities[action]),
    } for rank, action in enumerate(metrics.top_k(probabilities[None],
                                                  top_k)[0])]


def load(checkpoint_dir, which='latest'):
  """A `Predictor` from a workdir (or its `checkpoints/` directory).

  Args:
    checkpoint_dir: a training workdir, or one `save_variables` wrote.
    which: 'latest', 'best' (validation top-1) or a step number.

  Raises:
    maxmicro.checkpoint.CheckpointError: no such checkpoint.
  """
  return from_checkpoint(*checkpoint.open_for_reading(checkpoint_dir, which))


def from_checkpoint(manager, step, config):
  """A `Predictor` of checkpoint `step` of an open manager (closed here).

  The variables restore as saved, without tracing the model for a target
  (`evaluate.restore_variables`): a CPU second saved per command.
  """
  try:
    variables = checkpoint.restore_saved_variables(manager, step)
  finally:
    manager.close()
  return Predictor(config, variables)


def find_videos(path):
  """A video file, or the video files of a folder (sorted).

  Raises:
    ValueError: the path does not exist, or a folder holds no videos.
  """
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise ValueError(f'--video={path!r} does not exist; give a video file or '
                     'a folder of them.')
  videos = sorted(os.path.join(path, name) for name in os.listdir(path)
                  if name.lower().endswith(VIDEO_EXTENSIONS))
  if not videos:
    raise ValueError(f'--video={path!r} is a folder without video files '
                     f'({", ".join(VIDEO_EXTENSIONS)}).')
  return videos


def format_text(path, rows):
  """A video's top-k as aligned text lines."""
  lines = [f'{path}:']
  lines += [f'  {row["rank"]}. {row["code"]:<4} {row["name"]:<34} '
            f'{"(" + row["body_name"] + ")":<12} '
            f'{100 * row["probability"]:6.2f}%'
            for row in rows]
  return '\n'.join(lines)


def format_json(results):
  """`{path: rows}` as JSON text."""
  return json.dumps(results, indent=1)
