"""Reading and writing mp4 files with PyAV (no system ffmpeg needed).

`read_video` is how the TFDS builder decodes a clip, `read_sampled_frames`
how the predictor does (only the frames it samples become RGB);
`encode_video_frames` turns a decoded clip into the builder's stored frames;
`write_video` writes H.264 mp4 files for the synthetic data set.
"""

import os

import pickle

import av
import numpy as np
import simplejpeg

from maxmicro.data import transforms


class VideoError(Exception):
  """A video file is missing, not a video, corrupt, or holds no frames.

  The message is `'<path>: <what is wrong>'`; `path` and `what` hold the parts.
  """

  def __init__(self, path, what):
    super().__init__(f'{path}: {what}')
    self.path = path
    self.what = what


def iter_frames(path):
  """Yields the frames of the first video stream of `path` as RGB uint8.

  Each frame is `(H, W, 3)`. Raises `VideoError` naming `path` and the problem.
  """
  frames = iter_decoded_frames(path)
  try:
    for frame in frames:
      yield frame.to_ndarray(format='rgb24')
  finally:
    frames.close()  # Closes the file as soon as the caller stops.


def iter_decoded_frames(path):
  """Yields the frames of `path` as decoded, `av.VideoFrame`s (no RGB yet).

  Raises `VideoError` as `iter_frames` does.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise VideoError(path, 'missing (no such file)')
  if not os.path.isfile(path):
    raise VideoError(path, 'not a file')
  try:
    container = av.open(path)
  except (av.error.FFmpegError, UnicodeDecodeError) as error:
    raise VideoError(path, f'not a video or corrupt ({_reason(error)})') from error
  with container:
    if not container.streams.video:
      raise VideoError(path, 'has no video stream')
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    num_frames = 0
    try:
      for frame in container.decode(stream):
        num_frames += 1
        yield frame
    except av.error.FFmpegError as error:
      raise VideoError(
          path, f'corrupt after {num_frames} frames ({_reason(error)})') from error
    if num_frames == 0:
      raise VideoError(path, 'has zero decodable frames')


def _reason(error):
  """FFmpeg's reason without the file name it repeats."""
  return getattr(error, 'strerror', None) or str(error)


def read_video(path):
  """Decodes a whole video file.

  Args:
    path: an mp4 (or any container FFmpeg reads) file.

  Returns:
    uint8 `(T, H, W, 3)` RGB frames.

  Raises:
    VideoError: the file is missing, not a video, corrupt, has no video stream
      or no frames; the message names the file.
  """
  return np.stack(list(iter_frames(path)))


def _check_decodes(path):
  """Raises `VideoError` naming `path` unless its first frame decodes."""
  frames = iter_decoded_frames(path)
  try:
    next(frames)
  finally:
    frames.close()


def frame_rate(path):
  """Frames per second of the first video stream of `path`.

  Raises:
    VideoError: as `read_video`, or the stream has no frame rate.
  """
  _check_decodes(path)
  with av.open(os.fspath(path)) as container:
    rate = container.streams.video[0].average_rate
  if not rate:
    raise VideoError(path, 'has no frame rate')
  return float(rate)


def count_frames(path):
  """The number of frames the first video stream of `path` says it holds.

  From the container's header, or where it has none a demux pass (packets
  are counted, not decoded). A hint: only decoding says how many frames
  decode (`read_sampled_frames` checks).

  Raises:
    VideoError: as `read_video`.
  """
  _check_decodes(path)
  with av.open(os.fspath(path)) as container:
    stream = container.streams.video[0]
    if stream.frames > 0:
      return stream.frames
    return sum(1 for packet in container.demux(stream) if packet.size)


