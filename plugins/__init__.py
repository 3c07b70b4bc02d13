"""Per-op single sources of truth for the two special ops of Mask2Former.

Each file holds everything about one op: the float64-safe PyTorch reference, the op contract (inputs, shapes,
dtypes, attributes, plugin name, namespace, version) and, as later stages land, its kernels and ONNX lowering.
The model, export, calibration and tests all call into these files rather than re-implementing the op.
"""
