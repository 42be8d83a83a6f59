# Mask R-CNN, ResNet-50 + FPN: MMDetection's model with an ImageNet backbone from a direct URL
# (mmdet's `torchvision://` scheme needs torchvision, which otxlite does not depend on).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

model = dict(
    # 300 RPN proposals per image at test time (MMDetection 1000, OTX 500): measured with
    # scripts/benchmark_proposals.py, the same mask mAP as 1000 (PyTorch and IR) and a 2.4x faster IR (README)
    test_cfg=dict(rpn=dict(max_per_img=300)),
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='https://download.pytorch.org/models/resnet50-0676ba61.pth')))
