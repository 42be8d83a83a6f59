# Mask R-CNN, EfficientNet-B2 + FPN (OTX's MaskRCNN-EfficientNetB2B): MMDetection's EfficientNet
# backbone, arch b2, with mmpretrain's ImageNet weights.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

model = dict(
    # 300 RPN proposals per image at test time (MMDetection 1000, OTX 500): measured with
    # scripts/benchmark_proposals.py, the same mask mAP as 1000 (PyTorch and IR) and a 2.4x faster IR (README)
    test_cfg=dict(rpn=dict(max_per_img=300)),
    backbone=dict(
        _delete_=True,
        type='EfficientNet',
        arch='b2',
        drop_path_rate=0.2,
        out_indices=(2, 3, 4, 5),
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=True, eps=1e-3, momentum=0.01),
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained',
            prefix='backbone',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/efficientnet/'
            'efficientnet-b2_3rdparty_8xb32_in1k_20220119-ea374a30.pth')),
    neck=dict(in_channels=[24, 48, 120, 352], out_channels=80, num_outs=5),
    rpn_head=dict(in_channels=80, feat_channels=80),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=80),
        bbox_head=dict(in_channels=80),
        mask_roi_extractor=dict(out_channels=80),
        mask_head=dict(in_channels=80)))
