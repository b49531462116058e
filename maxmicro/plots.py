"""Evaluation plots: a confusion matrix grouped by body part, per-class F1;
and the timeline of a video's detected micro-actions.

Action ids already run body part by body part (0-4 body, 5-10 head, ...), so
grouping draws lines between the parts and names them along the axes.
"""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from maxmicro import labels as labels_lib  # pylint: disable=g-import-not-at-top

_BODY_COLOURS = plt.get_cmap('tab10').colors[:labels_lib.NUM_BODY_PARTS]


def _body_part_bounds():
  """(first id, end id) of each body part, in id order."""
  bounds = []
  for part in range(labels_lib.NUM_BODY_PARTS):
    ids = np.flatnonzero(labels_lib.ACTION_TO_BODY == part)
    bounds.append((int(ids[0]), int(ids[-1]) + 1))
  return bounds


def confusion_matrix(matrix, path, title=''):
  """Saves a row-normalised 52x52 confusion matrix PNG.

  Rows are true actions, columns predicted ones, both in id order with
  action codes as ticks; lines separate the body parts, whose names label
  the groups.
  """
  counts = np.asarray(matrix, np.float64)
  rows = counts.sum(axis=1, keepdims=True)
  normalised = np.divide(counts, rows, out=np.zeros_like(counts),
                         where=rows > 0)
  figure, axes = plt.subplots(figsize=(13, 12))
  image = axes.imshow(normalised, cmap='Blues', vmin=0, vmax=1)
  figure.colorbar(image, ax=axes, fraction=0.04, pad=0.11,
                  label='fraction of row')
  ticks = np.arange(labels_lib.NUM_ACTIONS)
  axes.set_xticks(ticks, labels_lib.ACTION_CODES, fontsize=6, rotation=90)
  axes.set_yticks(ticks, labels_lib.ACTION_CODES, fontsize=6)
  for start, end in _body_part_bounds()[1:]:
    del end
    axes.axhline(start - 0.5, color='black', linewidth=0.8)
    axes.axvline(start - 0.5, color='black', linewidth=0.8)
  for part, (start, end) in enumerate(_body_part_bounds()):
    centre = (start + end - 1) / 2
    axes.text(labels_lib.NUM_ACTIONS + 0.5, centre,
              labels_lib.BODY_NAMES[part], va='center', fontsize=8,
              color=_BODY_COLOURS[part])
  axes.set_xlabel('predicted action')
  axes.set_ylabel('true action')
  axes.set_title(f'Confusion matrix by body part ({title})')
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)


def per_class_f1(f1, present, path, title=''):
  """Saves a bar chart of per-class F1, bars coloured by body part.

  Classes absent from both labels and predictions are drawn hatched at 0.
  """
  f1 = np.asarray(f1)
  figure, axes = plt.subplots(figsize=(14, 4.5))
  colours = [_BODY_COLOURS[part] for part in labels_lib.ACTION_TO_BODY]
  bars = axes.bar(np.arange(labels_lib.NUM_ACTIONS), f1, color=colours)
  for bar, is_present in zip(bars, present):
    if not is_present:
      bar.set_hatch('//')
  axes.set_xticks(np.arange(labels_lib.NUM_ACTIONS), labels_lib.ACTION_CODES,
                  fontsize=7, rotation=90)
  axes.set_ylim(0, 1)
  axes.set_ylabel('F1')
  axes.set_title(f'Per-class F1 ({title}); macro F1 '
                 f'{np.mean(f1[np.asarray(present)]) if np.any(present) else 0:.3f}')
  handles = [plt.Rectangle((0, 0), 1, 1, color=colour)
             for colour in _BODY_COLOURS]
  axes.legend(handles, labels_lib.BODY_NAMES, fontsize=7, ncol=7,
              loc='upper center', bbox_to_anchor=(0.5, -0.18))
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)


def detection_timeline(detections, path, *, duration, title=''):
  """Saves a video's detections as a timeline PNG: one row per class.

  Args:
    detections: `(class id, t_start, t_end, score)` rows (seconds).
    path: the PNG to write.
    duration: the video's length in seconds (the x range).
    title: the plot's title (e.g. the video's name).
  """
  classes = sorted({int(row[0]) for row in detections})
  figure, axes = plt.subplots(figsize=(10, 1.2 + 0.45 * max(len(classes), 1)))
  for position, label in enumerate(classes):
    colour = _BODY_COLOURS[labels_lib.ACTION_TO_BODY[label]]
    for row_label, start, end, score in detections:
      if row_label != label:
        continue
      # Opacity says the score, so overlapping duplicates stay readable.
      axes.barh(position, end - start, left=start, height=0.6, color=colour,
                alpha=0.25 + 0.75 * float(score), edgecolor='black')
      axes.text(start, position + 0.33, f'{score:.2f}', fontsize=7)
  axes.set_yticks(range(len(classes)),
                  [f'{labels_lib.ACTION_CODES[c]} {labels_lib.ACTION_NAMES[c]}'
                   for c in classes], fontsize=8)
  axes.set_xlim(0, duration)
  axes.set_ylim(-0.6, max(len(classes), 1) - 0.4)
  axes.invert_yaxis()
  axes.set_xlabel('seconds')
  axes.set_title(title)
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)
