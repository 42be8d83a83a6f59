"""Tests for otxlite's ConvNeXt backbone (otxlite/models/convnext.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from mmdet.registry import MODELS

import otxlite.models  # noqa: F401  (registers ConvNeXt)
from otxlite.models.convnext import ConvNeXt, LayerNorm2d

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "instance_segmentation" / "maskrcnn_convnext.py"
TINY_DEPTHS = [3, 3, 9, 3]
TINY_CHANNELS = [96, 192, 384, 768]


def mmpretrain_keys(depths: list[int], out_indices=(0, 1, 2, 3), layer_scale: bool = True) -> set[str]:
    """State-dict keys of mmpretrain's ConvNeXt (linear_pw_conv=True), built from its layout rules."""
    keys = set()
    for i in range(len(depths)):
        # stem: 0 = conv, 1 = LN; later downsamples: 0 = LN, 1 = conv
        for sub in (0, 1):
            keys |= {f"downsample_layers.{i}.{sub}.weight", f"downsample_layers.{i}.{sub}.bias"}
        for j in range(depths[i]):
            for layer in ("depthwise_conv", "norm", "pointwise_conv1", "pointwise_conv2"):
                keys |= {f"stages.{i}.{j}.{layer}.weight", f"stages.{i}.{j}.{layer}.bias"}
            if layer_scale:
                keys.add(f"stages.{i}.{j}.gamma")
    for i in out_indices:
        keys |= {f"norm{i}.weight", f"norm{i}.bias"}
    return keys


def test_registry_build_and_output_shapes():
    model = MODELS.build(dict(type="ConvNeXt", arch="tiny"))
    assert isinstance(model, ConvNeXt)
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert isinstance(outs, tuple) and len(outs) == 4
    # strides 4, 8, 16, 32
    assert [tuple(o.shape) for o in outs] == [(1, 96, 16, 16), (1, 192, 8, 8), (1, 384, 4, 4), (1, 768, 2, 2)]


def test_out_indices_subset_and_negative():
    model = ConvNeXt(arch="tiny", out_indices=(1, -1)).eval()
    assert model.out_indices == [1, 3]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 192, 8, 8), (1, 768, 2, 2)]
    assert not hasattr(model, "norm0") and hasattr(model, "norm1") and hasattr(model, "norm3")


def test_gap_before_final_norm():
    model = ConvNeXt(arch={"depths": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}, out_indices=-1,
                     gap_before_final_norm=True).eval()
    with torch.no_grad():
        (out,) = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 64)


def test_state_dict_keys_match_mmpretrain_tiny():
    sd = ConvNeXt(arch="tiny").state_dict()
    expected = mmpretrain_keys(TINY_DEPTHS)
    # 4 downsample layers x 4 tensors + 18 blocks x 9 tensors + 4 output norms x 2 = 186
    assert len(expected) == 186
    assert set(sd) == expected
    for key in ("downsample_layers.0.0.weight", "downsample_layers.0.1.weight", "stages.0.0.depthwise_conv.weight",
                "stages.0.0.pointwise_conv1.weight", "stages.0.0.gamma", "norm3.weight"):
        assert key in sd
    # shapes that published checkpoints carry
    assert sd["downsample_layers.0.0.weight"].shape == (96, 3, 4, 4)
    assert sd["downsample_layers.1.0.weight"].shape == (96,)  # LN before the 2x2 conv
    assert sd["downsample_layers.1.1.weight"].shape == (192, 96, 2, 2)
    assert sd["stages.2.8.depthwise_conv.weight"].shape == (384, 1, 7, 7)
    assert sd["stages.3.2.pointwise_conv1.weight"].shape == (3072, 768)  # nn.Linear
    assert sd["stages.3.2.pointwise_conv2.weight"].shape == (768, 3072)
    assert sd["stages.0.0.gamma"].shape == (96,)


def test_no_layer_scale_drops_gamma():
    sd = ConvNeXt(arch="tiny", layer_scale_init_value=0.0, out_indices=(3,)).state_dict()
    assert set(sd) == mmpretrain_keys(TINY_DEPTHS, out_indices=(3,), layer_scale=False)


def test_linear_and_conv_pointwise_are_equivalent():
    arch = {"depths": [1, 2, 1, 1], "channels": [8, 16, 24, 32]}
    torch.manual_seed(0)
    lin = ConvNeXt(arch=arch, linear_pw_conv=True, layer_scale_init_value=0.5).eval()
    conv = ConvNeXt(arch=arch, linear_pw_conv=False, layer_scale_init_value=0.5).eval()
    sd = {k: (v[..., None, None] if "pointwise_conv" in k and v.dim() == 2 else v)
          for k, v in lin.state_dict().items()}
    conv.load_state_dict(sd)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(lin(x), conv(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_layernorm2d_normalizes_channels():
    ln = LayerNorm2d(6)
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    y = ln(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 5, 7), atol=1e-3, rtol=0)


def test_frozen_stages():
    model = ConvNeXt(arch="tiny", frozen_stages=2)
    model.train()
    for i in range(4):
        frozen = i < 2
        for p in list(model.downsample_layers[i].parameters()) + list(model.stages[i].parameters()):
            assert p.requires_grad is not frozen
        assert model.stages[i].training is not frozen
        assert model.downsample_layers[i].training is not frozen
    assert all(p.requires_grad for p in model.norm0.parameters())


def test_pretrained_init_with_prefix(tmp_path):
    arch = {"depths": [1, 1, 2, 1], "channels": [8, 16, 24, 32]}
    src = ConvNeXt(arch=arch, layer_scale_init_value=1.0)
    ckpt = {f"backbone.{k}": v + 0.25 for k, v in src.state_dict().items()}
    ckpt["head.fc.weight"] = torch.zeros(10, 32)  # classifier head is ignored by prefix
    path = tmp_path / "convnext.pth"
    torch.save({"state_dict": ckpt}, path)
    dst = ConvNeXt(arch=arch, init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="backbone."))
    dst.init_weights()
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, ckpt[f"backbone.{k}"])


def _mask_rcnn_model():
    from mmengine.config import Config
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.model.backbone.type == "ConvNeXt"
    assert cfg.model.backbone.init_cfg.checkpoint.startswith("https://download.openmmlab.com/")
    assert cfg.model.neck.in_channels == [96, 192, 384, 768]
    cfg.model.backbone.pop("init_cfg")  # nothing downloads
    cfg.model.backbone.drop_path_rate = 0.0
    return MODELS.build(cfg.model)


def _batch(size: int = 64):
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                                         batch_input_shape=(size, size), scale_factor=(1.0, 1.0)))
    masks = np.zeros((1, size, size), dtype=np.uint8)
    masks[0, 8:40, 12:48] = 1
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[12.0, 8.0, 48.0, 40.0]]), labels=torch.tensor([0]),
                                       masks=BitmapMasks(masks, size, size))
    return torch.rand(1, 3, size, size), [sample]


def test_mask_rcnn_config_forward_and_loss():
    model = _mask_rcnn_model()
    assert isinstance(model.backbone, ConvNeXt)
    inputs, samples = _batch()
    model.eval()
    with torch.no_grad():
        feats = model(inputs, samples, mode="tensor")
    assert len(feats) > 0
    model.train()
    losses = model(inputs, samples, mode="loss")
    assert {"loss_rpn_cls", "loss_cls", "loss_bbox", "loss_mask"} <= set(losses)
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stages[0][0].depthwise_conv.weight.grad is not None
