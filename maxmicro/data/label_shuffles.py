"""Control runs: a split's annotations shuffled, so that what a detector
learns can be compared with what it could learn without the labels."""

import numpy as np

# The control runs' label shuffles (`config.detection.shuffle_train_labels`).
LABEL_SHUFFLES = ('none', 'classes', 'videos')


def shuffle_annotations(index, how, rng):
  """Shuffles a split index's annotations in place, for a control run.

  'classes': every instance keeps its segment and takes the class of a
  random other instance of the split (class frequencies unchanged); what can
  be learnt is where actions are, not which. 'videos': every video takes the
  instances (segments and classes) of a random other video; nothing about
  the video is left to learn.
  """
  if how == 'classes':
    index['labels'] = rng.permutation(index['labels'])
  elif how == 'videos':
    offsets = index['instance_offsets']
    rows = [np.arange(offsets[video], offsets[video + 1])
            for video in rng.permutation(len(offsets) - 1)]
    order = np.concatenate(rows + [np.zeros(0, np.int64)])
    index['segments'] = index['segments'][order]
    index['labels'] = index['labels'][order]
    index['instance_offsets'] = np.cumsum(
        [0] + [len(row) for row in rows]).astype(np.int64)
  elif how != 'none':
    raise ValueError(f'unknown label shuffle {how!r}; known: '
                     f'{", ".join(LABEL_SHUFFLES)}.')
