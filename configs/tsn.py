r"""TSN baseline: ResNet-50 per frame, no SE gate, no temporal shift.

  python run.py --config=configs/tsn.py --workdir=workdirs/tsn
"""

from configs import manet


def get_config(arg=None):
  config = manet.get_config(arg)
  config.model.use_se = False
  config.model.use_shift = False
  return config
