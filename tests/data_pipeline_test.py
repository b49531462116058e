"""The grain pipeline on the built fake MA-52 (tests/conftest.py)."""

import collections
import itertools

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from maxmicro.data import pipeline
from maxmicro.data import records
from maxmicro.data import transforms

T = 4  # num_segments of the tiny config.


def _train(data_config, *, batch_size=4, seed=0, process_index=0,
           process_count=1):
  return pipeline.make_train_iterator(
      data_config, num_segments=T, per_process_batch_size=batch_size,
      seed=seed, process_index=process_index, process_count=process_count)


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _assert_same_batches(first, second):
  assert len(first) == len(second)
  for a, b in zip(first, second):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_split_metadata(data_config):
  assert pipeline.num_examples(data_config, 'train') == 104
  assert pipeline.num_examples(data_config, 'validation[:10]') == 10
  assert pipeline.has_ground_truth('train')
  assert pipeline.has_ground_truth('validation[:5]')
  assert not pipeline.has_ground_truth('test')
  assert not pipeline.has_ground_truth('test[:10%]')


def test_train_batches(data_config):
  iterator = _train(data_config, batch_size=5)
  assert isinstance(iterator, grain.DatasetIterator)
  for batch in _take(iterator, 3):
    assert set(batch) == {'video', 'label', 'body_label'}
    assert batch['video'].shape == (5, T, 32, 32, 3)
    assert batch['video'].dtype == np.uint8
    assert batch['label'].shape == batch['body_label'].shape == (5,)
    assert batch['label'].dtype == batch['body_label'].dtype == np.int32
    assert batch['video'].std() > 10  # Real pixels, not padding.


def test_same_seed_same_batches_other_seed_not(data_config):
  first = _take(_train(data_config, seed=7), 3)
  _assert_same_batches(first, _take(_train(data_config, seed=7), 3))
  other = _take(_train(data_config, seed=8), 3)
  assert not all(np.array_equal(a['video'], b['video'])
                 for a, b in zip(first, other))


def test_epochs_cover_the_shard_and_are_reshuffled(data_config):
  # Process 1 of 2 holds 52 videos: 13 batches of 4 are exactly one epoch.
  iterator = _train(data_config, process_index=1, process_count=2)
  epochs = [np.concatenate([b['label'] for b in _take(iterator, 13)])
            for _ in range(2)]
  shard = records.Ma52Records(data_config.data_dir, 'small', 'train[52:]')
  expected = sorted(shard[i]['label'] for i in range(len(shard)))
  assert sorted(epochs[0]) == sorted(epochs[1]) == expected
  assert not np.array_equal(epochs[0], epochs[1])


def test_restored_iterator_continues_exactly(data_config):
  iterator = _train(data_config, process_count=2)
  _take(iterator, 11)
  state = iterator.get_state()
  expected = _take(iterator, 4)  # Crosses into the second epoch.
  restored = _train(data_config, process_count=2)
  restored.set_state(state)
  _assert_same_batches(expected, _take(restored, 4))


def test_orbax_checkpoint_round_trip(data_config, tmp_path):
  iterator = _train(data_config)
  _take(iterator, 2)
  manager = ocp.CheckpointManager(
      tmp_path, item_names=('data',),
      item_handlers={'data': grain.checkpoint.CheckpointHandler()})
  manager.save(2, args=ocp.args.Composite(
      data=grain.checkpoint.CheckpointSave(iterator)))
  manager.wait_until_finished()
  expected = _take(iterator, 2)
  restored = _train(data_config)
  manager.restore(2, args=ocp.args.Composite(
      data=grain.checkpoint.CheckpointRestore(restored)))
  _assert_same_batches(expected, _take(restored, 2))
  manager.close()