def read_sampled_frames(path, sample_indices):
  """The frames of a video file that a sampling rule picks.

  The same array as `frames = read_video(path);
  frames[sample_indices(len(frames))]`, at a fraction of the cost: every
  frame is decoded (H.264 frames depend on earlier ones), but only the picked
  ones become RGB arrays and are kept. The frame count comes from
  `count_frames`; should decoding find another, the rule picks again with
  the true count and the file is decoded a second time.

  Args:
    path: a video file.
    sample_indices: `num_frames -> int indices` (may repeat), e.g. a
      `transforms.sample_test_indices` partial.

  Returns:
    uint8 `(len(indices), H, W, 3)` RGB frames in the order of the indices.

  Raises:
    VideoError: as `read_video`.
  """
  num_frames = count_frames(path)
  for _ in range(2):
    indices = np.asarray(sample_indices(num_frames), np.int64)
    picked, decoded = None, 0
    for index, frame in enumerate(iter_decoded_frames(path)):
      rows = np.flatnonzero(indices == index)
      if len(rows):
        rgb = frame.to_ndarray(format='rgb24')
        if picked is None:  # Filled in place: no second copy to stack.
          picked = np.empty((len(indices),) + rgb.shape, rgb.dtype)
        picked[rows] = rgb
      decoded += 1
    if decoded == num_frames and picked is not None:
      return picked
    num_frames = decoded
  raise VideoError(path, 'decodes to a different number of frames each time')


def uniform_frame_indices(num_frames, max_frames):
  """Indices of at most `max_frames` frames spread evenly over `num_frames`."""
  if max_frames is None or num_frames <= max_frames:
    return np.arange(num_frames)
  return np.floor((np.arange(max_frames) + 0.5) * num_frames /
                  max_frames).astype(np.int64)


def encode_video_frames(path, *, short_side, max_frames=None,
                        jpeg_quality=90):
  """Decodes `path` once and returns its frames as JPEG bytes.

  Frames are resized to `short_side` while decoding (so a 1080x1296 source
  never sits in memory whole) and, when `max_frames` is set and the video is
  longer, subsampled uniformly to `max_frames`.

  Returns:
    A list of JPEG-encoded `bytes`, one per kept frame.

  Raises:
    VideoError: as `read_video`.
  """
  frames = [transforms.resize_short_side(frame[None], short_side)[0]
            for frame in iter_frames(path)]
  keep = uniform_frame_indices(len(frames), max_frames)
  # 4:2:0 chroma, like the H.264 source: smaller and faster to decode.
  return [simplejpeg.encode_jpeg(np.ascontiguousarray(frames[i]),
                                 quality=jpeg_quality, colorspace='RGB',
                                 colorsubsampling='420')
          for i in keep]


def probe_video(path):
  """None if `path` opens and its first frame decodes, else the problem text.

  A quick check run on every listed video before the full decode, so that a
  bad download is reported in seconds rather than after hours.
  """
  frames = iter_frames(path)
  try:
    next(frames)
  except VideoError as error:
    return error.what
  finally:
    frames.close()
  return None


def encode_video_to_file(path, output_path, *, short_side, max_frames,
                         jpeg_quality):
  """`encode_video_frames` of `path`, pickled to `output_path`.

  Runs in the builder's decoding worker processes.

  Returns:
    (number of frames kept, None), or (0, problem text) if the video failed.
  """
  try:
    jpegs = encode_video_frames(path, short_side=short_side,
                                max_frames=max_frames,
                                jpeg_quality=jpeg_quality)
  except VideoError as error:
    return 0, error.what
  with open(output_path, 'wb') as file:
    pickle.dump(jpegs, file, protocol=pickle.HIGHEST_PROTOCOL)
  return len(jpegs), None


def write_video(path, frames, *, fps=30, crf=23):
  """Writes uint8 `(T, H, W, 3)` RGB frames as an H.264 (libx264) mp4.

  H and W must be even (yuv420p).
  """
  _, height, width, _ = frames.shape
  if height % 2 or width % 2:
    raise ValueError(f'H.264 needs an even frame size, got {width}x{height}.')
  with av.open(os.fspath(path), mode='w') as container:
    stream = container.add_stream('libx264', rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = 'yuv420p'
    # No macroblock tree: with it, x264 here encodes the same frames into
    # different bitstreams (and decoded frames) from run to run, and the
    # fake MA-52 must be a function of its seed.
    stream.options = {'crf': str(crf), 'preset': 'veryfast',
                      'x264-params': 'mbtree=0'}
    stream.thread_type = 'AUTO'
    for frame in frames:
      packet = stream.encode(av.VideoFrame.from_ndarray(
          np.ascontiguousarray(frame), format='rgb24'))
      container.mux(packet)
    container.mux(stream.encode())
