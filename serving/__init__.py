"""Serving on NVIDIA Triton Inference Server (no torch).

- ``repository``: ``m2f triton-repo``, a model repository for a production server (the network as an ONNX Runtime
  or TensorRT model, Python-backend pre/post-processing, an ensemble that chains them).
- ``server``: ``m2f serve``, a real Triton server in-process through PyTriton, bound to the m2f runtime.
- ``client``: a served model as a Predictor (``Predictor("http://host:8000/model")``), over HTTP or gRPC.
- ``protocol``: what a served model receives (an encoded image) and answers (JSON + PNG bytes), both ways.
"""
