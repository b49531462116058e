r"""Multi-label micro-action detection on MMA-52, on backbone features.

  python run.py --config=configs/mmad.py --workdir=workdirs/mmad \
      --config.data.data_dir=/data/tfds \
      --config.detection.backbone_workdir=workdirs/manet

trains the temporal detector (`maxmicro.models.detector`) on per-step
features of a maxmicro recognition backbone (a MA-52 workdir: trained with
configs/manet.py, or converted official weights; or ImageNet weights:
`--config.detection.backbone_init_from=resnet50.pth` in place of the
workdir). The features (every 4th
frame, clips of the backbone's T steps) are extracted at the start when
there are none; `--mode=features` extracts them again (after the backbone
changed: training refuses stale ones). Then `--mode=eval`, `--mode=predict
--video=X.mp4` and `--mode=submit` as for recognition.

Sections: `data` (the built `mma52` dataset), `model` (the detector),
`detection` (backbone, features, windows, loss, decoding), `optim`, `train`,
`eval`. `--config.detection.end_to_end=True` trains the backbone with the
detector, from frames, where memory allows (configs/mmad_demo.py:end_to_end
on the demo). The recipe follows ActionFormer's (AdamW, lr 1e-4 at batch 16,
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
  config.seed = base.seed
  # Recognition's ImageNet initialisation; the detector starts from
  # scratch, so it stays None (its backbone's weights: config.detection).
  config.init_from = base.get_ref('init_from')
  # None, or a fake MMA-52 to write and build (configs/mmad_demo.py).
  config.synthetic_data = base.synthetic_data

  # The base's fields, shared (typed placeholders stay overridable).
  config.data = ml_collections.ConfigDict({
      name: base.data.get_ref(name)
      for name in ('builder_config', 'data_dir', 'train_split', 'eval_split')})
  config.data.dataset = 'mma52'  # Picks the task (maxmicro.tasks.TASKS).

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
  # The backbone that computes the features, one of: a maxmicro recognition
  # workdir (and its checkpoint: 'latest', 'best' or a step) ...
  config.detection.backbone_workdir = config_dict.placeholder(str)
  config.detection.backbone_checkpoint = 'latest'
  # ... or a torchvision ResNet ImageNet state dict (.pth / .safetensors),
  # loaded into `backbone_config` as recognition's init_from loads it.
  config.detection.backbone_init_from = config_dict.placeholder(str)
  # With backbone_init_from: the recognition model (configs/manet.py's
  # MANet-R50) and its frames' size; a workdir brings its saved config.
  config.detection.backbone_config = ml_collections.ConfigDict({
      'model': base.model,
      'data': {name: base.data[name]
               for name in ('image_size', 'resize_short_side')}})
  # False: train the detector on features extracted once. True: train the
  # backbone's trunk with it, from frames (maxmicro.tasks.
  # detection_end_to_end), starting from the backbone workdir's weights.
  config.detection.end_to_end = False
  # End to end: the trunk's learning rate as a fraction of the detector's
  # (PointTAD fine-tunes its backbone at 1e-5 beside 2e-4); 0 freezes it.
  config.detection.backbone_lr_multiplier = 0.05
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
  # One learning rate for all (biases and norms still without decay).
  config.optim.bias_lr_multiplier = 1.0

  config.train = base.train
  config.train.global_batch_size = 16
  config.train.num_epochs = 40

  config.eval = base.eval
  config.eval.global_batch_size = 16  # Windows per batch.
  return config
