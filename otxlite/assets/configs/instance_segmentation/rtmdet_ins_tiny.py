# RTMDet-Ins-tiny: MMDetection's real-time single-stage instance segmentation (CSPNeXt backbone, PAFPN,
# dynamic-kernel mask head). otxlite uses only the `model` of this config; its training recipe (mosaic,
# mix-up, AdamW, cosine schedule) is built by otxlite from the template's `recipe: rtmdet`.
_base_ = 'mmdet::rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py'

custom_imports = dict(imports=['otxlite.models'], allow_failed_imports=False)

# SyncBN needs a distributed GPU run; plain BatchNorm trains the same on one device and exports cleanly.
# The head is MMDetection's, with masks rescaled per axis for otxlite's plain resize (otxlite/models/rtmdet_ins.py).
norm_cfg = dict(type='BN')
model = dict(
    backbone=dict(norm_cfg=norm_cfg),
    neck=dict(norm_cfg=norm_cfg),
    bbox_head=dict(type='RTMDetInsSepBNHeadPlainResize', norm_cfg=dict(type='BN', requires_grad=True)))
