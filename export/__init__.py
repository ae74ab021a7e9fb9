"""Exporting keras_vit models: a serving SavedModel, and TFLite/LiteRT files in five modes.

Export works on any Keras classifier and on arrays: calibration images, test images and
labels (raw 0..255 pixels `[N, H, W, C]`) are passed in by the caller; nothing here reads
a dataset spec or imports `training`.

- `export.savedmodel.export_savedmodel`: SavedModel with `serving_default` (images) and
  `serving_bytes` (encoded JPEG/PNG) signatures, class names as an asset.
- `export.tflite.convert` / `write_tflite`: float32, float16, dynamic, int8, int16x8, and
  int8 with a selective float fallback (attention core, GELU).
- `export.graph`: the int8-friendly formulation of the ViT used for int8/int16x8.
- `export.bundle.export_modes`: every mode plus `report.md`/`report.json`.
- `export.evaluate.evaluate_tflite`: accuracy, agreement with Keras and latency.
- `export.ai_edge_quantizer.quantize`: AI Edge Quantizer recipes on the float32 file.
- `export.accelerator`: every file run on LiteRT's GPU accelerator, in a child process.
- `export.predictor.load_predictor`: probabilities from a `.keras`, SavedModel or `.tflite` file.
- `export.analysis`, `export.profile`: ops, static/integer checks, GPU Analyzer, per-op timing.
"""
