"""An ONNX Runtime CPU session over an in-memory graph (plugin nodes run as m2f's numpy ops), for calibration and
the fp16 sensitivity sweep."""
from __future__ import annotations


def open_session(model, threads: int | None = None, extra_outputs: list[str] = ()):
    """A session of ``model`` (onnx.ModelProto, not modified) with ``extra_outputs`` (tensor names) added as graph
    outputs."""
    import copy

    import onnx
    import onnxruntime as ort

    from m2f.runtime import custom_ops
    from m2f.threads import default_threads

    model = copy.deepcopy(model)  # prepare_model rewrites plugin nodes in place
    if extra_outputs:
        known = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in extra_outputs
                                  if t not in known)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.log_severity_level = 3  # fp16 graphs on the CPU provider: one warning per inserted Cast otherwise
    # ONNX Runtime 1.31 crashes (SIGSEGV) in its ORT_ENABLE_ALL layout passes on some partly-fp16 graphs with plugin
    # nodes (the sweep's m2f-flavor graph with only the prediction heads in fp16); the extended level computes the same
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    serialized, library = custom_ops.prepare_model(model)
    if library:
        options.register_custom_ops_library(library)
    return ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
