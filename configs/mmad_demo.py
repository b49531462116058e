r"""The detection demo: the detector on a synthetic MMA-52, minutes on a CPU.

  python run.py --config=configs/demo.py --workdir=workdirs/demo  # backbone
  python run.py --config=configs/mmad_demo.py --workdir=workdirs/mmad_demo

(`make detection-demo` runs both; the first returns at once when the
recognition demo has already trained.) It writes a synthetic MMA-52 of
untrimmed videos with overlapping instances to `data/demo/mma52`, builds it
(`small` builder config) under `data/demo/tensorflow_datasets`, extracts
per-step features with the recognition demo's MANet (`workdirs/demo`,
trained on the synthetic MA-52, whose classes move as these do), trains the
detector on them and prints the validation mAP. Then:

  python run.py --workdir=workdirs/mmad_demo --mode=eval
  python run.py --workdir=workdirs/mmad_demo --mode=predict \
      --video=data/demo/mma52/val/val0000.mp4
  python run.py --workdir=workdirs/mmad_demo --mode=submit

The data uses `CLASSES`, 10 of the 52 classes (every body part), and the mAP
is the mean over those 10: every one of them has instances in the
validation split, so no class without ground truth makes it NaN. `:quick`
trains a tenth of the steps (a smoke test); `:shuffled=classes` and
`:shuffled=videos` are the control runs (`config.detection.
shuffle_train_labels`): every training instance takes another instance's
class, or every training video another video's instances.

`:end_to_end` trains the recognition demo's MANet with the detector, from
frames (`config.detection.end_to_end`; 4 windows of 48 steps a batch, 12
epochs), and evaluates with features its own trained trunk computes:

  python run.py --config=configs/mmad_demo.py:end_to_end \
      --workdir=workdirs/mmad_demo_end_to_end
"""

import ml_collections

from configs import common
from configs import mmad

# Two classes of each body part whose region the backbone sees, with
# different motions. The lower-limb and leg-hand regions lie at the bottom
# edge of the portrait frame, which the recognition demo's centre crop
# (48 of 67 rows) cuts through, so their classes are left out.
CLASSES = (0, 3, 7, 9, 12, 19, 33, 36, 38, 44)
VIDEOS_PER_SPLIT = (96, 48, 32)  # train, validation, test
GLOBAL_BATCH_SIZE = 8
# `:end_to_end`: windows per step, and epochs (one window of each video).
END_TO_END_BATCH_SIZE = 4
END_TO_END_EPOCHS = 12


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False, shuffled='none', end_to_end=False)
  config = mmad.get_config()
  config.synthetic_data = ml_collections.ConfigDict(dict(
      manual_dir='data/demo/mma52',
      videos_per_split=VIDEOS_PER_SPLIT,
      size=(80, 96),  # (width, height): as the recognition demo's clips.
      num_frames=(146, 300),  # 5-10 s at 30 fps (MMA-52: up to 451).
      instances_per_video=(1, 5),
      instance_frames=(16, 240),
      classes=CLASSES,
      seed=0,
  ))
  config.data.data_dir = 'data/demo/tensorflow_datasets'
  config.data.builder_config = 'small'

  # Windows of 80 steps hold a whole 300-frame video at stride 4.
  config.model.num_levels = 4
  config.model.width = 64
  config.model.head_depth = 2
  config.model.attention_window = None

  config.detection.backbone_workdir = 'workdirs/demo'
  config.detection.features_batch_size = 16
  config.detection.window_size = 80
  config.detection.eval_window_stride = 40
  config.detection.max_instances = 8
  config.detection.classes = CLASSES
  config.detection.candidates_per_window = 1000
  config.detection.shuffle_train_labels = arg.shuffled

  config.optim.base_learning_rate = 1e-3
  config.optim.base_batch_size = GLOBAL_BATCH_SIZE
  config.optim.weight_decay = 1e-4
  config.optim.warmup_epochs = 5.0

  steps_per_epoch = VIDEOS_PER_SPLIT[0] // GLOBAL_BATCH_SIZE
  config.train.global_batch_size = GLOBAL_BATCH_SIZE
  config.train.num_epochs = 8 if arg.quick else 80
  config.train.log_every_steps = 40
  config.train.checkpoint_every_steps = 10 * steps_per_epoch
  config.train.keep_checkpoints = 2
  config.train.eval_every_epochs = 4 if arg.quick else 40
  config.eval.global_batch_size = 16
  if arg.end_to_end:
    _end_to_end(config, quick=arg.quick)
  return config


def _end_to_end(config, quick):
  """The backbone trained with the detector, from frames (`:end_to_end`).

  Every step runs the backbone forward and backward on all frames of its
  windows, so batches are smaller and windows shorter than on features
  (4 x 48 step frames; a 48-step window covers 6.4 s at stride 4, and long
  videos are scored in overlapping windows), and training is shorter.
  """
  config.detection.end_to_end = True
  config.detection.window_size = 48  # 8 clips of the demo MANet's 6 steps.
  config.detection.eval_window_stride = 24
  config.train.global_batch_size = END_TO_END_BATCH_SIZE
  config.optim.base_batch_size = END_TO_END_BATCH_SIZE
  config.optim.warmup_epochs = 1.0
  steps_per_epoch = VIDEOS_PER_SPLIT[0] // END_TO_END_BATCH_SIZE
  config.train.num_epochs = 2 if quick else END_TO_END_EPOCHS
  config.train.eval_every_epochs = None  # At the end only.
  config.train.checkpoint_every_steps = 4 * steps_per_epoch
