"""What `run.py`'s modes do for detection on MMA-52, and what they say.

`run.py` comes here when the checkpoint's saved config (or `--config`) trains
on `mma52`. As for recognition (`maxmicro.commands`), a mode finds the
checkpoint and checks its arguments before it touches any data, and bad
input ends in one paragraph naming the culprit. A detector trained on a
features directory reads it (checked against the features it was trained
on); one trained end to end computes its features with its own trunk.
"""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from maxmicro import checkpoint
from maxmicro import commands
from maxmicro import config_checks
from maxmicro import labels
from maxmicro import prepare
from maxmicro import sharding
from maxmicro import submit
from maxmicro.data import detection_pipeline
from maxmicro.data import video as video_lib
from maxmicro.detection import features as features_lib
from maxmicro.detection import inference
from maxmicro.detection import provenance
from maxmicro.tasks import detection
from maxmicro.tasks import detection_end_to_end

PREDICTIONS_SUBDIR = 'predictions'


@dataclasses.dataclass
class Loaded:
  """A detection checkpoint, restored and ready to detect."""
  config: object
  step: int
  detector: detection.Detector
  variables: object
  workdir: str
  # End to end: the checkpoint's own trunk computes the features
  # (`detection_end_to_end.FrameFeatures`); None: a features directory and
  # the backbone that made it.
  frame_features: object = None

  def split_videos(self, split):
    """The videos of a split with the features the detector reads."""
    if self.frame_features is not None:
      return self.frame_features.split_videos(split)
    check_features_trained_on(self.workdir, self.config)
    return detection.split_features(self.config, split)

  def feature_computer(self):
    """What computes the features of a video file's frames."""
    if self.frame_features is not None:
      return self.frame_features.computer
    check_backbone_trained_on(self.workdir, self.config)
    return features_lib.FeatureComputer(
        features_lib.open_backbone(self.config),
        self.config.detection.features_batch_size)


def abstract_variables(model, config, feature_dim):
  """The detector's `{'params', 'batch_stats': {}}` as shapes only."""
  window = jax.ShapeDtypeStruct(
      (1, config.detection.window_size, feature_dim), jnp.float32)
  shapes = jax.eval_shape(functools.partial(model.init, train=False),
                          jax.random.key(0), window)
  return {'params': shapes['params'], 'batch_stats': {}}


def load(workdir, config=None, which='latest'):
  """Finds the checkpoint, then checks the backbone, then restores."""
  manager, step, saved = commands.open_checkpoint(workdir, which)
  try:
    config = commands.resolve_config(saved, config)
    config_checks.check_config(config, training=False)
    if detection_end_to_end.is_end_to_end(config):
      detector, variables, frame_features = (
          detection_end_to_end.restore_for_inference(manager, step, config))
      return Loaded(config, step, detector, variables, workdir,
                    frame_features)
    backbone = features_lib.open_backbone(config, with_variables=False)
    mesh = sharding.make_mesh()
    model = detection.build_detector(config)
    abstract = abstract_variables(
        model, config, features_lib.feature_dim(backbone.config))
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
    variables = checkpoint.restore(
        manager, step,
        variables=sharding.with_shardings(abstract, shardings))['variables']
  finally:
    manager.close()
  return Loaded(config, step, detection.Detector(config, model, mesh,
                                                 shardings), variables,
                workdir)


def _note_unchecked(workdir):
  if jax.process_index() == 0:
    print(f'note: {workdir} has no {provenance.RECORD_NAME} (trained before '
          'maxmicro recorded it), so nothing checks that the features are '
          'the ones its detector was trained on.')


def check_features_trained_on(workdir, config):
  """Eval and submit: refuses a features directory whose features are not
  the ones the detector was trained on (re-extracted since, by another
  backbone or checkpoint step)."""
  meta = features_lib.check_features(config)
  directory = features_lib.features_dir(config)
  checked = provenance.check(
      workdir, meta['identity'], what=f'the features in {directory}',
      remedy='Extract the features it was trained on again (python run.py '
      '--mode=features with the recorded backbone, into a directory of '
      'their own: config.detection.features_dir) and pass that config with '
      '--config, or train a detector on the current features.')
  if not checked:
    _note_unchecked(workdir)


def check_backbone_trained_on(workdir, config):
  """Predict: refuses a backbone (workdir, checkpoint step, weights file)
  other than the one whose features the detector was trained on."""
  current = features_lib.open_backbone(config, with_variables=False)
  checked = provenance.check(
      workdir, current.identity(config),
      what='the features its backbone computes now',
      remedy='Its backbone has changed since (a newer checkpoint, another '
      'workdir or weights file): restore the recorded one, or train a '
      'detector on features of the current backbone.',
      ignore=('dataset',))  # Predict reads video files, not the dataset.
  if not checked:
    _note_unchecked(workdir)


def format_map_table(metrics):
  """The 9 per-threshold mAPs and their mean, in percent."""
  rows = [f'{name:<8} {100 * value:6.2f}' for name, value in metrics.items()
          if name != 'mAP']
  rows.append(f'{"mAP":<8} {100 * metrics["mAP"]:6.2f}  (mean over the '
              'thresholds)')
  return '\n'.join(rows)


