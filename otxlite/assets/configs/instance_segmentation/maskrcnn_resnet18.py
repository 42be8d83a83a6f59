# Mask R-CNN, ResNet-18 + FPN (the AzureML AutoML model zoo's backbone depths).
_base_ = './maskrcnn_resnet50.py'

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet18-f37072fd.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]),
)
