"""Calibration data and INT8 (explicit Q/DQ; the legacy implicit calibrator for TensorRT 10). Not built yet."""
