"""Shared pieces of the export tests: ONNX Runtime sessions and the PyTorch reference for the uint8 contract."""
import numpy as np
import onnxruntime as ort
import torch


def session(path):
    """An ONNX Runtime session on one thread; a plugin flavor's nodes run as m2f.runtime.custom_ops' numpy ops."""
    from m2f.runtime import custom_ops

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    rewritten, library = custom_ops.prepare(path)
    if library:
        so.register_custom_ops_library(library)
    return ort.InferenceSession(rewritten or str(path), so, providers=["CPUExecutionProvider"])


def random_batch(n, height, width, valid, seed=0):
    """uint8 images with random content everywhere, including the padding the graph must zero."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    return image, np.asarray(valid, np.int32).reshape(n, 2)


def detectron2_padded(model, image, valid) -> torch.Tensor:
    """The reference input: each image's valid part normalised, zero-padded to the canvas (detectron2's way)."""
    n, height, width, _ = image.shape
    x = torch.zeros(n, 3, height, width)
    for i, (h, w) in enumerate(valid):
        part = torch.from_numpy(image[i, :h, :w]).permute(2, 0, 1).float()
        x[i, :, :h, :w] = (part - model.pixel_mean) / model.pixel_std
    return x
