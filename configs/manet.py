r"""MANet (ResNet-50 + SE + temporal shift) on MA-52.

Default: the contrastive label-embedding term with the project's label vectors.
`:paper` is the official model and loss exactly (300-d embedding branch,
CE + 50 x MSE to the official label vectors, which must be given):

  python run.py --config=configs/manet.py:paper --workdir=workdirs/manet \
      --config.loss.label_vectors=/data/1214_new_mean_Vectors.npy

`:tiny` is the seconds-on-a-CPU model the tests use.
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, paper=False, tiny=False)
  config = common.get_base_config()
  if arg.paper:
    config.model.embedding_dim = 300
    config.loss.embedding = 'mse'
    config.loss.embedding_weight = 50.0
    config.train.global_batch_size = 10
  if arg.tiny:
    common.apply_tiny(config)
  return config
