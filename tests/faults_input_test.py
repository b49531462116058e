"""Fault injection, input side: bad configs and bad requests fail before any
work, with one paragraph naming the culprit and a non-zero exit, never a
traceback (`--verbose` shows one)."""

import os

import av
import numpy as np
import pytest

from maxmicro import checkpoint
from maxmicro import config_checks
from maxmicro import predict
from maxmicro.data import video as video_lib
from tests import fault_launch
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile


def _assert_clean_error(result, *fragments):
  code, out, err = result
  assert code == 1, (code, out, err)
  assert 'Traceback' not in err, err
  for fragment in fragments:
    assert fragment in err, err


@pytest.mark.parametrize('override, num_devices, fragments', [
    ('--config.train.foo=1', 1,
     ('unknown config field', "config.train has no field 'foo'",
      'global_batch_size, grad_accum_steps, keep_checkpoints')),
    ('--config.trian.seed=1', 1, ("config has no field 'trian'",
                                  'Did you mean train?')),
    ('--config.train.global_batch_size=four', 1,
     ('config.train.global_batch_size is of type int', "'four' is not")),
    ('--config.model.dtype=float16', 1,
     ("config.model.dtype='float16' is not allowed",
      'allowed values: auto, float32, bfloat16')),
    ('--config.optim.schedule=linear', 1,
     ("config.optim.schedule='linear'", 'allowed values: step, cosine')),
    ('--config.train.nonfinite_policy=ignore', 1,
     ('allowed values: stop, skip',)),
    ('--config.train.global_batch_size=3', 2,
     ('config.train.global_batch_size=3 must be a multiple of the device '
      'count (2)',)),
    ('--config.loss.label_vectors=/nowhere/vectors.npy', 1,
     ("label vectors '/nowhere/vectors.npy' (config.loss.label_vectors) do "
      'not exist',)),
])
def test_bad_config_fails_before_any_work(built_fake_ma52, tmp_path,
                                          override, num_devices, fragments):
  # The built fake MA-52, so only the config can be at fault; nothing of the
  # run (workdir, metrics, checkpoints) gets written.
  flags = fault_launch.tiny_flags(built_fake_ma52, tmp_path / 'w') + [override]
  _assert_clean_error(fault_launch.run(flags, num_devices=num_devices),
                      *fragments)
  assert not os.path.exists(tmp_path / 'w')


def test_verbose_shows_the_traceback(tmp_path):
  code, _, err = fault_launch.run(['--config=configs/manet.py:tiny',
                                   f'--workdir={tmp_path}',
                                   '--config.model.dtype=float16',
                                   '--verbose'])
  assert code != 0 and 'Traceback' in err


def test_config_checks_in_process(built_fake_ma52):
  config = tiny_run.tiny_config(built_fake_ma52)
  config_checks.check_config(config)  # The tiny config is fine.
  config.unlock()
  config.model.depth = 42
  with pytest.raises(ValueError, match='config.model.depth=42 is not allowed; '
                     'allowed values: 18, 34, 50, 101'):
    config_checks.check_config(config)
  config.model.depth = 50
  config.train.checkpoint_every_steps = 0
  with pytest.raises(ValueError, match='checkpoint_every_steps=0 must be a '
                     'positive integer'):
    config_checks.check_config(config)
  config.train.checkpoint_every_steps = 2
  for field, value, message in (
      ('loss.embedding', 'cosine', "config.loss.embedding='cosine' is not "
       'allowed; allowed values: mse, contrastive, none'),
      ('loss.temperature', 0.0, 'config.loss.temperature=0.0 must be '
       'positive'),
      ('optim.name', 'lamb', "config.optim.name='lamb' is not allowed"),
      ('data.dataset', 'ma53', "config.data.dataset='ma53' is not allowed")):
    section, name = field.split('.')
    saved = config[section][name]
    config[section][name] = value
    with pytest.raises(ValueError, match=message):
      config_checks.check_config(config)
    config[section][name] = saved


@pytest.mark.parametrize('mode', ['eval', 'submit', 'predict'])
def test_modes_without_a_checkpoint(tmp_path, mode):
  clip = tmp_path / 'clip.mp4'
  clip.write_bytes(b'not read: the checkpoint is looked for first')
  _assert_clean_error(
      fault_launch.run([f'--workdir={tmp_path}', f'--mode={mode}',
                        f'--video={clip}']),
      'no checkpoint in', 'train first')


def _bad_videos(directory, good):
  """name -> path of broken video files, made from the good mp4 `good`."""
  data = good.read_bytes()
  paths = {name: directory / f'{name}.mp4'
           for name in ('random', 'truncated', 'audio_only')}
  paths['random'].write_bytes(np.random.default_rng(0).bytes(4096))
  paths['truncated'].write_bytes(data[:len(data) // 2])
  with av.open(str(paths['audio_only']), 'w') as container:
    stream = container.add_stream('aac', rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32),
                                       format='fltp', layout='mono')
    frame.sample_rate = 16000
    for packet in [*stream.encode(frame), *stream.encode(None)]:
      container.mux(packet)
  return paths


def test_predict_on_bad_videos(built_fake_ma52, tmp_path):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  good = sorted((built_fake_ma52.manual_dir / 'videos_val').glob('*.mp4'))[0]
  paths = _bad_videos(tmp_path, good)
  predictor = predict.load(workdir)
  expected = {'random': 'not a video or corrupt',
              'truncated': 'not a video or corrupt',
              'audio_only': 'has no video stream'}
  for name, what in expected.items():
    with pytest.raises(video_lib.VideoError, match=what) as raised:
      predictor(str(paths[name]))
    assert str(paths[name]) in str(raised.value)
  with pytest.raises(video_lib.VideoError, match='missing'):
    predictor(str(tmp_path / 'absent.mp4'))
  # Shorter than num_segments (4): the official test sampling repeats the
  # one frame, so a 1-frame clip is scored, not refused.
  one_frame = tmp_path / 'one_frame.mp4'
  video_lib.write_video(one_frame, np.full((1, 48, 40, 3), 128, np.uint8))
  rows = predictor(str(one_frame))
  assert [row['rank'] for row in rows] == [1, 2, 3, 4, 5]
  # And from the command line: one paragraph, the file named.
  _assert_clean_error(
      fault_launch.run([f'--workdir={workdir}', '--mode=predict',
                        f'--video={paths["audio_only"]}']),
      f'{paths["audio_only"]}: has no video stream')


def test_eval_of_an_all_incomplete_workdir(tmp_path):
  directory = tmp_path / checkpoint.CHECKPOINT_SUBDIR / '3'
  directory.mkdir(parents=True)  # A step cut short before its commit.
  with pytest.raises(checkpoint.CheckpointError, match='no complete checkpoint'):
    checkpoint.open_for_reading(str(tmp_path))
