"""The official MA-52 download on disk: its lists, videos and their problems.

A manual directory holds `train_list_videos.txt`, `val_list_videos.txt`,
`test_list_videos.txt` (`<file>.mp4 <action_id>` lines, CRLF) and the videos in
`videos_train/`, `videos_val/`, `videos_test/`. `read_manual_dir` reads all
three lists, checks every line and that every listed video exists, and
reports every problem at once in one `Ma52LayoutError`.

The error-collection pieces (`Where`, `Problem`, `LayoutError`,
`check_layout`, `file_problem`, `problems_message`) are shared with
`mma52_layout`, the MMA-52 download.
"""

import dataclasses
import pathlib

from maxmicro import labels


@dataclasses.dataclass(frozen=True)
class SplitLayout:
  """Where one split of the download lives."""
  split: str  # TFDS split name.
  list_file: str
  video_dir: str


SPLITS = (
    SplitLayout('train', 'train_list_videos.txt', 'videos_train'),
    SplitLayout('validation', 'val_list_videos.txt', 'videos_val'),
    SplitLayout('test', 'test_list_videos.txt', 'videos_test'),
)
# The official test list holds placeholder labels (all 0).
SPLITS_WITHOUT_LABELS = ('test',)


@dataclasses.dataclass(frozen=True, order=True)
class Where:
  """A line of a list or annotation file; `str()` gives 'file:line'."""
  file: str  # Relative to the manual directory, e.g. 'train_list_videos.txt'.
  line: int  # 1-based.

  def __str__(self):
    return f'{self.file}:{self.line}'


@dataclasses.dataclass(frozen=True)
class ListedVideo:
  """One line of a list file."""
  video_id: str  # The file name as listed, e.g. '0003_01_0001.mp4'.
  label: int
  path: pathlib.Path
  where: Where


@dataclasses.dataclass(frozen=True)
class Problem:
  """One thing wrong with the download, as a message names it."""
  text: str
  # A missing or undecodable video, which skip_bad_videos may leave out (a
  # malformed list line never is).
  video_id: str | None = None
  split: str | None = None
  # (list index in SPLITS, line number): problems are reported in this order.
  position: tuple[int, int] = (0, 0)

  def __str__(self):
    return self.text


class LayoutError(ValueError):
  """A manual directory is missing, mis-laid, or its files are bad.

  The message names every offending file and line; `problems` holds them as
  `Problem`s.
  """

  def __init__(self, message, problems=()):
    super().__init__(message)
    self.problems = list(problems)


class Ma52LayoutError(LayoutError):
  """The MA-52 manual directory is missing, mis-laid, or its lists or videos
  are bad."""


def layout_text():
  """The expected layout, for instructions and error messages."""
  return ('  <manual_dir>/\n'
          '    train_list_videos.txt   lines "<file>.mp4 <action_id>" (0-51)\n'
          '    val_list_videos.txt\n'
          '    test_list_videos.txt    (placeholder labels)\n'
          '    videos_train/*.mp4\n'
          '    videos_val/*.mp4\n'
          '    videos_test/*.mp4\n')


def find_nested_layout(manual_dir, marker):
  """A sub-directory (up to two levels down) holding `marker`, or None.

  `marker` is a file of the layout relative to its root, e.g.
  'train_list_videos.txt'; the directory returned is that root.
  """
  for depth_glob in (f'*/{marker}', f'*/*/{marker}'):
    for found in sorted(pathlib.Path(manual_dir).glob(depth_glob)):
      return found.parents[len(pathlib.PurePath(marker).parts) - 1]
  return None


def check_layout(manual_dir, splits, *, dataset, expected, error):
  """Raises `error` if `manual_dir` is missing or lacks a file or folder.

  Args:
    manual_dir: the directory to check.
    splits: `SplitLayout`s whose `list_file` and `video_dir` must exist.
    dataset: the data set's name for messages, e.g. 'MA-52'.
    expected: the expected layout, as `layout_text()` gives it.
    error: the `LayoutError` subclass to raise.
  """
  manual_dir = pathlib.Path(manual_dir)
  if not manual_dir.is_dir():
    raise error(
        f'{dataset} manual directory {manual_dir} does not exist. Download '
        f'{dataset} and lay it out as:\n{expected}')
  missing = [name for layout in splits
             for name, is_there in ((layout.list_file,
                                     (manual_dir / layout.list_file).is_file()),
                                    (layout.video_dir + '/',
                                     (manual_dir / layout.video_dir).is_dir()))
             if not is_there]
  if missing:
    nested = find_nested_layout(manual_dir, splits[0].list_file)
    hint = (f' It looks like the data is in {nested}: pass that as the '
            f'manual directory.' if nested else '')
    raise error(
        f'{dataset} manual directory {manual_dir} is missing '
        f'{", ".join(missing)}.{hint} Expected layout:\n{expected}',
        problems=[Problem(f'{manual_dir / name}: missing') for name in missing])


