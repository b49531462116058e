"""The official MMA-52 download on disk: annotation CSVs, videos, problems.

A manual directory holds the videos in `train/`, `val/`, `test/`
(`<video_id>.mp4`) and `anns/train.csv`, `anns/val.csv`, `anns/test.csv`:
header `id,video_id,start_frame,end_frame,class,total_frames,fps`, one row
per instance, frames at the video's fps (written `30.0`/`29.0` in train and
val, `30`/`29` in test), LF or CRLF line endings. test.csv is a placeholder
(one 20-frame instance of a dummy class per video): the test split is
unlabelled, and its videos carry no instances here.

`read_manual_dir` reads all three files, checks every row and that every
video exists, and returns every problem at once (as `ma52_layout.Problem`s,
the MA-52 reader's error-collection style); the builder adds the videos that
do not decode or whose decoded frame count is off (`frame_count_problem`) and
raises them all in one `Mma52LayoutError` before it writes anything.
Segments are in seconds, frame / fps, as the challenge's own conversion
(MMAD/PointTAD/util/csv2json.py) computes them.
"""

import dataclasses
import math
import pathlib

import numpy as np

from maxmicro import labels
from maxmicro.data import ma52_layout

HEADER = 'id,video_id,start_frame,end_frame,class,total_frames,fps'
COLUMNS = tuple(HEADER.split(','))
SPLITS = (
    ma52_layout.SplitLayout('train', 'anns/train.csv', 'train'),
    ma52_layout.SplitLayout('validation', 'anns/val.csv', 'val'),
    ma52_layout.SplitLayout('test', 'anns/test.csv', 'test'),
)
# The official test.csv holds one placeholder instance per video.
SPLITS_WITHOUT_LABELS = ('test',)
# A video may decode to a few frames more or fewer than its `total_frames`
# (an annotation tool and a decoder can disagree on the last frames, and
# segments are in seconds, so nothing shifts); more than 5% of
# `total_frames`, and at least 2 frames, means a truncated or wrong file.
FRAME_COUNT_TOLERANCE = 0.05
FRAME_COUNT_MIN_SLACK = 2

Where = ma52_layout.Where
Problem = ma52_layout.Problem


class Mma52LayoutError(ma52_layout.LayoutError):
  """The MMA-52 manual directory is missing, mis-laid, or its annotation
  files or videos are bad; the message names every file and line."""


@dataclasses.dataclass(frozen=True)
class AnnotatedVideo:
  """One video of an annotation file, with its instances."""
  video_id: str  # As in the CSV, e.g. 'train0000'; the file adds '.mp4'.
  path: pathlib.Path
  fps: float
  total_frames: int
  # (start_frame, end_frame, class) in file order; () in unlabelled splits.
  instances: tuple[tuple[int, int, int], ...]
  where: Where  # The video's first row.

  @property
  def segments(self):
    """float32 `(K, 2)`: instance [start, end] in seconds (frame / fps)."""
    frames = np.array([instance[:2] for instance in self.instances],
                      np.float64).reshape(-1, 2)
    return (frames / self.fps).astype(np.float32)

  @property
  def labels(self):
    """int32 `(K,)`: instance classes (0-51)."""
    return np.array([instance[2] for instance in self.instances], np.int32)


@dataclasses.dataclass(frozen=True)
class _Row:
  """One well-formed CSV row."""
  video_id: str
  start_frame: int
  end_frame: int
  label: int
  total_frames: int
  fps: float
  where: Where


def layout_text():
  """The expected layout, for instructions and error messages."""
  return ('  <manual_dir>/\n'
          '    anns/train.csv   header "' + HEADER + '"\n'
          '    anns/val.csv\n'
          '    anns/test.csv    (placeholder instances)\n'
          '    train/<video_id>.mp4\n'
          '    val/<video_id>.mp4\n'
          '    test/<video_id>.mp4\n')


def check_manual_dir(manual_dir):
  """Raises `Mma52LayoutError` if `manual_dir` is missing or mis-laid."""
  ma52_layout.check_layout(manual_dir, SPLITS, dataset='MMA-52',
                           expected=layout_text(), error=Mma52LayoutError)


def _video_id(line):
  """The video_id of a CSV line if it has 7 columns and a file name there."""
  fields = [field.strip() for field in line.split(',')]
  if len(fields) != len(COLUMNS):
    return None
  name = fields[COLUMNS.index('video_id')]
  if not name or '/' in name or '\\' in name or name.endswith('.mp4'):
    return None
  return name


