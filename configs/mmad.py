r"""Multi-label micro-action detection on MMA-52, on backbone features.

  python run.py --config=configs/mmad.py --workdir=workdirs/mmad \
      --config.data.data_dir=/data/tfds \
      --config.detection.backbone_workdir=workdirs/manet

trains the temporal detector (`maxmicro.models.detector`) on per-step
features of a maxmicro recognition backbone (a MA-52 workdir: trained with
configs/manet.py, or converted official weights). The features (every 4th
frame, clips of the backbone's T steps) are extracted at the start when
there are none; `--mode=features` extracts them again (after the backbone
changed: training refuses stale ones). Then `--mode=eval`, `--mode=predict
--video=X.mp4` and `--mode=submit` as for recognition.

Sections: `data` (the built `mma52` dataset), `model` (the detector),
`detection` (backbone, features, windows, loss, decoding), `optim`, `train`,
`eval`. The recipe follows ActionFormer's (AdamW, lr 1e-4 at batch 16,
cosine with warmup, weight decay 0.05, clip 1.0): windows of 128 steps hold
the longest MMA-52 video (451 frames) whole.
"""

import ml_collections
from ml_collections import config_dict

from configs import common


def get_config(arg=None):
  common.parse_arg(arg)  # No variations yet: refuses any argument.
  base = common.get_base_config()
  config = ml_collections.ConfigDict()
  config.seed = 0
  # The trainer's ImageNet initialisation of recognition backbones; the
  # detector starts from scratch, so it stays None.
  config.init_from = config_dict.placeholder(str)
  # None, or a fake MMA-52 to write and build (configs/mmad_demo.py).
  config.synthetic_data = None

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'mma52'  # Picks the task (maxmicro.tasks.TASKS).
  config.data.builder_config = 'default'
  config.data.data_dir = config_dict.placeholder(str)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'

  config.model = ml_collections.ConfigDict()  # The TemporalDetector.
  config.model.num_levels = 5  # 128, 64, 32, 16, 8 points.
  config.model.width = 256
  config.model.kernel_size = 3
  config.model.head_depth = 2
  config.model.attention_window = 9  # None: convolutions only.
  config.model.num_heads = 4
  # Instance lengths (steps) per level; None: [4, 8) * 2**level.
  config.model.regression_ranges = None
  config.model.prior_probability = 0.01
  config.model.dtype = 'auto'

  config.detection = ml_collections.ConfigDict()
  # A maxmicro recognition workdir whose model computes the features.
  config.detection.backbone_workdir = config_dict.placeholder(str)
  config.detection.backbone_checkpoint = 'latest'  # Or 'best', or a step.
  # None: <data_dir>/mma52_features/<builder_config>.
  config.detection.features_dir = config_dict.placeholder(str)
  config.detection.frame_stride = 4  # Frames per step.
  config.detection.features_batch_size = 16  # Clips per extraction batch.
  config.detection.window_size = 128  # L, steps per window.
  config.detection.eval_window_stride = 64  # Steps between long windows.
  config.detection.max_instances = 32  # K, instances kept per window.
  # Class ids the detector learns and is scored on; None: all 52 (the
  # benchmark's mAP). A subset is scored over itself (see README).
  config.detection.classes = None
  config.detection.center_sample_radius = 1.5
  config.detection.focal_alpha = 0.25
  config.detection.focal_gamma = 2.0
  config.detection.regression_weight = 1.0
  config.detection.score_threshold = 0.001
  config.detection.candidates_per_window = 2000
  config.detection.min_length = 0.0  # Seconds.
  config.detection.nms_sigma = 0.5
  config.detection.min_score = 0.001
  config.detection.max_detections = 100  # Per video.
  # Control runs: 'classes' gives every training instance another's class,
  # 'videos' every training video another's instances; 'none' trains.
  config.detection.shuffle_train_labels = 'none'

  config.optim = base.optim
  config.optim.name = 'adamw'
  config.optim.base_learning_rate = 1e-4
  config.optim.base_batch_size = 16
  config.optim.weight_decay = 0.05
  config.optim.grad_clip_norm = 1.0
  config.optim.schedule = 'cosine'
  config.optim.warmup_epochs = 5.0
  config.optim.fc_lr5 = False  # MANet's head rule; the detector has no fc.

  config.train = base.train
  config.train.global_batch_size = 16
  config.train.num_epochs = 40
  config.train.log_every_steps = 50
  config.train.checkpoint_every_steps = 1000
  config.train.eval_every_epochs = 5

  config.eval = base.eval
  config.eval.global_batch_size = 16  # Windows per batch.
  return config
