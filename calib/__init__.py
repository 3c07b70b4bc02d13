"""Precision and engines: an fp32 m2f ONNX at another precision, measured on images, and ONNX -> TensorRT engine.
The precision lives in the ONNX (fp16 tensors with fp32 islands, int8 Q/DQ), so one path serves TensorRT 10 and 11;
none of this needs torch.

    convert.py      the one entry point: ``convert(model, output, precision, options)`` for fp16 | int8 | best
                    (``m2f convert``, and ``--precision`` of ``m2f export`` and ``m2f build``)
    fp16.py         the fp16 graph rewrite and the fp32 islands m2f keeps (``to_fp16``, ``block_of``)
    sensitivity.py  the per-block sweeps that measure which blocks must stay fp32 (or float), with their tables
    int8.py         ``calibrate``: INT8 as explicit Q/DQ from calibration statistics
    data.py         the measurement images, through the runtime's own pre-processing
    statistics.py, ranges.py, quantize.py   the INT8 steps; session.py the ONNX Runtime sessions they use
    engine.py       ONNX -> TensorRT engine (``m2f build``): plans, profiles, the sidecar, the trtexec line, and the
                    thin part that calls TensorRT

Importing this package imports nothing; import the module you need.
"""
