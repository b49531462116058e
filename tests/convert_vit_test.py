"""ViT weights in: transformers' VideoMAE, and the official and mmaction2
names of the same weights, give the same logits through the converter."""

import re

import numpy as np
import pytest
import torch
import transformers

from configs import videomae
from maxmicro import convert
from maxmicro import models
from maxmicro.models import vit_names
from maxmicro.models import vit
from tests import torch_reference

CLIPS = 1


def _small_config():
  config = videomae.get_config('size=small')
  config.model.dtype = 'float32'
  return config


def _reference(config):
  """transformers' VideoMAE of `config`'s ViT, every tensor drawn at random."""
  model = config.model
  reference = transformers.VideoMAEForVideoClassification(
      transformers.VideoMAEConfig(
          hidden_size=model.embed_dim, num_hidden_layers=model.depth,
          num_attention_heads=model.num_heads,
          intermediate_size=model.mlp_dim, num_frames=model.num_segments,
          image_size=config.data.image_size, patch_size=model.patch_size,
          tubelet_size=model.tubelet_size, num_labels=model.num_classes,
          qkv_bias=True, use_mean_pooling=True,
          layer_norm_eps=vit.LAYER_NORM_EPSILON)).eval()
  return torch_reference.draw_every_tensor(reference)


@pytest.fixture(scope='module')
def small():
  """(config, transformers state dict, video, the reference's logits)."""
  config = _small_config()
  reference = _reference(config)
  video = np.random.default_rng(0).normal(
      size=models.input_shape(config, CLIPS)).astype(np.float32)
  with torch.no_grad():
    logits = reference(pixel_values=torch.from_numpy(video).permute(
        0, 1, 4, 2, 3)).logits.numpy()
  state_dict = {key: value.numpy()
                for key, value in reference.state_dict().items()}
  return config, state_dict, video, logits


def _logits(config, state_dict):
  variables = convert.torch_to_variables(state_dict, config)
  return np.asarray(models.build_model(config).apply(
      variables, _small_video(config))['action_logits'])


def _small_video(config):
  return np.random.default_rng(0).normal(
      size=models.input_shape(config, CLIPS)).astype(np.float32)


def _assert_close(ours, theirs):
  # XLA and torch sum the same float32 products in other orders (dots of
  # 384-1536 terms, 1568-token softmaxes, 12 blocks): each differs by a few
  # ulps, which accumulate to a few 1e-7 of the logits' scale; 1e-4 of it
  # bounds that with margin.
  scale = np.abs(theirs).max()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


def official_names(state_dict):
  """transformers' names -> the official VideoMAE V2 fine-tuning ones."""
  official = {}
  for key, value in state_dict.items():
    key = key.removeprefix('videomae.')
    key = key.replace('embeddings.patch_embeddings.projection',
                      'patch_embed.proj')
    key = re.sub(r'encoder\.layer\.(\d+)\.', r'blocks.\1.', key)
    key = (key.replace('attention.attention.query.bias', 'attn.q_bias')
           .replace('attention.attention.value.bias', 'attn.v_bias')
           .replace('attention.output.dense', 'attn.proj')
           .replace('intermediate.dense', 'mlp.fc1')
           .replace('output.dense', 'mlp.fc2')
           .replace('layernorm_before', 'norm1')
           .replace('layernorm_after', 'norm2')
           .replace('classifier', 'head'))
    official[key] = value
  for block in {int(k.split('.')[1]) for k in official if '.attention.' in k}:
    prefix = f'blocks.{block}.attention.attention'
    official[f'blocks.{block}.attn.qkv.weight'] = np.concatenate(
        [official.pop(f'{prefix}.{part}.weight')
         for part in ('query', 'key', 'value')])
  return official


def mmaction_names(official):
  """The official names -> mmaction2 1.x VisionTransformer + its head."""
  renamed = {}
  for key, value in official.items():
    key = key.replace('patch_embed.proj', 'patch_embed.projection')
    key = re.sub(r'mlp\.fc1', 'mlp.layers.0.0', key)
    key = re.sub(r'mlp\.fc2', 'mlp.layers.1', key)
    renamed['cls_head.fc_cls.' + key[5:] if key.startswith('head.')
            else 'backbone.' + key] = value
  return renamed


def test_logits_equal_transformers_videomae(small):
  config, state_dict, video, logits = small
  assert vit_names.detect_layout(state_dict) == vit_names.TRANSFORMERS
  variables = convert.torch_to_variables(state_dict, config)
  ours = models.build_model(config).apply(variables, video)['action_logits']
  _assert_close(np.asarray(ours), logits)


@pytest.mark.parametrize('rename, layout', [
    (official_names, vit_names.VIDEOMAE),
    (lambda sd: mmaction_names(official_names(sd)), vit_names.MMACTION)])
def test_official_and_mmaction_names_give_the_same_logits(small, rename,
                                                          layout):
  config, state_dict, _, logits = small
  renamed = rename(state_dict)
  if layout == vit_names.MMACTION:  # Its fixed table is a stored buffer.
    renamed['backbone.pos_embed'] = vit.sinusoid_table(
        1568, config.model.embed_dim)[None]
  assert vit_names.detect_layout(renamed) == layout
  _assert_close(_logits(config, renamed), logits)


