"""Multi-scale deformable attention: everything about the op, one module per concern.

    contract.py          names, namespace, version, inputs, attributes, dtypes (torch-free; what everything reads)
    reference.py         the PyTorch reference, exact in float64
    lowering.py          how the model computes and exports it: reference, portable ONNX ops, or a plugin node
    kernel.py            the Triton kernel, its PyTorch launchers and the ahead-of-time configurations
    onnxruntime_op.py    the numpy implementation ONNX Runtime runs for the plugin nodes (torch-free)
    msDeformAttnPlugin.* the TensorRT IPluginV3 plugin around the compiled kernel
    README.md            the plugin's I/O, attributes, formats and limits

Importing this package imports nothing; import the module you need.
"""
