"""Per-op single sources of truth for the two special ops of Mask2Former.

``ms_deform_attn.py`` and ``masked_attention.py`` each hold everything about one op: the op contract (inputs,
shapes, dtypes, plugin name, namespace, version), the float64-exact PyTorch reference, the ONNX-exportable lowering
and the Triton kernel with its ahead-of-time configurations. ``aot.py`` compiles those kernels to cubin/PTX with C
launchers; ``triton_support.py`` holds the optional Triton import. The model, export, calibration and tests all
call into these files rather than re-implementing an op.
"""
