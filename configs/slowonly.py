r"""SlowOnly-R50 on MA-52: PCAN's RGB pathway as a recogniser of its own.

  python run.py --config=configs/slowonly.py --workdir=workdirs/slowonly \
      --config.init_from=/weights/resnet50-0676ba61.pth

`:tiny` is the seconds-on-a-CPU SlowOnly the tests use.

Model: mmaction2 `ResNet3dSlowOnly` (`resnet3d_slowonly.py`; the RGB
pathway of kunli-cs/PCAN's `RGBPoseConv3D` without its lateral
connections): a (1, 7, 7) stem without temporal stride, no pool after stage
1, stages 3 and 4 inflated ('3x1x1'), `I3DHead` with dropout 0.5. 8 frames 8
apart (mmaction2's slowonly_r50 8x8x1). Recipe: the benchmark's official 3D
ResNet schedule on MA-52, as `configs/i3d.py` (SGD lr 0.01 for 64 clips,
x0.1 at 40 and 80 of 100 epochs, crop scales (1, 0.8)), and its
differences.
"""

from configs import common
from configs import i3d


def get_config(arg=None):
  arg = common.parse_arg(arg, tiny=False)
  config = common.get_base_config()
  config.model = i3d.resnet3d_model_config(
      conv1_kernel=(1, 7, 7), with_pool2=False, inflate=(0, 0, 1, 1),
      num_segments=8)
  i3d.apply_recipe(config, frame_interval=8)
  if arg.tiny:
    apply_tiny(config)
  return config


def apply_tiny(config):
  """4 frames (2 apart) of 32x32 through one narrow block per stage."""
  i3d.apply_tiny(config)
  config.model.update(conv1_kernel=(1, 7, 7), with_pool2=False,
                      conv1_stride_t=1, pool1_stride_t=1,
                      inflate=(0, 0, 1, 1), num_segments=4)
  config.data.frame_interval = 2
  return config
