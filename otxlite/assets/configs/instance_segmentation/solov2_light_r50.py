# SOLOv2-light, ResNet-50 + FPN: MMDetection's box-free instance segmentation model with the light
# mask head, a CPU-friendly choice. otxlite uses only the `model` of this config.
_base_ = 'mmdet::solov2/solov2-light_r50_fpn_ms-3x_coco.py'

model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet50-0676ba61.pth')))
