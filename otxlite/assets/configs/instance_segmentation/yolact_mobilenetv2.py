# YOLACT with a MobileNetV2 backbone (the YOLACT-Edge class of edge models): MMDetection's YOLACT at
# 550x550 (its anchor grid: 69, 35, 18, 9 and 5 cells), with MobileNetV2's stride-8/16/32 stages (32, 96
# and 320 channels) and ImageNet weights in place of ResNet-50. otxlite uses only the `model` of this
# config; the post-processing it exports (prototypes x coefficients, fast NMS, box crop) is otxlite's own
# (otxlite/export/yolact.py: mmdeploy has no YOLACT rewrite).
_base_ = 'mmdet::yolact/yolact_r50_1xb8-55e_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(2, 4, 6),
        act_cfg=dict(type='ReLU6'),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmdetection/v2.0/third_party/'
            'mobilenet_v2_batch256_imagenet-ff34753d.pth')),
    neck=dict(in_channels=[32, 96, 320], start_level=0))
