"""Explanations of ViT predictions: attention maps, attention rollout, tf-keras-vis saliency and CAMs.

- `maps`: attention of every block and head, the class token's attention and
  attention rollout, upsampled from the patch grid to the image.
- `saliency`: tf-keras-vis Saliency, SmoothGrad, GradCAM, GradCAM++ and ScoreCAM on
  the patch-token grid of a chosen block.
- `explainer`: every method by name (`Explainer`, `METHODS`).
- `overlay`: PNG pictures (heat map over the image, colour bar, class and probability).
"""

from keras_vit.explain.explainer import METHODS, Explainer, Explanation, check_images, parse_methods
from keras_vit.explain.maps import layer_attention_maps, layer_head_maps, rollout_maps, upsample
from keras_vit.explain.overlay import render_explanations, render_layer_heads
from keras_vit.explain.saliency import SPATIAL_LAYER, SaliencyExplainer, default_block, spatial_model

__all__ = [
    "METHODS",
    "SPATIAL_LAYER",
    "Explainer",
    "Explanation",
    "SaliencyExplainer",
    "check_images",
    "default_block",
    "layer_attention_maps",
    "layer_head_maps",
    "parse_methods",
    "render_explanations",
    "render_layer_heads",
    "rollout_maps",
    "spatial_model",
    "upsample",
]
