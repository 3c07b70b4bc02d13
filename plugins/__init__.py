"""The two special ops of Mask2Former, one folder each, and what builds them.

    ms_deform_attn/     multi-scale deformable attention (the pixel decoder's core)
    masked_attention/   masked cross-attention (the transformer decoder's core)

Each op folder holds everything about its op, one module per concern (its ``__init__`` lists them): the torch-free
``contract`` (names, namespace, version, inputs, attributes, dtypes) that the runtime, the fp16 converter, the
ONNX-parser check and the C++ build all read; the float64-exact PyTorch ``reference``; the ``lowering`` the model uses
when exported (portable ONNX ops or a plugin node); the Triton ``kernel`` with its ahead-of-time configurations; the
numpy ``onnxruntime_op`` that ONNX Runtime runs for plugin nodes; and the TensorRT plugin (C++, README).

Beside them: ``lowering.py`` (which flavor the ops are exported as, a scoped setting), ``triton_support.py`` (the
optional Triton import), ``aot.py`` (kernels to cubin/PTX and C launchers, plus the C header of the contracts),
``build.py`` (the plugin library), ``common/`` (the C/C++ the plugins share) and ``CMakeLists.txt``.
docs/ops.md explains the ops and their numerics.
"""
