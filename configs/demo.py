r"""The demo: a small MANet on a synthetic MA-52, minutes on a laptop CPU.

  python run.py --config=configs/demo.py --workdir=workdirs/demo

writes the synthetic MA-52 to `data/demo/ma52` and builds it (`small` builder
config) under `data/demo/tensorflow_datasets` unless already there, trains,
evaluates on validation every 7 epochs and at the end, and prints the metrics. Then:

  python run.py --workdir=workdirs/demo --mode=eval
  python run.py --workdir=workdirs/demo --mode=predict \
      --video=data/demo/ma52/videos_val/0000_09_val.mp4
  python run.py --workdir=workdirs/demo --mode=submit

`:quick` trains two epochs instead of all (a smoke test). `:vit` trains the
tiny ViT of `configs/videomae.py` instead of MANet, from scratch with AdamW
(workdirs/demo_vit in the README).
"""

import ml_collections

from configs import common
from configs import videomae

# Synthetic training videos per class (52 classes); val and test get half.
VIDEOS_PER_CLASS = 12
GLOBAL_BATCH_SIZE = 16


def get_config(arg=None):
  arg = common.parse_arg(arg, quick=False, vit=False)
  config = common.get_base_config()
  config.synthetic_data = ml_collections.ConfigDict(dict(
      manual_dir='data/demo/ma52',
      videos_per_class=VIDEOS_PER_CLASS,
      size=(80, 96),  # (width, height): portrait, like MA-52.
      num_frames=(20, 28),
      seed=0,
  ))
  config.data.data_dir = 'data/demo/tensorflow_datasets'
  config.data.builder_config = 'small'
  config.data.image_size = 48
  config.data.resize_short_side = 56
  config.data.num_workers = 0  # Two cores: decoding in-process is enough.

  # A 3-stage bottleneck MANet of width 16 on 6 frames of 48x48.
  config.model.stage_sizes = (1, 1, 1)
  config.model.width = 16
  config.model.num_segments = 6
  config.model.embedding_dim = 384
  config.model.dropout_rate = 0.2

  config.optim.name = 'sgd'
  # From scratch, so far above the paper's 0.00125 (which fine-tunes
  # ImageNet weights): 0.1 per 10 clips, 0.16 at 16.
  config.optim.base_learning_rate = 0.1
  config.optim.schedule = 'cosine'
  config.optim.warmup_epochs = 1.0

  config.train.global_batch_size = GLOBAL_BATCH_SIZE
  config.train.num_epochs = 2 if arg.quick else 14
  config.train.log_every_steps = 10
  # Once per epoch, whatever --config.synthetic_data.videos_per_class says.
  config.train.checkpoint_every_steps = None
  config.train.keep_checkpoints = 2
  config.train.eval_every_epochs = 7
  config.eval.global_batch_size = 32
  if arg.vit:
    apply_vit(config)
  return config


def apply_vit(config):
  """The tiny ViT on 8 frames of 48x48 (8x8 patches: 144 tokens)."""
  config.model = videomae.model_config('tiny', num_segments=8)
  config.model.patch_size = 8
  config.model.dropout_rate = 0.0
  config.loss.embedding = 'none'
  config.optim.name = 'adamw'
  # From scratch: a ViT needs a larger rate and more epochs than MANet.
  config.optim.base_learning_rate = 3e-3
  config.optim.base_batch_size = GLOBAL_BATCH_SIZE
  config.optim.weight_decay = 0.05
  config.optim.fc_lr5 = False
  config.optim.bias_lr_multiplier = 1.0
  config.train.num_epochs = 30 if config.train.num_epochs > 2 else 2
  config.train.eval_every_epochs = 10
  return config
