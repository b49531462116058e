"""Evaluation of a checkpoint reproduces training's numbers; test is refused."""

import pytest

from maxmicro import checkpoint
from maxmicro import commands
from maxmicro import metrics
from maxmicro import reporting
from tests import tiny_run

pytestmark = pytest.mark.usefixtures('fast_compile')
fast_compile = tiny_run.fast_compile


def test_eval_reproduces_the_training_evaluation(built_fake_ma52):
  workdir, result, _ = tiny_run.trained_workdir(built_fake_ma52)
  got, step, split = commands.evaluate_checkpoint(workdir)
  assert (step, split) == (tiny_run.NUM_STEPS, 'validation')
  assert got == result
  (line,) = reporting.read_metrics(workdir, 'eval')
  assert {k: line[k] for k in metrics.METRIC_NAMES} == got


def test_test_split_is_refused_before_data(built_fake_ma52):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  with pytest.raises(ValueError, match='no ground-truth labels'):
    commands.evaluate_checkpoint(workdir, split='test')


def test_config_with_another_model_is_refused(built_fake_ma52):
  workdir, _, _ = tiny_run.trained_workdir(built_fake_ma52)
  config = tiny_run.tiny_config(built_fake_ma52)
  config.unlock()
  config.model.width = 16
  with pytest.raises(ValueError, match=r'model.width \(16 vs saved 8\)'):
    commands.evaluate_checkpoint(workdir, config)


def test_missing_checkpoint_is_named(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match='no checkpoint in'):
    commands.evaluate_checkpoint(str(tmp_path))
  with pytest.raises(checkpoint.CheckpointError, match='does not exist'):
    commands.evaluate_checkpoint(str(tmp_path / 'nowhere'))
