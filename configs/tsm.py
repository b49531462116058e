r"""TSM baseline: ResNet-50 with the temporal shift, no SE gate.

  python run.py --config=configs/tsm.py --workdir=workdirs/tsm
"""

from configs import manet


def get_config(arg=None):
  config = manet.get_config(arg)
  config.model.use_se = False
  return config
