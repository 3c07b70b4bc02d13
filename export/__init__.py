"""torch -> ONNX (op flavors, in-graph pre/post heads) and ONNX -> TensorRT engine. Not built yet (issue: ONNX
export); nothing is exported from here until it is."""