def check_manual_dir(manual_dir):
  """Raises `Ma52LayoutError` if `manual_dir` is missing or mis-laid."""
  check_layout(manual_dir, SPLITS, dataset='MA-52', expected=layout_text(),
               error=Ma52LayoutError)


def _position(layout, line_number, splits=SPLITS):
  """Where a problem sorts: (index of its file in `splits`, line number)."""
  return ([split.list_file for split in splits].index(layout.list_file),
          line_number)


def _parse_line(line, where, video_dir):
  """A `ListedVideo`, or a problem string, for one non-empty list line."""
  fields = line.split()
  if len(fields) != 2:
    return f'{where}: malformed line {line!r} (expected "<file>.mp4 <action_id>")'
  name, label_text = fields
  if not name.endswith('.mp4') or '/' in name or '\\' in name:
    return f'{where}: malformed file name {name!r} (expected "<file>.mp4")'
  try:
    label = int(label_text)
  except ValueError:
    return f'{where}: label {label_text!r} of {name} is not an integer'
  if not 0 <= label < labels.NUM_ACTIONS:
    return (f'{where}: label {label} of {name} is out of range '
            f'0..{labels.NUM_ACTIONS - 1}')
  return ListedVideo(video_id=name, label=label, path=video_dir / name,
                     where=where)


def file_problem(layout, file_name, where, what, *, video_id, splits=SPLITS):
  """A skippable problem with the video file `file_name` listed at `where`.

  `layout` is one of `splits` (MA-52's, or MMA-52's in `mma52_layout`).
  """
  return Problem(f'{layout.video_dir}/{file_name} ({where}): {what}',
                 video_id=video_id, split=layout.split,
                 position=_position(layout, where.line, splits))


def video_problem(layout, video, what):
  """A skippable problem with one listed video."""
  return file_problem(layout, video.video_id, video.where, what,
                      video_id=video.video_id)


def read_list(manual_dir, layout):
  """Reads one list file: (videos, problems); CRLF and LF both accepted."""
  manual_dir = pathlib.Path(manual_dir)
  text = (manual_dir / layout.list_file).read_bytes().decode('utf-8', 'replace')
  videos, problems, seen = [], [], {}
  for number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    where = Where(layout.list_file, number)
    parsed = _parse_line(line.strip(), where, manual_dir / layout.video_dir)
    if isinstance(parsed, str):
      problems.append(Problem(parsed, position=_position(layout, number)))
    elif parsed.video_id in seen:
      problems.append(Problem(f'{where}: {parsed.video_id} is listed twice '
                              f'(first at {seen[parsed.video_id]})',
                              position=_position(layout, number)))
    else:
      seen[parsed.video_id] = where
      if not parsed.path.is_file():
        problems.append(video_problem(layout, parsed, 'missing'))
      videos.append(parsed)
  if not videos and not problems:
    problems.append(Problem(f'{layout.list_file}: lists no videos',
                            position=_position(layout, 0)))
  return videos, problems


def read_manual_dir(manual_dir):
  """Reads all three lists of an MA-52 manual directory.

  Returns:
    (videos, problems): `videos` maps each TFDS split name to its
    `ListedVideo`s in list order; `problems` lists (as `Problem`s) every
    malformed line, label out of range, duplicate and missing video, naming
    `list_file:line` and the video file as listed.

  Raises:
    Ma52LayoutError: the directory is missing or mis-laid.
  """
  check_manual_dir(manual_dir)
  videos, problems = {}, []
  for layout in SPLITS:
    videos[layout.split], split_problems = read_list(manual_dir, layout)
    problems.extend(split_problems)
  return videos, problems


def problems_message(manual_dir, problems, *, action, hint_skip=False,
                     dataset='MA-52'):
  """One message naming every problem (in list order); `action` says what
  happened, `hint_skip` adds how to skip bad videos when that would help."""
  problems = sorted(problems, key=lambda problem: problem.position)
  lines = '\n'.join(f'  {problem}' for problem in problems)
  hint = ''
  if hint_skip and all(problem.video_id for problem in problems):
    hint = ('\n(skip_bad_videos=True leaves out videos that are missing or '
            'cannot be decoded.)')
  return (f'{dataset} in {manual_dir} has {len(problems)} problem(s); '
          f'{action}:\n{lines}{hint}')
