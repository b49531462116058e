"""Pieces shared by the config files: argument parsing and the base config."""

import ml_collections
from ml_collections import config_dict


def parse_arg(arg, sizes=(), **defaults):
  """Parses `key=value,flag` config arguments against named defaults.

  `parse_arg('paper,batch=4', paper=False, batch=8)` gives
  `ConfigDict(paper=True, batch=4)`; a bare name sets a bool to True, and a
  bare name of one of `sizes` sets `size` (`'base,remat'` is
  `'size=base,remat'`). An unknown name raises a ValueError that lists the
  allowed ones.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, _, value = item.partition('=')
    if not value and key in sizes:
      key, value = 'size', key
    if key not in defaults:
      allowed = sorted(defaults) + [f'size name {name}' for name in sizes]
      raise ValueError(f'unknown config argument {key!r}; allowed: '
                       f'{", ".join(allowed) or "none"}.')
    default = defaults[key]
    if not value:
      if not isinstance(default, bool):
        raise ValueError(f'config argument {key!r} needs a value ({key}=...).')
      parsed[key] = True
    elif isinstance(default, bool):
      parsed[key] = value.lower() in ('1', 'true', 'yes')
    else:
      parsed[key] = type(default)(value) if default is not None else value
  return parsed


def get_base_config():
  """MANet-R50 with the contrastive label-embedding term on MA-52."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Backbone weights to start from: None, or a torchvision-layout ResNet-50
  # ImageNet state dict (.pth / .safetensors), loaded when a run starts.
  config.init_from = config_dict.placeholder(str)
  # None, or a fake MA-52 to write under `manual_dir` and build into
  # `config.data` when that is not built yet (configs/demo.py sets one).
  config.synthetic_data = None

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'ma52'  # Picks the task (maxmicro.tasks.TASKS).
  config.data.builder_config = 'default'  # TFDS BuilderConfig of ma52.
  # TFDS data_dir; None is TFDS' default. Typed placeholders (None, settable
  # by --config.x=... overrides) stand for optional values.
  config.data.data_dir = config_dict.placeholder(str)
  config.data.image_size = 224
  config.data.resize_short_side = 256
  config.data.crop_scales = (1.0, 0.875, 0.75, 0.66)
  config.data.max_distort = 1
  config.data.flip_probability = 0.5
  # The train crop: 'multi_scale' (MANet's MultiScaleCrop of crop_scales) or
  # 'random_resized' (RandomResizedCrop of these area and aspect ranges).
  config.data.train_crop = 'multi_scale'
  config.data.crop_area_range = (0.08, 1.0)
  config.data.crop_aspect_range = (3 / 4, 4 / 3)
  # (brightness, contrast, saturation, hue) jitter ranges; all 0: off.
  config.data.color_jitter = (0.0, 0.0, 0.0, 0.0)
  # Random erasing: the probability of one box of this fraction of the area.
  config.data.erase_probability = 0.0
  config.data.erase_area_range = (0.02, 1 / 3)
  # Batch mixing on the device (recognition): Beta(alpha, alpha) weights;
  # 0 is off, both on picks one of the two per batch.
  config.data.mixup_alpha = 0.0
  config.data.cutmix_alpha = 0.0
  config.data.eval_num_clips = 1
  # None: TSN sampling (one frame per segment); an int k: a 3D network's
  # dense clip of num_segments frames k apart (mmaction2 SampleFrames).
  config.data.frame_interval = config_dict.placeholder(int)
  config.data.num_workers = 8  # grain worker processes per host.
  # Threads per worker (or in-process) that read and transform examples.
  config.data.read_threads = 2
  config.data.prefetch_buffer_size = 2
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'

  config.model = ml_collections.ConfigDict()
  config.model.family = 'resnet'  # The backbone (maxmicro.models.FAMILIES).
  config.model.depth = 50
  config.model.stage_sizes = None  # None: the standard stages of `depth`.
  config.model.width = 64  # Filters of the stem and the first stage.
  config.model.use_se = True
  config.model.se_reduction = 4
  config.model.use_shift = True
  config.model.num_segments = 8
  config.model.fold_div = 8
  config.model.num_classes = 52
  config.model.embedding_dim = 384  # D; must match the label vectors.
  config.model.dropout_rate = 0.5
  config.model.body_head = False  # 7-way body-part head (hierarchical).
  # MANet's label-embedding branch (fc_emb, fc_emb_t); loss.embedding needs it.
  config.model.embedding_head = True
  config.model.dtype = 'auto'  # 'auto' | 'float32' | 'bfloat16'.

  config.loss = ml_collections.ConfigDict()
  config.loss.label_smoothing = 0.0
  config.loss.embedding = 'contrastive'  # 'contrastive' | 'mse' | 'none'.
  config.loss.embedding_weight = 1.0
  config.loss.temperature = 0.1  # Contrastive only.
  # A (52, D) float32 .npy; None: the project's default vectors
  # (maxmicro/assets/label_vectors.npy, D=384).
  config.loss.label_vectors = config_dict.placeholder(str)
  config.loss.learnable_label_vectors = False
  config.loss.body_weight = 0.0  # Body-head CE weight (body_head only).

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'sgd'  # 'sgd' | 'adamw'.
  # The learning rate scales linearly with the global batch size from
  # base_learning_rate at base_batch_size (0.00125 at 10 in the paper).
  config.optim.base_learning_rate = 0.00125
  config.optim.base_batch_size = 10
  config.optim.momentum = 0.9
  config.optim.weight_decay = 1e-4
  config.optim.grad_clip_norm = 20.0
  config.optim.schedule = 'step'  # 'step' | 'cosine'.
  config.optim.decay_epochs = (30, 60)
  config.optim.decay_factor = 0.1
  config.optim.warmup_epochs = 0.0
  config.optim.warmup_start_factor = 0.0  # Warm up from this x the peak.
  # The epochs the cosine spans (None: the run's); a run may stop before its
  # schedule ends, as the MAC 2024 winner's 38 epochs of a 40-epoch cosine.
  config.optim.schedule_epochs = config_dict.placeholder(float)
  # The backbone's learning rate over the heads' (recognition).
  config.optim.backbone_lr_multiplier = 1.0
  config.optim.layer_decay = 1.0  # < 1: layer-wise decay (ViT only).
  config.optim.fc_lr5 = True  # fc_emb_t weight x5, bias x10 (official).
  # Dense biases learn at this multiple of the learning rate (mmaction2's
  # rule, as the official MANet trains; configs/mmad.py uses 1).
  config.optim.bias_lr_multiplier = 2.0
  config.optim.adam_b2 = 0.999  # AdamW only; its b1 is `momentum`.

  config.train = ml_collections.ConfigDict()
  config.train.global_batch_size = 64
  config.train.num_epochs = 80
  # None: num_epochs x steps per epoch (the schedule spans these steps).
  config.train.num_train_steps = config_dict.placeholder(int)
  # Split large parameters (and their optimizer moments) over the devices.
  config.train.fsdp = False
  # Micro-batches per optimizer step (gradients averaged): a batch larger
  # than the devices hold at once; it must divide the per-device batch.
  config.train.grad_accum_steps = 1
  config.train.log_every_steps = 50
  # None: once per epoch, from the steps per epoch of the data at run time.
  config.train.checkpoint_every_steps = config_dict.FieldReference(
      1000, field_type=int)
  config.train.keep_checkpoints = 3
  # A step with a NaN or Inf loss or gradient is never applied. 'stop': end
  # the run naming the step (the last good checkpoint stays the latest);
  # 'skip': go on and count such steps (`nonfinite_steps` in metrics.jsonl).
  config.train.nonfinite_policy = 'stop'
  # And at the end; None (or 0): at the end only.
  config.train.eval_every_epochs = 5

  config.eval = ml_collections.ConfigDict()
  config.eval.global_batch_size = 64
  return config


def clip_model_config(**fields):
  """`config.model` of a clip backbone family (ViT, Video Swin): `fields`
  and the heads every family shares, MANet's label-embedding branch off."""
  return ml_collections.ConfigDict(dict(
      num_classes=52,
      body_head=False,
      # MANet's label-embedding branch; set it with
      # --config.loss.embedding=contrastive to train as MANet's heads do.
      embedding_head=False,
      embedding_dim=384,
      dtype='auto',
      **fields))


def apply_tiny(config):
  """Shrinks a config to seconds on one CPU core: the suite's test model."""
  config.model.depth = 50
  config.model.stage_sizes = (1, 1)
  config.model.width = 8
  config.model.num_segments = 4
  # embedding_dim stays 384: the default label vectors' width.
  config.model.dropout_rate = 0.0
  return apply_tiny_data(config)


def apply_tiny_data(config):
  """32x32 crops, in-process input and batches of 4: any family's tiny runs."""
  config.data.image_size = 32
  config.data.resize_short_side = 36
  config.data.num_workers = 0
  config.train.global_batch_size = 4
  config.eval.global_batch_size = 4
  return config
