r"""A VideoMAE V2 ViT on MA-52, fine-tuned as the MAC 2024 winners did.

  python run.py --config=configs/videomae.py:base --workdir=workdirs/vit_b \
      --config.init_from=/weights/vit_b_k710_dl_from_giant.pth

`get_config('small'|'base'|'large'|'huge'|'giant')` (default `base`) picks the
width; `:tiny` is the seconds-on-a-CPU ViT the tests and the demo use. Add
`,remat` to recompute each block in the backward pass (ViT-L and up), and
`--config.train.fsdp=True` to shard parameters and optimizer state.

Model (OpenGVLab/VideoMAEv2 `models/modeling_finetune.py`, `vit_*_patch16_224`
and `vit_giant_patch14_224`; the sizes of VideoMAE V2 Table 1): tubelets
2x16x16, the fixed sine-cosine position table, LayerNorm eps 1e-6, q and v
biases, MLP ratio 4 (g: 6144), mean pooling then `fc_norm`, no layer scale
(`init_values` 0, the fine-tuning script's default).

Recipe: the MAC 2024 recognition winner's public mmaction2 config,
qklee-lz/ACMMM2024-MAC `configs/recognition/videomaev2/
vit-base-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py`:
16 frames by uniform (segment) sampling, one clip in training and two at test
averaged as probabilities; short side 256, random resized crop of area
0.3-1.0 to 224, colour jitter, random erasing of up to 20% of the area, flip
0.5; head dropout 0.4; AdamW lr 1e-3 at batch 16, betas (0.9, 0.999), weight
decay 0.01 (none on norms, biases and position tables), the backbone at 0.1x
the head's rate; linear warm-up from 0.1x over 2 epochs, then a cosine that
would reach zero at epoch 40, stopped after 38 epochs (`max_epochs=38`).

The VideoMAE paper's own fine-tuning options are fields, off by default so
the recipe above stays the winner's: layer-wise learning-rate decay
(`optim.layer_decay`, the paper's 0.75 for ViT-B), label smoothing
(`loss.label_smoothing`, 0.1) and mixup / cutmix (`data.mixup_alpha` 0.8,
`data.cutmix_alpha` 1.0), stochastic depth (`model.drop_path_rate`, 0.1).

The augmentations run in the input pipeline (crop, colour, erasing: numpy
and OpenCV per clip) and mixing on the device, in the loss.
"""

from configs import common

# (width, blocks, heads, MLP width) of the VideoMAE V2 family.
VARIANTS = {
    'small': (384, 12, 6, 1536),
    'base': (768, 12, 12, 3072),
    'large': (1024, 24, 16, 4096),
    'huge': (1280, 32, 16, 5120),
    'giant': (1408, 40, 16, 6144),
    'tiny': (64, 2, 2, 128),  # Not a published size: the suite's ViT.
}


def model_config(size, num_segments=16):
  """The `config.model` of a ViT of one of the VARIANTS."""
  embed_dim, depth, num_heads, mlp_dim = VARIANTS[size]
  return common.clip_model_config(
      family='vit',
      embed_dim=embed_dim,
      depth=depth,
      num_heads=num_heads,
      mlp_dim=mlp_dim,
      patch_size=16,
      tubelet_size=2,
      learnable_pos_embed=False,
      init_values=0.0,  # > 0: layer scale with this initial value.
      drop_path_rate=0.0,  # mmaction2's VisionTransformer default.
      remat=False,
      num_segments=num_segments,
      dropout_rate=0.4)  # Head dropout.


def get_config(arg=None):
  arg = common.parse_arg(arg, sizes=VARIANTS, size='base', tiny=False,
                         remat=False)
  if arg.tiny:
    arg.size = 'tiny'
  if arg.size not in VARIANTS:
    raise ValueError(f'unknown ViT size {arg.size!r}; one of '
                     f'{", ".join(VARIANTS)}.')
  config = common.get_base_config()
  config.model = model_config(arg.size)
  config.model.remat = arg.remat
  config.loss.embedding = 'none'

  config.data.eval_num_clips = 2
  config.data.train_crop = 'random_resized'
  config.data.crop_area_range = (0.3, 1.0)
  config.data.color_jitter = (0.5, 0.5, 0.5, 0.1)  # ColorJitter's defaults.
  # RandomErasing's default probability and fill, at most 20% of the area.
  config.data.erase_probability = 0.5
  config.data.erase_area_range = (0.02, 0.2)

  config.optim.name = 'adamw'
  config.optim.base_learning_rate = 1e-3
  config.optim.base_batch_size = 16
  config.optim.momentum = 0.9  # AdamW's b1.
  config.optim.adam_b2 = 0.999
  config.optim.weight_decay = 0.01
  config.optim.schedule = 'cosine'
  config.optim.warmup_epochs = 2.0
  config.optim.warmup_start_factor = 0.1
  config.optim.backbone_lr_multiplier = 0.1
  config.optim.layer_decay = 1.0  # The VideoMAE paper: 0.75 for ViT-B.
  # No clipping: VideoMAE's fine-tuning script's `clip_grad` default (None).
  config.optim.grad_clip_norm = 0.0
  config.optim.fc_lr5 = False
  config.optim.bias_lr_multiplier = 1.0

  config.train.global_batch_size = 16
  config.train.num_epochs = 38
  config.optim.schedule_epochs = 40.0
  config.eval.global_batch_size = 16
  if arg.size == 'tiny':
    apply_tiny(config)
  return config


def apply_tiny(config):
  """4 frames of 32x32 in 8x8 patches: 32 tokens through two narrow blocks."""
  common.apply_tiny_data(config)
  config.model.patch_size = 8
  config.model.num_segments = 4
  config.model.dropout_rate = 0.0
  config.data.eval_num_clips = 1
  config.optim.warmup_epochs = 0.0
  return config
