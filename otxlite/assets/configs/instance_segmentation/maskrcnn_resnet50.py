# Mask R-CNN, ResNet-50 + FPN: MMDetection's model with an ImageNet backbone from a direct URL
# (mmdet's `torchvision://` scheme needs torchvision, which otxlite does not depend on).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet50-0676ba61.pth')))
