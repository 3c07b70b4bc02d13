"""The PyTorch Mask2Former, its checkpoint loaders and the reference post-processing (imports torch; no onnx).

    config.py, presets.py, d2_config.py   the architecture and dataset settings (no torch: read anywhere)
    checkpoint.py, checkpoint_io.py        load_checkpoint: detectron2, HuggingFace, mmdetection, m2f files
    hf.py, mmdet.py                        the weight-name maps of HuggingFace and mmdetection
    mask2former.py                         the model; resnet.py, swin.py, pixel_decoder.py, transformer_decoder.py
    postprocess.py                         the reference post-processing (semantic, instance, panoptic)

Importing this package imports nothing; import the module you need (``from m2f.model.checkpoint import
load_checkpoint``), so the torch-free modules stay torch-free.
"""