def _parse_row(line, where, labelled):
  """(row, problems) for one non-empty CSV line.

  `row` is a `_Row` when the line is good, else None; `problems` lists every
  problem text of the line.
  """
  fields = [field.strip() for field in line.split(',')]
  if len(fields) != len(COLUMNS):
    return None, [f'{where}: malformed row {line!r} ({len(fields)} columns, '
                  f'expected {len(COLUMNS)}: {HEADER})']
  text = dict(zip(COLUMNS, fields))
  name = text['video_id']
  problems, values = [], {}
  if _video_id(line) is None:
    problems.append(f'{where}: malformed video_id {name!r} (expected a '
                    f'file name without .mp4)')
  for column in [column for column in COLUMNS if column != 'video_id']:
    cast = float if column == 'fps' else int
    try:
      values[column] = cast(text[column])
    except ValueError:
      kind = 'a number' if cast is float else 'an integer'
      problems.append(f'{where}: {column} {text[column]!r} of {name} is not '
                      f'{kind}')
  # Each check runs when the numbers it needs are there.
  start, end = values.get('start_frame'), values.get('end_frame')
  total, fps = values.get('total_frames'), values.get('fps')
  label = values.get('class')
  if start is not None and start < 0:
    problems.append(f'{where}: start_frame {start} of {name} is negative')
  if None not in (start, end) and end < start:
    problems.append(f'{where}: end_frame {end} of {name} is before '
                    f'start_frame {start}')
  if total is not None and total <= 0:
    problems.append(f'{where}: total_frames {total} of {name} is not '
                    f'positive')
  elif None not in (end, total) and end > total:
    problems.append(f'{where}: end_frame {end} of {name} is beyond '
                    f'total_frames {total}')
  if fps is not None and not (math.isfinite(fps) and fps > 0):
    problems.append(f'{where}: fps {text["fps"]} of {name} is not a '
                    f'positive number')
  if labelled and label is not None and not 0 <= label < labels.NUM_ACTIONS:
    problems.append(f'{where}: class {label} of {name} is out of range '
                    f'0..{labels.NUM_ACTIONS - 1}')
  if problems:
    return None, problems
  return _Row(video_id=name, start_frame=start, end_frame=end, label=label,
              total_frames=total, fps=fps, where=where), []


def _inconsistency(row, first):
  """Problem text if `row` disagrees with its video's first row, else None."""
  differ = [f'{column} {getattr(row, column):g} differs from '
            f'{getattr(first, column):g} at {first.where}'
            for column in ('total_frames', 'fps')
            if getattr(row, column) != getattr(first, column)]
  return f'{row.where}: {row.video_id}: {"; ".join(differ)}' if differ else None


def read_annotations(manual_dir, layout):
  """Reads one annotation CSV: (videos, problems); CRLF and LF accepted.

  Videos are in order of their first row; a video's rows need not be
  adjacent. A wrong header stops reading that file (its columns are unknown).
  """
  manual_dir = pathlib.Path(manual_dir)
  labelled = layout.split not in SPLITS_WITHOUT_LABELS
  position = lambda line: (SPLITS.index(layout), line)
  text = (manual_dir / layout.list_file).read_bytes().decode('utf-8-sig',
                                                             'replace')
  lines = text.splitlines()
  header = lines[0].strip() if lines else ''
  if header != HEADER:
    return [], [Problem(f'{Where(layout.list_file, 1)}: header {header!r} is '
                        f'not {HEADER!r}', position=position(1))]
  rows, problems = {}, []
  first_rows = {}  # Video id -> Where of its first row, good or not.
  for number, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    where = Where(layout.list_file, number)
    row, row_problems = _parse_row(line.strip(), where, labelled)
    problems += [Problem(text, position=position(number))
                 for text in row_problems]
    if _video_id(line) is not None:
      first_rows.setdefault(_video_id(line), where)
    if row is None:
      continue
    video_rows = rows.setdefault(row.video_id, [])
    inconsistency = _inconsistency(row, video_rows[0]) if video_rows else None
    if inconsistency:
      problems.append(Problem(inconsistency, position=position(number)))
    else:
      video_rows.append(row)
  for name, where in first_rows.items():
    if not (manual_dir / layout.video_dir / f'{name}.mp4').is_file():
      problems.append(ma52_layout.file_problem(
          layout, f'{name}.mp4', where, 'missing', video_id=name,
          splits=SPLITS))
  videos = [
      AnnotatedVideo(
          video_id=video_id,
          path=manual_dir / layout.video_dir / f'{video_id}.mp4',
          fps=video_rows[0].fps, total_frames=video_rows[0].total_frames,
          instances=tuple((row.start_frame, row.end_frame, row.label)
                          for row in video_rows) if labelled else (),
          where=video_rows[0].where)
      for video_id, video_rows in rows.items()]
  if not videos and not problems:
    problems.append(Problem(f'{layout.list_file}: lists no videos',
                            position=position(0)))
  return videos, problems


def video_problem(layout, video, what):
  """A problem with the file of one `AnnotatedVideo` of `layout`."""
  return ma52_layout.file_problem(layout, video.path.name, video.where, what,
                                  video_id=video.video_id, splits=SPLITS)


def frame_count_problem(video, num_frames):
  """None if `num_frames` decoded frames fit the CSV, else the problem text."""
  slack = max(FRAME_COUNT_MIN_SLACK,
              math.floor(FRAME_COUNT_TOLERANCE * video.total_frames))
  if abs(num_frames - video.total_frames) <= slack:
    return None
  return (f'decodes to {num_frames} frames, but total_frames is '
          f'{video.total_frames} (more than {slack} off)')


def read_manual_dir(manual_dir):
  """Reads all three annotation files of an MMA-52 manual directory.

  Returns:
    (videos, problems): `videos` maps each TFDS split name to its
    `AnnotatedVideo`s; `problems` lists (as `ma52_layout.Problem`s, in file
    and line order) every malformed row, bad header, number out of range,
    disagreement between rows of a video and missing video, each naming
    `anns/<file>.csv:line` (and the video file as `<dir>/<video_id>.mp4`).

  Raises:
    Mma52LayoutError: the directory is missing or mis-laid.
  """
  check_manual_dir(manual_dir)
  videos, problems = {}, []
  for layout in SPLITS:
    videos[layout.split], split_problems = read_annotations(manual_dir,
                                                            layout)
    problems.extend(split_problems)
  return videos, sorted(problems, key=lambda problem: problem.position)


def problems_message(manual_dir, problems, *, action):
  """One message naming every problem, in file and line order."""
  return ma52_layout.problems_message(manual_dir, problems, action=action,
                                      dataset='MMA-52')