def test_pretrained_encoder_initialises_the_backbone(small, tmp_path):
  config, state_dict, _, _ = small
  official = official_names(state_dict)
  pretrained = {'encoder.' + key: value for key, value in official.items()
                if not key.startswith(('head.', 'fc_norm.'))}
  pretrained['encoder.norm.weight'] = np.ones(384, np.float32)
  pretrained['decoder.blocks.0.norm1.weight'] = np.ones(192, np.float32)
  pretrained['mask_token'] = np.zeros((1, 1, 192), np.float32)
  conversion = convert.convert_state_dict(pretrained, config,
                                          backbone_only=True)
  assert conversion.layout == vit_names.VIDEOMAE_PRETRAINED
  assert len(conversion.skipped) == 2  # The decoder, the final norm.
  converted = {path[2:] for path in conversion.variables}
  assert ('patch_embed', 'kernel') in converted
  assert ('fc_norm', 'scale') not in converted  # Kept fresh.
  # As a run's init_from, from a .safetensors file.
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'pretrained.safetensors'
  safetensors.numpy.save_file(pretrained, str(path))
  fresh = jax_init(config)
  loaded = convert.load_backbone_init(str(path), fresh, config)
  # Weights moved from the file, or kept fresh: exact.
  np.testing.assert_array_equal(
      loaded['params']['backbone']['blocks_3']['attn']['q_bias'],
      official['blocks.3.attn.q_bias'])
  np.testing.assert_array_equal(loaded['params']['fc_cls']['kernel'],
                                fresh['params']['fc_cls']['kernel'])


def test_transformers_bare_encoder_initialises_the_backbone(small):
  # `VideoMAEModel` (no `videomae.` prefix, no fc_norm nor head) and
  # `VideoMAEForPreTraining` (its decoder and mask token left out).
  config, state_dict, _, _ = small
  encoder = {key.removeprefix('videomae.'): value
             for key, value in state_dict.items()
             if key.startswith('videomae.')}
  whole = convert.convert_state_dict(state_dict, config).variables
  for pretraining in (False, True):
    keys = dict(encoder)
    if pretraining:
      keys = {'videomae.' + key: value for key, value in keys.items()}
      keys['decoder.decoder_layers.0.intermediate.dense.weight'] = np.ones(
          (4, 4), np.float32)
      keys['mask_token'] = np.zeros((1, 1, 192), np.float32)
    conversion = convert.convert_state_dict(keys, config, backbone_only=True)
    assert conversion.layout == vit_names.TRANSFORMERS_ENCODER
    assert bool(conversion.skipped) == pretraining
    assert ('params', 'backbone', 'fc_norm', 'scale') not in (
        conversion.variables)
    for path, value in conversion.variables.items():
      np.testing.assert_array_equal(value, whole[path])  # Moved, not computed.


def jax_init(config):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.device_get(models.build_model(config).init(
      jax.random.key(0), np.zeros(models.input_shape(config), np.float32)))


def test_a_head_of_another_class_count_starts_fresh(small, caplog):
  config, state_dict, _, _ = small
  official = official_names(state_dict)
  official['head.weight'] = np.zeros((400, 384), np.float32)
  official['head.bias'] = np.zeros(400, np.float32)
  variables = convert.torch_to_variables(official, config)
  assert variables['params']['fc_cls']['kernel'].shape == (384, 52)
  assert np.abs(variables['params']['fc_cls']['kernel']).max() > 0
  assert 'has 400 classes, the config 52' in caplog.text
  np.testing.assert_array_equal(variables['params']['backbone']['fc_norm'][
      'scale'], official['fc_norm.weight'])  # Moved, not computed.


def test_learned_position_table_is_resized():
  config = videomae.get_config('tiny')
  config.model.learnable_pos_embed = True
  # The model's 4 frames at 16x16 in 8x8 patches: (2, 2, 2) tokens -> the
  # model's (2, 4, 4) at 32x32.
  grid = (2, 2, 2)
  table = np.random.default_rng(0).normal(
      size=(1, np.prod(grid), 64)).astype(np.float32)
  fitted = vit_names.fit_position_table(table, config)
  assert fitted.shape == (1, 2 * 4 * 4, 64)
  # A table constant over the grid stays that constant.
  constant = np.broadcast_to(table[:, :1], table.shape)
  # (Cubic weights sum to 1 in float32: a few ulps.)
  np.testing.assert_allclose(
      vit_names.fit_position_table(constant, config),
      np.broadcast_to(table[:, :1], (1, 32, 64)), rtol=1e-5, atol=1e-6)
  # A learned table into a model with the fixed one is an error.
  config.model.learnable_pos_embed = False
  with pytest.raises(ValueError, match='learnable_pos_embed=True'):
    vit_names.fit_position_table(table, config)


def test_unknown_layout_is_named():
  with pytest.raises(convert.ConversionError, match='not a ViT state dict'):
    convert.torch_to_variables({'conv1.weight': np.zeros((2, 3, 7, 7))},
                               _small_config())
