"""Pure-PyTorch reference models for the converter tests (test-only).

`MANetReference` is the official MANet as the mmaction2 fork builds it, with
its module names, so its `state_dict()` has the official checkpoint's keys:
an mmaction2 ResNet of mmcv ConvModules (`conv`, `bn`), the TSM wrapper
around each block's conv1 (`conv1.conv.net`) holding the SE gate (`fcce`) and
the dead `action_p2_*` layers, and the `cls_head` with `fc_cls`, `fc_emb`,
`fc_emb_t`. `use_se=False` gives the TSM model (wrapper without `fcce` or
`action_p2_*`), and `use_shift=False` too the TSN model (plain conv1).
`TorchvisionResNetReference` has torchvision's ResNet names.

Inputs are `(N*T, 3, H, W)`, the T frames of a clip consecutive.
"""

import torch
from torch import nn


class ConvModule(nn.Module):
  """mmcv's ConvModule: conv (no bias), BatchNorm, optional ReLU."""

  def __init__(self, in_channels, out_channels, kernel_size, stride=1,
               padding=0, relu=True):
    super().__init__()
    self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                          padding, bias=False)
    self.bn = nn.BatchNorm2d(out_channels)
    self.relu = relu

  def forward(self, x):
    x = self.bn(self.conv(x))
    return torch.relu(x) if self.relu else x


def temporal_shift(x, num_segments, shift_div):
  """The official shift: fold channels from t+1, the next fold from t-1."""
  frames, channels, height, width = x.shape
  x = x.view(-1, num_segments, channels, height * width)
  fold = channels // shift_div
  out = torch.zeros_like(x)
  out[:, :-1, :fold] = x[:, 1:, :fold]
  out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
  out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
  return out.view(frames, channels, height, width)


class TemporalShift(nn.Module):
  """The TSM wrapper of conv1; with `use_se`, MANet's version of it."""

  def __init__(self, net, num_segments, shift_div=8, use_se=True):
    super().__init__()
    self.net = net
    self.num_segments = num_segments
    self.shift_div = shift_div
    self.use_se = use_se
    if use_se:
      channels = net.in_channels
      reduced = channels // 4
      # Built by the official module, never called by its forward.
      self.action_p2_squeeze = nn.Conv2d(channels, reduced, 1, bias=False)
      self.action_p2_conv1 = nn.Conv1d(reduced, reduced, 3, padding=1,
                                       bias=False)
      self.action_p2_expand = nn.Conv2d(reduced, channels, 1, bias=False)
      self.fcce = nn.Sequential(
          nn.Linear(channels, reduced, bias=False), nn.ReLU(),
          nn.Linear(reduced, channels, bias=False), nn.Sigmoid())

  def forward(self, x):
    if self.use_se:
      gate = self.fcce(x.mean(dim=(2, 3)))
      x = x * gate[:, :, None, None]
    return self.net(temporal_shift(x, self.num_segments, self.shift_div))


class Bottleneck(nn.Module):
  """mmaction2's Bottleneck, pytorch style (stride on the 3x3 conv)."""
  expansion = 4

  def __init__(self, in_channels, planes, stride, downsample):
    super().__init__()
    self.conv1 = ConvModule(in_channels, planes, 1)
    self.conv2 = ConvModule(planes, planes, 3, stride, 1)
    self.conv3 = ConvModule(planes, planes * 4, 1, relu=False)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    return torch.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class MMActionResNet(nn.Module):
  """mmaction2's ResNet-50 trunk, optionally with the TSM/MANet wrapper."""

  def __init__(self, stage_sizes=(3, 4, 6, 3), width=64, num_segments=8,
               use_shift=True, use_se=True):
    super().__init__()
    self.conv1 = ConvModule(3, width, 7, 2, 3)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    in_channels = width
    for stage, num_blocks in enumerate(stage_sizes):
      planes = width * 2**stage
      blocks = []
      for index in range(num_blocks):
        stride = 2 if stage > 0 and index == 0 else 1
        downsample = None
        if stride != 1 or in_channels != planes * 4:
          downsample = ConvModule(in_channels, planes * 4, 1, stride,
                                  relu=False)
        block = Bottleneck(in_channels, planes, stride, downsample)
        if use_shift:
          block.conv1.conv = TemporalShift(block.conv1.conv, num_segments,
                                           use_se=use_se)
        blocks.append(block)
        in_channels = planes * 4
      self.add_module(f'layer{stage + 1}', nn.Sequential(*blocks))
    self.num_stages = len(stage_sizes)
    self.out_channels = in_channels

  def forward(self, x):
    x = self.maxpool(self.conv1(x))
    for stage in range(self.num_stages):
      x = getattr(self, f'layer{stage + 1}')(x)
    return x


