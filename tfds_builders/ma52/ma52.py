"""MA-52 (micro-action recognition) as a TFDS dataset of JPEG frames.

Get the data: MA-52 is distributed by its authors (Guo et al., "Benchmarking
Micro-action Recognition: Dataset, Methods, and Applications", TCSVT 2024)
from https://github.com/VUT-HFUT/Micro-Action after signing their licence
agreement. Unpack it so that one directory holds the three list files and the
three video folders (see `MANUAL_DOWNLOAD_INSTRUCTIONS`), then build once:

  PYTHONPATH=. tfds build tfds_builders/ma52 --config=default \
      --manual_dir=/path/to/MA-52 --data_dir=/path/to/tensorflow_datasets

(needs requirements-tfds.txt), or from Python without TensorFlow:

  from maxmicro.data import build
  build.prepare_ma52('/path/to/MA-52', '/path/to/tensorflow_datasets')

Each mp4 is decoded once, in parallel over the machine's cores, resized to
the config's short side and stored as JPEG frames in array_record shards.
Before anything is written every list line and every video is checked; all
problems are reported at once (`Ma52LayoutError`), unless the builder runs
with `skip_bad_videos=True`, which leaves out videos that are missing or
cannot be decoded and records them in the dataset's metadata.
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import pickle
import shutil
import time

from absl import logging
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from maxmicro import labels
from maxmicro.data import ma52_layout
from maxmicro.data import video as video_lib

_HOMEPAGE = 'https://github.com/VUT-HFUT/Micro-Action'
_CITATION = """\
@article{guo2024benchmarking,
  title={Benchmarking Micro-action Recognition: Dataset, Methods, and Applications},
  author={Guo, Dan and Li, Kun and Hu, Bin and Zhang, Yan and Wang, Meng},
  journal={IEEE Transactions on Circuits and Systems for Video Technology},
  volume={34}, number={7}, year={2024}
}"""
_SCRATCH_DIR = 'decoded.tmp'


@dataclasses.dataclass
class Ma52Config(tfds.core.BuilderConfig):
  """How the frames are stored.

  Attributes:
    short_side: frames are resized so that min(height, width) is this.
    max_frames: keep at most this many frames per video, sampled uniformly;
      None keeps every frame.
    jpeg_quality: JPEG quality of the stored frames.
  """
  short_side: int = 256
  max_frames: int | None = None
  jpeg_quality: int = 90


class Ma52(tfds.core.GeneratorBasedBuilder):
  """MA-52: 52 micro-actions in 7 body parts, frames stored as JPEG."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      Ma52Config(name='default', short_side=256, max_frames=None,
                 description='Short side 256, every frame (the paper recipe).'),
      Ma52Config(name='small', short_side=64, max_frames=16,
                 description='Short side 64, at most 16 frames sampled '
                 'uniformly: quick experiments, demos and tests.'),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'default'
  DEFAULT_FILE_FORMAT = 'array_record'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download MA-52 from {_HOMEPAGE} (the authors send the link after their licence
agreement is signed), unpack it and pass the directory that holds the lists
and the video folders as the manual directory (`--manual_dir=DIR` for `tfds
build`, `manual_dir` for maxmicro.data.build.prepare_ma52). Expected layout:
{ma52_layout.layout_text()}
List lines are `<file>.mp4 <action_id>` (CRLF endings as distributed are
fine); the test list's labels are placeholders."""
  def __init__(self, *, skip_bad_videos=False, num_decode_workers=None,
               **kwargs):
    """As `tfds.core.GeneratorBasedBuilder`, plus:

    Args:
      skip_bad_videos: leave out videos that are missing or cannot be decoded
        (logged, and recorded under `skipped_videos` in the metadata) instead
        of stopping. Malformed list lines always stop the build.
      num_decode_workers: processes that decode videos; None: one per core.
      **kwargs: for `tfds.core.GeneratorBasedBuilder`.
    """
    self.skip_bad_videos = skip_bad_videos
    self.num_decode_workers = num_decode_workers or os.cpu_count() or 1
    # TFDS 4.9 builders default to tfrecord; grain needs random access.
    if kwargs.get('file_format') is None:
      kwargs['file_format'] = self.DEFAULT_FILE_FORMAT
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'video': tfds.features.Sequence(
                tfds.features.Image(shape=(None, None, 3),
                                    encoding_format='jpeg')),
            'label': tfds.features.ClassLabel(names=labels.ACTION_NAMES),
            'body_label': tfds.features.ClassLabel(names=labels.BODY_NAMES),
            'video_id': tfds.features.Text(),
        }),
        supervised_keys=('video', 'label'),
        # Examples are stored in list order, so that eval and submission
        # files follow the official lists.
        disable_shuffling=True,
        homepage=_HOMEPAGE,
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(
            splits_without_labels=list(ma52_layout.SPLITS_WITHOUT_LABELS),
            skipped_videos={}),
    )

  def _download_and_prepare(self, dl_manager, download_config):
    try:
      return super()._download_and_prepare(dl_manager, download_config)
    finally:  # The decoded frames are copied into the shards by now.
      shutil.rmtree(self.data_path / _SCRATCH_DIR, ignore_errors=True)

  def _split_generators(self, dl_manager):
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError:  # TFDS' own message for a missing or empty dir.
      # pylint: disable-next=protected-access
      ma52_layout.check_manual_dir(dl_manager._manual_dir)
      raise
    videos, problems = ma52_layout.read_manual_dir(manual_dir)
    scratch_dir = self.data_path / _SCRATCH_DIR
    scratch_dir.mkdir(parents=True, exist_ok=True)
    layouts = {layout.split: layout for layout in ma52_layout.SPLITS}
    # Phase 1 opens every listed video (seconds), phase 2 decodes them all
    # (hours on the full set): bad input is reported before the long part.
    with decode_pool(self.num_decode_workers) as pool:
      problems += self._check_videos(pool, videos, layouts, problems,
                                     probe=True)
      self._stop_or_skip(manual_dir, videos, problems)
      bad = self._check_videos(pool, videos, layouts, [], probe=False,
                               scratch_dir=scratch_dir)
      self._stop_or_skip(manual_dir, videos, bad)
    return {split: self._generate_examples(split, split_videos, scratch_dir)
            for split, split_videos in videos.items()}

  def _check_videos(self, pool, videos, layouts, known, *, probe,
                    scratch_dir=None):
    """Probes (or fully decodes into `scratch_dir`) every listed video.

    Returns problems for the videos that failed; videos already in `known`
    (missing ones) are not tried.
    """
    known_ids = {(problem.split, problem.video_id) for problem in known}
    tasks = [(split, video) for split, split_videos in videos.items()
             for video in split_videos
             if (split, video.video_id) not in known_ids]
    config = self.builder_config
    futures = {}
    for split, video in tasks:
      if probe:
        future = pool.submit(video_lib.probe_video, video.path)
      else:
        future = pool.submit(
            video_lib.encode_video_to_file, video.path,
            scratch_dir / f'{split}-{video.video_id}.pkl',
            short_side=config.short_side, max_frames=config.max_frames,
            jpeg_quality=config.jpeg_quality)
      futures[future] = (split, video)
    problems = []
    start = time.time()
    description = 'checking videos' if probe else 'decoding videos'
    with tqdm_utils.tqdm(total=len(futures), desc=f'MA-52: {description}',
                         unit=' videos') as progress:
      for done, future in enumerate(
          concurrent.futures.as_completed(futures), start=1):
        split, video = futures[future]
        what = future.result() if probe else future.result()[1]
        if what is not None:
          problems.append(ma52_layout.video_problem(layouts[split], video,
                                                    what))
        progress.update(1)
        if not probe and (done % 500 == 0 or done == len(futures)):
          logging.info('MA-52: decoded %d/%d videos (%.1f/s).', done,
                       len(futures), done / (time.time() - start))
    return problems

  def _stop_or_skip(self, manual_dir, videos, problems):
    """Raises on `problems`, or drops their videos when skipping bad videos."""
    if not problems:
      return
    problems = sorted(problems, key=lambda problem: problem.position)
    if not self.skip_bad_videos or not all(p.video_id for p in problems):
      raise ma52_layout.Ma52LayoutError(
          ma52_layout.problems_message(
              manual_dir, problems, action='stopped before writing anything',
              hint_skip=True),
          problems=problems)
    skipped = self.info.metadata['skipped_videos']
    for problem in problems:
      skipped.setdefault(problem.split, []).append(problem.video_id)
    bad = {(problem.split, problem.video_id) for problem in problems}
    for split in videos:
      videos[split] = [video for video in videos[split]
                       if (split, video.video_id) not in bad]
    logging.warning(ma52_layout.problems_message(
        manual_dir, problems, action=f'skipping these {len(problems)} videos'))
    for split, split_videos in videos.items():
      if not split_videos:
        raise ma52_layout.Ma52LayoutError(
            f'MA-52 in {manual_dir}: no video of split {split} is usable.',
            problems=problems)

  def _generate_examples(self, split, videos, scratch_dir):
    """Yields `(video_id, example)` in list order from the decoded frames."""
    for video in videos:
      with open(scratch_dir / f'{split}-{video.video_id}.pkl', 'rb') as file:
        jpegs = pickle.load(file)
      yield video.video_id, {
          'video': jpegs,
          'label': video.label,
          'body_label': int(labels.ACTION_TO_BODY[video.label]),
          'video_id': video.video_id,
      }


class InlinePool(concurrent.futures.Executor):
  """Runs tasks in this process (one decode worker: no process start-up)."""

  def submit(self, fn, /, *args, **kwargs):
    future = concurrent.futures.Future()
    try:
      future.set_result(fn(*args, **kwargs))
    except BaseException as error:  # pylint: disable=broad-except
      future.set_exception(error)
    return future


def decode_pool(num_workers):
  """Worker processes for decoding; spawned, since the caller may hold JAX.

  Shared with the mma52 builder.
  """
  if num_workers <= 1:
    return InlinePool()
  return concurrent.futures.ProcessPoolExecutor(
      max_workers=num_workers, mp_context=multiprocessing.get_context('spawn'))
