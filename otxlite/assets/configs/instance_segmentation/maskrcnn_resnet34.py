# Mask R-CNN, ResNet-34 + FPN (the AzureML AutoML model zoo's backbone depths).
_base_ = './maskrcnn_resnet50.py'

model = dict(
    # 300 RPN proposals per image at test time (MMDetection 1000, OTX 500): measured with
    # scripts/benchmark_proposals.py, the same mask mAP as 1000 (PyTorch and IR) and a 2.4x faster IR (README)
    test_cfg=dict(rpn=dict(max_per_img=300)),
    backbone=dict(
        depth=34,
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet34-b627a593.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]),
)
