"""maxmicro.data.detection_pipeline: feature files, windows and batches."""

import numpy as np
import pytest

from maxmicro.data import detection_pipeline as pipeline

STRIDE = 2
FPS = 10.0


def spec(window_size=6, max_instances=3, classes=(4, 7, 9)):
  class_index = np.full(52, -1, np.int64)
  class_index[list(classes)] = np.arange(len(classes))
  return pipeline.WindowSpec(window_size=window_size,
                             max_instances=max_instances, frame_stride=STRIDE,
                             class_index=class_index)


def video(num_frames, instances, video_id='v', width=3):
  """A video dict as `SplitFeatures` gives; feature value = step index."""
  steps = pipeline.num_steps(num_frames, STRIDE)
  return {
      'features': np.repeat(np.arange(steps, dtype=np.float16)[:, None],
                            width, axis=1),
      'video_id': video_id, 'fps': FPS, 'num_frames': num_frames,
      'segments': np.array([i[:2] for i in instances],
                           np.float32).reshape(-1, 2) / FPS,
      'labels': np.array([i[2] for i in instances], np.int32)}


def test_window_starts_cover_the_video_and_end_flush():
  assert pipeline.window_starts(5, 8, 4) == [0]
  assert pipeline.window_starts(8, 8, 4) == [0]
  assert pipeline.window_starts(15, 8, 4) == [0, 4, 7]


def test_window_example_clips_maps_classes_and_pads():
  # Frames -> steps at stride 2: (4, 10) -> (2, 5); (8, 30) -> (4, 15).
  example = video(30, [(4, 10, 7), (8, 30, 4), (0, 6, 5), (20, 24, 9)])
  window = pipeline.window_example(example, 3, spec())
  # Steps 3..8 of 15; features hold their step index.
  np.testing.assert_array_equal(window['features'][:, 0], np.arange(3, 9))
  assert window['mask'].all()
  # (2, 5) -> (0, 2); (4, 15) -> (1, 6) clipped to the window; class 5 is
  # not trained; (10, 12) is past the window.
  # Frames / fps as float32 seconds, to steps in float64, to float32: each
  # correctly rounded, and these come back whole: exact (default rtol 1e-7).
  np.testing.assert_allclose(window['segments'], [[0, 2], [1, 6], [0, 0]])
  np.testing.assert_array_equal(window['labels'], [1, 0, 0])
  np.testing.assert_array_equal(window['valid'], [True, True, False])


def test_window_example_pads_a_short_video_and_caps_instances():
  example = video(6, [(0, 2, 4), (0, 4, 7), (2, 6, 9), (0, 6, 4)])
  window = pipeline.window_example(example, 0, spec(max_instances=2))
  np.testing.assert_array_equal(window['mask'], [1, 1, 1, 0, 0, 0])
  assert (window['features'][3:] == 0).all()
  assert window['valid'].all() and len(window['labels']) == 2


def test_features_round_trip_and_shuffled_labels(tmp_path):
  videos = [video(30, [(4, 10, 7)], 'a', width=4),
            video(11, [], 'b', width=4),
            video(20, [(0, 8, 4), (2, 20, 9)], 'c', width=4)]
  writer = pipeline.SplitWriter(str(tmp_path), 'train', 4)
  for example in videos:
    writer.add(example, example['features'])
  assert writer.close() == 3
  assert sorted(p.name for p in tmp_path.iterdir()) == ['train.npy',
                                                          'train_index.npz']
  stored = pipeline.SplitFeatures(str(tmp_path), 'train')
  assert len(stored) == 3 and stored.feature_dim == 4
  for expected, index in zip(videos, range(3)):
    got = stored[index]
    assert got['video_id'] == expected['video_id']
    assert got['features'].dtype == np.float16
    np.testing.assert_array_equal(got['features'], expected['features'])
    # Float32 segments stored and read back: exact.
    np.testing.assert_allclose(got['segments'], expected['segments'])
    np.testing.assert_array_equal(got['labels'], expected['labels'])
  shuffled = pipeline.SplitFeatures(str(tmp_path), 'train',
                                    shuffle_labels='classes', seed=1)
  assert sorted(shuffled.index['labels']) == [4, 7, 9]
  # Shuffling moves stored values, computes none: exact.
  np.testing.assert_array_equal(shuffled[2]['segments'], stored[2]['segments'])
  moved = pipeline.SplitFeatures(str(tmp_path), 'train',
                                 shuffle_labels='videos', seed=1)
  annotations = lambda v: (v['segments'].tobytes(),  # noqa: E731
                           v['labels'].tobytes())
  assert sorted(annotations(moved[i]) for i in range(3)) == sorted(
      annotations(stored[i]) for i in range(3))
  np.testing.assert_array_equal(moved[1]['features'], stored[1]['features'])


def test_stale_and_missing_features_are_refused(tmp_path):
  with pytest.raises(pipeline.MissingFeaturesError, match='HOW'):
    pipeline.read_meta(str(tmp_path), how_to_extract='HOW')
  pipeline.write_meta(str(tmp_path), {'identity': {'a': 1, 'stride': 4}})
  meta = pipeline.read_meta(str(tmp_path), how_to_extract='HOW')
  pipeline.check_identity(meta, {'a': 1, 'stride': 4}, 'D', how_to_extract='')
  with pytest.raises(pipeline.FeaturesError,
                     match=r'stale.*stride=4 \(now 2\).*HOW'):
    pipeline.check_identity(meta, {'a': 1, 'stride': 2}, 'D',
                            how_to_extract='HOW')


@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_eval_batches_cover_every_window_once(process_count):
  videos = [video(n, [], f'v{i}') for i, n in enumerate((4, 30, 12, 50))]
  windows = pipeline.eval_windows(videos, spec(), window_stride=3)
  seen, counts = [], set()
  for index in range(process_count):
    batches = list(pipeline.make_eval_batches(
        videos, spec(), windows, per_process_batch_size=4,
        process_index=index, process_count=process_count))
    counts.add(len(batches))
    for batch in batches:
      assert batch['features'].shape == (4, 6, 3)
      assert not batch['mask'][~batch['valid']].any()
      seen += list(batch['window'][batch['valid']])
  assert len(counts) == 1  # Every process yields as many batches.
  assert sorted(seen) == list(range(len(windows)))


def test_train_iterator_batches_and_seed(tmp_path):
  writer = pipeline.SplitWriter(str(tmp_path), 'train', 3)
  for i in range(5):
    example = video(40, [(2, 30, 4)], f'v{i}')
    writer.add(example, example['features'])
  writer.close()
  stored = pipeline.SplitFeatures(str(tmp_path), 'train')
  make = lambda seed: pipeline.make_train_iterator(  # noqa: E731
      stored, pipeline.TrainWindow(spec()), per_process_batch_size=2, seed=seed, process_index=0,
      process_count=1)
  first = next(make(0))
  assert first['features'].shape == (2, 6, 3)
  assert first['segments'].shape == (2, 3, 2)
  # Two iterators from seed 0 on this machine: bit for bit.
  np.testing.assert_array_equal(first['features'], next(make(0))['features'])
