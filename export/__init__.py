"""Exporting keras_vit models: a serving SavedModel, and TFLite/LiteRT files in five modes.

- `export.savedmodel.export_savedmodel`: SavedModel with `serving_default` (images) and
  `serving_bytes` (encoded JPEG/PNG) signatures, class names as an asset.
- `export.tflite.convert` / `write_tflite`: float32, float16, dynamic, int8, int16x8, and
  int8 with a selective float fallback (attention core, GELU).
- `export.graph`: the int8-friendly formulation of the ViT used for int8/int16x8.
- `export.bundle.export_modes`: every mode plus `report.md`/`report.json`.
- `export.evaluate.evaluate_tflite`: accuracy, agreement with Keras and latency.
- `export.analysis`, `export.profile`: ops, static/integer checks, GPU Analyzer, per-op timing.
"""
