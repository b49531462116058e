"""Tests for maxmicro.labels against DESIGN.md's taxonomy."""

import numpy as np

from maxmicro import labels


def test_sizes_and_uniqueness():
  assert len(labels.ACTION_NAMES) == len(labels.ACTION_CODES) == 52
  assert len(set(labels.ACTION_NAMES)) == len(set(labels.ACTION_CODES)) == 52
  assert labels.ACTION_TO_BODY.shape == (52,)
  assert labels.BODY_NAMES == ('body', 'head', 'upper limb', 'lower limb',
                               'body-hand', 'head-hand', 'leg-hand')


def test_body_parts_are_the_official_id_ranges():
  ranges = [(0, 4), (5, 10), (11, 23), (24, 31), (32, 37), (38, 47),
            (48, 51)]
  expected = np.concatenate([np.full(last - first + 1, body)
                             for body, (first, last) in enumerate(ranges)])
  np.testing.assert_array_equal(labels.ACTION_TO_BODY, expected)


def test_codes_start_with_their_body_letter():
  for code, body in zip(labels.ACTION_CODES, labels.ACTION_TO_BODY):
    assert code[0] == 'ABCDEFG'[body], code
  # Within a body part the codes are 1..n, each once.
  for body in range(7):
    numbers = sorted(int(code[1:]) for code, part in
                     zip(labels.ACTION_CODES, labels.ACTION_TO_BODY)
                     if part == body)
    assert numbers == list(range(1, len(numbers) + 1))


def test_spot_checks():
  assert (labels.ACTION_NAMES[0], labels.ACTION_CODES[0]) == ('shaking body',
                                                              'A1')
  assert (labels.ACTION_NAMES[9], labels.ACTION_CODES[9]) == ('nodding', 'B1')
  assert (labels.ACTION_NAMES[45], labels.ACTION_CODES[45]) == (
      'covering face', 'F10')
  assert (labels.ACTION_NAMES[51], labels.ACTION_CODES[51]) == (
      'scratching feet', 'G4')


def test_read_only():
  assert not labels.ACTION_TO_BODY.flags.writeable