def evaluate(flags):
  """`--mode=eval`: prints the mAP of a checkpoint on a labelled split."""
  loaded = load(flags.workdir, flags.config, flags.checkpoint)
  split = flags.split or loaded.config.data.eval_split
  if split not in ('train', 'validation'):
    raise ValueError(f'--split={split}: MMA-52 evaluates on train or '
                     'validation (test is unlabelled; write its submission '
                     'with --mode=submit).')
  videos = loaded.split_videos(split)
  detections = loaded.detector(loaded.variables, videos)
  metrics = inference.detection_metrics(detections, videos,
                                        loaded.detector.classes)
  detection.write_eval_report(flags.workdir, split, loaded.step, metrics,
                              detections)
  print(f'{split} mAP of checkpoint step {loaded.step} ({len(videos)} '
        f'videos, {len(loaded.detector.classes)} classes; percent'
        f'{"; end to end" if loaded.frame_features is not None else ""}):')
  print(format_map_table(metrics))


def submit_mode(flags):
  """`--mode=submit`: detects on test, writes prediction.csv and the zip."""
  loaded = load(flags.workdir, flags.config, flags.checkpoint)
  videos = loaded.split_videos('test')
  detections = loaded.detector(loaded.variables, videos)
  rows = inference.submission_rows(detections)
  zip_path = os.path.join(os.path.abspath(flags.workdir), submit.ZIP_NAME)
  if jax.process_index() == 0:
    zip_path = submit.write_detection_submission(flags.workdir, rows)
  print(f'wrote {zip_path} ({len(videos)} test videos, {len(rows)} '
        f'detections, checkpoint step {loaded.step})')


def detect_files(loaded, paths):
  """`{path: (detections, duration)}` of video files, features computed
  by the backbone as extraction computes them."""
  computer = loaded.feature_computer()
  results = {}
  for path in paths:
    frames = video_lib.read_video(path)
    fps = video_lib.frame_rate(path)
    video = {
        'features': features_lib.video_features(
            computer, frames, loaded.config.detection.frame_stride),
        'video_id': path, 'fps': fps, 'num_frames': len(frames),
        'segments': np.zeros((0, 2), np.float32),
        'labels': np.zeros(0, np.int32)}
    results[path] = (loaded.detector(loaded.variables, [video])[path],
                     len(frames) / fps)
  return results


def predict(flags):
  """`--mode=predict --video=X`: prints the `--top_k` best detections of
  each video and saves its timeline plot."""
  from maxmicro import plots  # pylint: disable=g-import-not-at-top
  from maxmicro import predict as predict_lib  # pylint: disable=g-import-not-at-top
  if not flags.video:
    raise ValueError('--mode=predict needs --video=PATH (a video file or a '
                     'folder of them).')
  paths = predict_lib.find_videos(flags.video)
  loaded = load(flags.workdir, None, flags.checkpoint)
  plot_dir = os.path.join(flags.workdir, PREDICTIONS_SUBDIR)
  os.makedirs(plot_dir, exist_ok=True)
  report = {}
  for path, (found, duration) in detect_files(loaded, paths).items():
    shown = found[:flags.top_k]
    print(f'{path} ({duration:.1f} s): {len(found)} detections, the best '
          f'{len(shown)}:')
    for label, start, end, score in shown:
      print(f'  {labels.ACTION_CODES[label]:<4} '
            f'{labels.ACTION_NAMES[label]:<34} {start:6.2f}-{end:6.2f} s  '
            f'score {score:.3f}')
    plot = os.path.join(
        plot_dir, os.path.splitext(os.path.basename(path))[0] + '_timeline.png')
    plots.detection_timeline(shown, plot, duration=duration,
                             title=f'{os.path.basename(path)}: the best '
                             f'{len(shown)} detections')
    print(f'  timeline: {plot}', flush=True)
    report[path] = [{'class': label, 'code': labels.ACTION_CODES[label],
                     'name': labels.ACTION_NAMES[label], 't_start': start,
                     't_end': end, 'score': score}
                    for label, start, end, score in found]
  output = flags.output_json or os.path.join(flags.workdir, 'predictions.json')
  with open(output, 'w') as file:
    json.dump(report, file, indent=1)
  print(f'wrote {output}')


def extract(flags):
  """`--mode=features`: extracts the backbone features of every split."""
  config = flags.config
  if config is None or config.data.dataset != 'mma52':
    raise ValueError('--mode=features needs --config=a detection config '
                     '(data.dataset mma52, e.g. configs/mmad_demo.py).')
  config_checks.check_config(config, training=False)
  features_lib.open_backbone(config, with_variables=False)  # Fails early.
  prepare.ensure_mma52(config)
  directory = features_lib.extract_features(config)
  meta = detection_pipeline.read_meta(directory, how_to_extract='')
  print(f'wrote features of width {meta["feature_dim"]} to {directory} '
        f'({meta["clips_per_second"]:.1f} clips/s)')


# run.py's modes for a detection workdir.
MODES = {'eval': evaluate, 'predict': predict, 'submit': submit_mode,
         'features': extract}

