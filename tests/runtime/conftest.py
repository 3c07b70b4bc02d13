import dataclasses

import pytest
import torch

from m2f.export.onnx_export import ExportOptions, export_onnx

from ..conftest import built_once
from ..model.helpers import random_model, tiny_config


def confident_model(kind: str = "resnet", seed: int = 7):
    """A tiny random model with confident (not saturated) predictions and small test sizes, so that panoptic
    segments and instances exist and CPU runs take milliseconds."""
    cfg = dataclasses.replace(tiny_config(kind), min_size_test=96, max_size_test=160, object_mask_threshold=0.5,
                              overlap_threshold=0.3)
    model = random_model(cfg, seed=seed)
    with torch.no_grad():
        model.sem_seg_head.predictor.class_embed.weight.mul_(15)
        model.sem_seg_head.predictor.mask_embed.layers[2].weight.mul_(5)
    return model


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(model, path) of a dynamic uint8 ONNX export of ``confident_model``."""
    model = confident_model()  # deterministic: every worker builds the same one, only the export is shared
    path = built_once(tmp_path_factory, "runtime-dynamic",
                      lambda folder: export_onnx(model, folder / "model.onnx", ExportOptions(dynamic=True)).path)
    return model, path
