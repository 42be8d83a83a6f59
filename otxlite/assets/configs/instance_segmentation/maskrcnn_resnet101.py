# Mask R-CNN, ResNet-101 + FPN (the AzureML AutoML model zoo's backbone depths).
_base_ = './maskrcnn_resnet50.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet101-63fe2227.pth')),
)
