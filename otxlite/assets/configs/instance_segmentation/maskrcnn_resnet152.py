# Mask R-CNN, ResNet-152 + FPN (the AzureML AutoML model zoo's backbone depths).
_base_ = './maskrcnn_resnet50.py'

model = dict(
    backbone=dict(
        depth=152,
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet152-394f9c45.pth')),
)