class MANetHead(nn.Module):
  """MANet's head: pool, fc_cls; fc_emb -> tanh -> fc_emb_t; mean over T."""

  def __init__(self, in_channels, num_classes, embedding_dim, num_segments):
    super().__init__()
    self.fc_cls = nn.Linear(in_channels, num_classes)
    self.fc_emb = nn.Linear(in_channels, embedding_dim)
    self.fc_emb_t = nn.Linear(embedding_dim, embedding_dim)
    self.num_segments = num_segments

  def forward(self, x):
    x = x.mean(dim=(2, 3))  # Dropout is the identity in eval mode.
    logits = self.fc_cls(x)
    embedding = self.fc_emb_t(torch.tanh(self.fc_emb(x)))
    return self._average(logits), self._average(embedding)

  def _average(self, frame_scores):
    """`(N*T, K)` -> `(N, K)`, the mean over each clip's T frames."""
    return frame_scores.view(-1, self.num_segments,
                             frame_scores.shape[-1]).mean(1)


class MANetReference(nn.Module):
  """The recognizer: `backbone` and `cls_head`, as mmaction2 names them."""

  def __init__(self, stage_sizes=(3, 4, 6, 3), width=64, num_segments=8,
               num_classes=52, embedding_dim=300, use_shift=True,
               use_se=True):
    super().__init__()
    self.backbone = MMActionResNet(stage_sizes, width, num_segments,
                                   use_shift, use_se)
    self.cls_head = MANetHead(self.backbone.out_channels, num_classes,
                              embedding_dim, num_segments)

  def forward(self, frames):
    """`(N*T, 3, H, W)` -> (action logits `(N, C)`, embedding `(N, D)`)."""
    return self.cls_head(self.backbone(frames))


class TorchvisionBottleneck(nn.Module):
  """torchvision's Bottleneck (v1.5), with its module names."""

  def __init__(self, in_channels, planes, stride, downsample):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    return torch.relu(self.bn3(self.conv3(y)) + identity)


class TorchvisionResNetReference(nn.Module):
  """torchvision's ResNet-50 names: conv1, bn1, layerS.I.*, fc."""

  def __init__(self, stage_sizes=(3, 4, 6, 3), width=64, num_classes=1000):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    in_channels = width
    for stage, num_blocks in enumerate(stage_sizes):
      planes = width * 2**stage
      blocks = []
      for index in range(num_blocks):
        stride = 2 if stage > 0 and index == 0 else 1
        downsample = None
        if stride != 1 or in_channels != planes * 4:
          downsample = nn.Sequential(
              nn.Conv2d(in_channels, planes * 4, 1, stride, bias=False),
              nn.BatchNorm2d(planes * 4))
        blocks.append(TorchvisionBottleneck(in_channels, planes, stride,
                                            downsample))
        in_channels = planes * 4
      self.add_module(f'layer{stage + 1}', nn.Sequential(*blocks))
    self.num_stages = len(stage_sizes)
    self.fc = nn.Linear(in_channels, num_classes)

  def features(self, frames):
    """`(N*T, 3, H, W)` -> pooled trunk features `(N*T, C)`."""
    x = self.maxpool(torch.relu(self.bn1(self.conv1(frames))))
    for stage in range(self.num_stages):
      x = getattr(self, f'layer{stage + 1}')(x)
    return x.mean(dim=(2, 3))


def randomize(model, seed):
  """Random weights and BatchNorm statistics at a scale that stays O(1).

  Convs ~ N(0, 1/fan_in); BatchNorm weight ~ U(0.5, 1), bias and running
  mean ~ U(-0.2, 0.2), running var ~ U(0.5, 1.5), so eval-mode BatchNorm
  does something the comparison can see; Linear layers keep torch's default
  uniform init with random biases. Returns `model` in eval mode.
  """
  generator = torch.Generator().manual_seed(seed)

  def uniform(tensor, low, high):
    tensor.copy_(torch.rand(tensor.shape, generator=generator) *
                 (high - low) + low)

  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        fan_in = module.weight[0].numel()
        module.weight.copy_(torch.randn(module.weight.shape,
                                        generator=generator) / fan_in**0.5)
      elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        uniform(module.weight, 0.5, 1.0)
        uniform(module.bias, -0.2, 0.2)
        uniform(module.running_mean, -0.2, 0.2)
        uniform(module.running_var, 0.5, 1.5)
      elif isinstance(module, nn.Linear):
        bound = 1 / module.in_features**0.5
        uniform(module.weight, -bound, bound)
        if module.bias is not None:
          uniform(module.bias, -bound, bound)
  return model.eval()


def draw_every_tensor(model, seed=0, scale=0.05):
  """Every float tensor of `model` drawn from N(0, scale^2), norm scales
  (weights of modules named `*norm*`) around 1 instead, so that no block's
  output vanishes or blows up; integer buffers (relative position indices)
  stay. For transformers (ViT, Swin); returns `model` in eval mode."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, tensor in model.state_dict().items():
      if not tensor.is_floating_point():
        continue
      *modules, leaf = name.split('.')
      offset = 1.0 if leaf == 'weight' and 'norm' in modules[-1] else 0.0
      tensor.copy_(offset + scale * torch.randn(tensor.shape,
                                                generator=generator))
  return model.eval()
