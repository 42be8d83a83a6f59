# Mask R-CNN + FPN with otxlite's ConvNeXt-Tiny backbone (model definition only;
# otxlite builds data pipelines and schedules itself).
# Backbone settings follow mmdet's
# configs/convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py,
# with otxlite's own ConvNeXt in place of mmpretrain's (same state-dict keys).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['otxlite.models'], allow_failed_imports=False)

# ImageNet-1k ConvNeXt-T from mmpretrain (mmclassification), as used by mmdet.
checkpoint_file = 'https://download.openmmlab.com/mmclassification/v0/convnext/downstream/convnext-tiny_3rdparty_32xb128-noema_in1k_20220301-795e9634.pth'  # noqa: E501

model = dict(
    # 300 RPN proposals per image at test time (MMDetection 1000, OTX 500): measured with
    # scripts/benchmark_proposals.py, the same mask mAP as 1000 (PyTorch and IR) and a 2.4x faster IR (README)
    test_cfg=dict(rpn=dict(max_per_img=300)),
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=[0, 1, 2, 3],
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))
