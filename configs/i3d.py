r"""I3D-R50 on MA-52, as the benchmark's official I3D config trains it.

  python run.py --config=configs/i3d.py --workdir=workdirs/i3d \
      --config.init_from=/weights/resnet50-0676ba61.pth

`:tiny` is the seconds-on-a-CPU 3D ResNet the tests use.

Model and recipe: VUT-HFUT/Micro-Action `mar_scripts/manet/mmaction2/
configs/recognition/i3d/my_i3d_r50_32x2x1_100e_micro_action_rgb.py` and its
bases (`_base_/models/i3d_r50.py`, mmaction2's `schedules/sgd_100e.py`):
mmaction2 `ResNet3d` depth 50, a (5, 7, 7) stem with temporal stride 2, a
temporal stride of 2 in the first pool and the pool after stage 1, blocks
inflated as ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)) in the
'3x1x1' style; `I3DHead` (average pool, dropout 0.5, `fc_cls`, 52 classes:
the official base names 59, which MA-52 does not have). 32 frames 2 apart,
short side 256, MultiScaleCrop of scales (1, 0.8) with equal sides, flip
0.5; validation one centre-cropped clip. SGD lr 0.01 for 8 GPUs x 8 clips,
momentum 0.9, weight decay 1e-4, gradients clipped at 40, x0.1 at epochs 40
and 80, 100 epochs. It starts from torchvision's ImageNet ResNet-50
(`pretrained2d`: give that file as `config.init_from`), inflated to 3D.
Where this differs: mmaction2's default optimizer decays biases and
BatchNorm parameters, this trainer never does; its test protocol (10 clips x
3 crops of 256) is not built: eval and submit score one centre crop of
`data.eval_num_clips` clips.
"""

from configs import common

# mmaction2's I3D-R50 inflation: per block of each stage, 1 inflates.
I3D_INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))


def resnet3d_model_config(**fields):
  """`config.model` of an mmaction2 `ResNet3d` (its defaults) and `fields`."""
  defaults = dict(
      family='resnet3d',
      depth=50,
      stage_blocks=None,  # None: the standard stages of `depth`.
      base_channels=64,
      conv1_kernel=(3, 7, 7),
      conv1_stride_t=1,
      pool1_stride_t=1,
      with_pool2=True,
      inflate=(1, 1, 1, 1),  # Per stage (every block), or per block.
      inflate_style='3x1x1',
      spatial_strides=(1, 2, 2, 2),
      temporal_strides=(1, 1, 1, 1),
      remat=False,
      num_segments=32,
      dropout_rate=0.5)  # I3DHead's.
  return common.clip_model_config(**{**defaults, **fields})


def get_config(arg=None):
  arg = common.parse_arg(arg, tiny=False)
  config = common.get_base_config()
  config.model = resnet3d_model_config(
      conv1_kernel=(5, 7, 7), conv1_stride_t=2, pool1_stride_t=2,
      inflate=I3D_INFLATE)
  apply_recipe(config, frame_interval=2)
  if arg.tiny:
    apply_tiny(config)
  return config


def apply_recipe(config, frame_interval):
  """The official 3D ResNet recipe on MA-52 (module docstring)."""
  config.loss.embedding = 'none'
  config.data.frame_interval = frame_interval
  config.data.crop_scales = (1.0, 0.8)
  config.data.max_distort = 0
  config.optim.name = 'sgd'
  config.optim.base_learning_rate = 0.01
  config.optim.base_batch_size = 64
  config.optim.momentum = 0.9
  config.optim.weight_decay = 1e-4
  config.optim.grad_clip_norm = 40.0
  config.optim.schedule = 'step'
  config.optim.decay_epochs = (40, 80)
  config.optim.fc_lr5 = False
  config.optim.bias_lr_multiplier = 1.0
  config.train.num_epochs = 100
  config.train.global_batch_size = 8
  config.eval.global_batch_size = 8
  return config


def apply_tiny(config):
  """8 frames of 32x32 through one narrow block per stage."""
  common.apply_tiny_data(config)
  config.model.update(stage_blocks=(1, 1, 1, 1), base_channels=4,
                      inflate=(1, 1, 1, 0), num_segments=8, dropout_rate=0.0)
  config.data.frame_interval = 1
  return config
