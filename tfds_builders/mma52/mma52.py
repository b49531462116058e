"""MMA-52 (multi-label micro-action detection) as a TFDS dataset of frames.

Get the data: MMA-52 is distributed by its authors (Li et al., "MMAD:
Multi-label Micro-Action Detection in Videos", arXiv 2407.05311; the
Micro-Action Analysis Grand Challenge, track 2) from
https://github.com/VUT-HFUT/Micro-Action after signing their licence
agreement. Unpack it so that one directory holds `anns/` and the three video
folders (see `MANUAL_DOWNLOAD_INSTRUCTIONS`), then build once:

  PYTHONPATH=. tfds build tfds_builders/mma52 --config=default \
      --manual_dir=/path/to/MMA-52 --data_dir=/path/to/tensorflow_datasets

(needs requirements-tfds.txt), or without TensorFlow:

  PYTHONPATH=. python -m maxmicro.data.build --dataset=mma52 \
      --manual_dir=/path/to/MMA-52 --data_dir=/path/to/tensorflow_datasets

or `maxmicro.data.build.prepare_mma52(manual_dir, data_dir)` from Python.

Each mp4 is decoded once, in parallel over the machine's cores, resized to
the config's short side and stored whole (every frame, so that frame i is at
i / fps seconds) as JPEG frames in array_record shards, with its instances:
`segments` (float32 `(K, 2)`, seconds) and `labels` (int32 `(K,)`). The test
split is unlabelled: its examples have K = 0 (test.csv's placeholder
instances are not stored). Before anything is written every row and every
video is checked, and all problems are reported at once
(`Mma52LayoutError`).
"""

import concurrent.futures
import dataclasses
import os
import pickle
import shutil

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from maxmicro.data import mma52_layout
from maxmicro.data import video as video_lib
from tfds_builders.ma52 import ma52

_HOMEPAGE = 'https://github.com/VUT-HFUT/Micro-Action'
_CITATION = """\
@article{li2024mmad,
  title={MMAD: Multi-label Micro-Action Detection in Videos},
  author={Li, Kun and Liu, Pengyu and Guo, Dan and Wang, Fei and Wu, Zhiliang
          and Fan, Hehe and Wang, Meng},
  journal={arXiv preprint arXiv:2407.05311},
  year={2024}
}"""
_SCRATCH_DIR = 'decoded.tmp'


@dataclasses.dataclass
class Mma52Config(tfds.core.BuilderConfig):
  """How the frames are stored (always every frame of a video).

  Attributes:
    short_side: frames are resized so that min(height, width) is this.
    jpeg_quality: JPEG quality of the stored frames.
  """
  short_side: int = 256
  jpeg_quality: int = 90


class Mma52(tfds.core.GeneratorBasedBuilder):
  """MMA-52: untrimmed videos with overlapping micro-action instances."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      Mma52Config(name='default', short_side=256,
                  description='Short side 256, every frame.'),
      Mma52Config(name='small', short_side=64,
                  description='Short side 64, every frame: quick '
                  'experiments, demos and tests.'),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'default'
  DEFAULT_FILE_FORMAT = 'array_record'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download MMA-52 from {_HOMEPAGE} (the authors send the link after their
licence agreement is signed), unpack it and pass the directory that holds
`anns/` and the video folders as the manual directory (`--manual_dir=DIR` for
`tfds build`, `manual_dir` for maxmicro.data.build.prepare_mma52). Expected
layout:
{mma52_layout.layout_text()}
CSV rows are `{mma52_layout.HEADER}` (LF or CRLF endings);
test.csv's instances are placeholders."""

  def __init__(self, *, num_decode_workers=None, **kwargs):
    """As `tfds.core.GeneratorBasedBuilder`, plus:

    Args:
      num_decode_workers: processes that decode videos; None: one per core.
      **kwargs: for `tfds.core.GeneratorBasedBuilder`.
    """
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
            'video_id': tfds.features.Text(),
            'fps': tfds.features.Scalar(dtype=np.float32),
            'num_frames': tfds.features.Scalar(dtype=np.int32),
            'segments': tfds.features.Tensor(shape=(None, 2),
                                             dtype=np.float32),
            'labels': tfds.features.Tensor(shape=(None,), dtype=np.int32),
        }),
        # Examples are stored in annotation-file order.
        disable_shuffling=True,
        homepage=_HOMEPAGE,
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(
            splits_without_labels=list(mma52_layout.SPLITS_WITHOUT_LABELS)),
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
      mma52_layout.check_manual_dir(dl_manager._manual_dir)
      raise
    videos, problems = mma52_layout.read_manual_dir(manual_dir)
    scratch_dir = self.data_path / _SCRATCH_DIR
    scratch_dir.mkdir(parents=True, exist_ok=True)
    # Phase 1 opens every video (seconds), phase 2 decodes them all (hours
    # on the full set): bad input is reported before the long part.
    missing = {(problem.split, problem.video_id) for problem in problems}
    tasks = [(split, video) for split, split_videos in videos.items()
             for video in split_videos
             if (split, video.video_id) not in missing]
    with ma52.decode_pool(self.num_decode_workers) as pool:
      problems += self._check_videos(pool, tasks, probe=True)
      _stop_on(manual_dir, problems)
      _stop_on(manual_dir, self._check_videos(pool, tasks, probe=False,
                                              scratch_dir=scratch_dir))
    return {split: self._generate_examples(split, split_videos, scratch_dir)
            for split, split_videos in videos.items()}

  def _check_videos(self, pool, tasks, *, probe, scratch_dir=None):
    """Probes (or decodes into `scratch_dir`) the `(split, video)` tasks.

    Returns problems for the videos that failed or, once decoded, whose
    frame count is far from the CSV's `total_frames`.
    """
    config = self.builder_config
    futures = {}
    for split, video in tasks:
      if probe:
        future = pool.submit(video_lib.probe_video, video.path)
      else:
        future = pool.submit(
            video_lib.encode_video_to_file, video.path,
            scratch_dir / f'{split}-{video.video_id}.pkl',
            short_side=config.short_side, max_frames=None,
            jpeg_quality=config.jpeg_quality)
      futures[future] = (split, video)
    layouts = {layout.split: layout for layout in mma52_layout.SPLITS}
    problems = []
    description = 'checking videos' if probe else 'decoding videos'
    with tqdm_utils.tqdm(total=len(futures), desc=f'MMA-52: {description}',
                         unit=' videos') as progress:
      for future in concurrent.futures.as_completed(futures):
        split, video = futures[future]
        if probe:
          what = future.result()
        else:
          num_frames, what = future.result()
          what = what or mma52_layout.frame_count_problem(video, num_frames)
        if what is not None:
          problems.append(mma52_layout.video_problem(layouts[split], video,
                                                     what))
        progress.update(1)
    return problems

  def _generate_examples(self, split, videos, scratch_dir):
    """Yields `(video_id, example)` in file order from the decoded frames."""
    for video in videos:
      with open(scratch_dir / f'{split}-{video.video_id}.pkl', 'rb') as file:
        jpegs = pickle.load(file)
      yield video.video_id, {
          'video': jpegs,
          'video_id': video.video_id,
          'fps': np.float32(video.fps),
          'num_frames': len(jpegs),
          'segments': video.segments,
          'labels': video.labels,
      }


def _stop_on(manual_dir, problems):
  """Raises one `Mma52LayoutError` naming every problem, if there are any."""
  if problems:
    problems = sorted(problems, key=lambda problem: problem.position)
    raise mma52_layout.Mma52LayoutError(
        mma52_layout.problems_message(
            manual_dir, problems, action='stopped before writing anything'),
        problems=problems)
