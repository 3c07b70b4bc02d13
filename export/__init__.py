"""torch -> ONNX: the graph contract the model is wrapped in (adapter.py), the in-graph post-processing heads
(heads.py) and the exporter with clean-up and metadata (onnx_export.py: ``export_onnx``, ``ExportOptions``).

Importing this package imports nothing; import the module you need. Precision conversion and engine building are
the next stage, ``m2f.calib``.
"""
