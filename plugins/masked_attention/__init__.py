"""Masked cross-attention: everything about the op, one module per concern.

    contract.py             names, namespace, version, inputs, dtypes, the mask threshold (torch-free)
    reference.py            the PyTorch reference, exact in float64
    lowering.py             how the model computes and exports it: the reference, or a plugin node
    kernel.py               the Triton kernel, its PyTorch launcher and the ahead-of-time configurations
    onnxruntime_op.py       the numpy implementation ONNX Runtime runs for the plugin node (torch-free)
    maskedAttentionPlugin.* the TensorRT IPluginV3 plugin around the compiled kernel
    README.md               the plugin's I/O, formats and limits

Importing this package imports nothing; import the module you need.
"""