def test_worker_processes_restore_exactly(data_config):
  data_config.num_workers = 2
  iterator = _train(data_config, seed=3)
  _take(iterator, 2)
  state = iterator.get_state()
  expected = _take(iterator, 3)
  restored = _train(data_config, seed=3)
  restored.set_state(state)
  _assert_same_batches(expected, _take(restored, 3))
  for batch in expected:
    assert batch['video'].shape == (4, T, 32, 32, 3)
  iterator.close()
  restored.close()


def test_train_example_follows_the_transforms(data_config):
  record = records.Ma52Records(data_config.data_dir, 'small', 'train')[5]
  example = pipeline.TrainClip(data_config, T).random_map(
      record, np.random.default_rng(11))
  rng = np.random.default_rng(11)
  indices = transforms.sample_train_indices(len(record['jpegs']), T, rng)
  frames = records.decode_frames(record['jpegs'], indices)
  expected = transforms.augment_train_clip(
      frames, rng, image_size=32, resize_short_side_to=36,
      scales=(1.0, 0.875, 0.75, 0.66), max_distort=1, flip_probability=0.5)
  np.testing.assert_array_equal(example['video'], expected)
  assert example['label'] == record['label']


@pytest.mark.parametrize('process_count,batch_size', [(1, 16), (3, 5)])
def test_eval_sees_every_video_once_in_equal_batches(data_config,
                                                     process_count,
                                                     batch_size):
  seen = collections.Counter()
  num_batches = set()
  for process_index in range(process_count):
    batches = list(pipeline.make_eval_iterator(
        data_config, 'validation', num_segments=T,
        per_process_batch_size=batch_size, process_index=process_index,
        process_count=process_count))
    num_batches.add(len(batches))
    for batch in batches:
      assert batch['video'].shape == (batch_size, T, 32, 32, 3)
      assert batch['video'].dtype == np.uint8
      assert batch['mask'].dtype == bool
      assert batch['label'].dtype == np.int32
      assert not batch['video'][~batch['mask']].any()
      seen.update(batch['video_id'][batch['mask']].tolist())
  # 52 videos: 1 process -> 4 batches of 16; 3 processes -> 18 max -> 4 each.
  assert num_batches == {4}
  validation = records.Ma52Records(data_config.data_dir, 'small',
                                   'validation')
  all_ids = [validation[i]['video_id'] for i in range(len(validation))]
  assert seen == collections.Counter(all_ids)


def test_process_shards_are_disjoint_and_cover(data_config):
  shards = []
  for process_index in range(3):
    source = pipeline._process_records(  # pylint: disable=protected-access
        data_config, 'train', process_index, 3)
    shards.append({source[i]['video_id'] for i in range(len(source))})
  for a, b in itertools.combinations(shards, 2):
    assert not a & b
  assert sum(len(shard) for shard in shards) == 104
  assert len(set.union(*shards)) == 104


def test_multi_clip_eval_matches_the_predictor_path(data_config):
  data_config.eval_num_clips = 2
  batch = next(iter(pipeline.make_eval_iterator(
      data_config, 'test', num_segments=T, per_process_batch_size=3,
      process_index=0, process_count=1)))
  assert batch['video'].shape == (3, 2 * T, 32, 32, 3)
  record = records.Ma52Records(data_config.data_dir, 'small', 'test')[1]
  assert batch['video_id'][1] == record['video_id']
  frames = records.decode_frames(record['jpegs'],
                                 range(len(record['jpegs'])))
  np.testing.assert_array_equal(
      batch['video'][1],
      transforms.preprocess_eval_clip(frames, T, data_config))
  assert (batch['label'] == 0).all()  # Placeholders.


def test_eval_with_worker_processes(data_config):
  data_config.num_workers = 2
  batches = list(pipeline.make_eval_iterator(
      data_config, 'validation', num_segments=T, per_process_batch_size=16,
      process_index=0, process_count=1))
  assert len(batches) == 4
  assert sum(int(batch['mask'].sum()) for batch in batches) == 52
  assert batches[-1]['video_id'].shape == (16,)
