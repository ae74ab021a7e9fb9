"""tf-keras-vis on a ViT: Saliency, SmoothGrad, GradCAM, GradCAM++ and ScoreCAM.

The CAM methods of tf-keras-vis need a spatial feature map `[B, rows, cols, D]`,
which a ViT does not have: its blocks carry a token sequence `[B, T, D]`.
`spatial_model` rebuilds the ViT as a functional model (sharing its layers and
weights) whose token sequence at a chosen block is reshaped to the patch grid by a
`Reshape` layer named `SPATIAL_LAYER`, then flattened back and run through the
remaining blocks, so the logits are unchanged and tf-keras-vis can take the
gradients (or masks) at that layer.
"""

import functools
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_vit.explain.maps import check_vit, upsample

SPATIAL_LAYER = "patch_token_grid"
SALIENCY_METHODS = ("saliency", "smoothgrad", "gradcam", "gradcam++", "scorecam")


def default_block(model):
    """The block whose *input* tokens the CAM methods use by default.

    With class-token pooling the last block's output patch tokens never reach the
    logits (only the class token is pooled), so their gradient is zero; the input
    of the last block is the latest sequence that does (as pytorch-grad-cam's ViT
    recipe uses `blocks[-1].norm1`). With average pooling the encoder output works.
    """
    return model.num_layers if model.pooling == "gap" else model.num_layers - 1


def spatial_model(model, block=None):
    """A functional model with the ViT's weights, exposing its patch tokens as a grid.

    Args:
        model: a `keras_vit.ViT` with its classification head.
        block: the tokens *entering* block `block` are exposed: 0 = the patch
            embeddings, `num_layers` = the encoder output. Default: `default_block`.

    Returns:
        `keras.Model` mapping raw images `[B, H, W, C]` to the ViT's outputs
        `[B, num_classes]`, with a layer `SPATIAL_LAYER` of output `[B, rows, cols, D]`.
    """
    check_vit(model)
    if not model.include_top:
        raise ValueError("explanations need a model with its classification head (include_top=True)")
    if block is None:
        block = default_block(model)
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 0 <= block <= model.num_layers:
        raise ValueError(f"block must be an int in [0, {model.num_layers}] (the tokens entering that block), got {block!r}")
    rows, cols = model.patch_grid
    prefix = int(model.use_class_token)
    layer_names = {layer.name for layer in model.layers}

    inputs = keras.Input(shape=(*model.image_size, model.channels), name="images")
    x = model.embed(inputs)
    for layer in model.blocks[:block]:
        x = layer(x)
    grid = keras.layers.Reshape((rows, cols, model.hidden_dim), name=SPATIAL_LAYER)(x[:, prefix:])
    tokens = keras.layers.Reshape((rows * cols, model.hidden_dim), name="patch_token_sequence")(grid)
    x = keras.layers.Concatenate(axis=1, name="tokens")([x[:, :prefix], tokens]) if prefix else tokens
    for layer in model.blocks[block:]:
        x = layer(x)
    x = model.get_layer("pooling")(model.get_layer("encoder_norm")(x))
    if "pre_logits" in layer_names:
        x = model.get_layer("pre_logits")(x)
    outputs = model.get_layer("head")(x)
    return keras.Model(inputs, outputs, name=f"{model.name}_spatial_{block}")


class SaliencyExplainer:
    """tf-keras-vis methods on one ViT; builds the tf-keras-vis objects once and reuses them.

    Every method takes raw 0..255 images `[B, H, W, C]` and the class to explain
    per image `[B]`, and returns float32 maps `[B, H, W]` scaled to [0, 1] per image.
    """

    def __init__(self, model, block=None):
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        check_vit(model)
        self.model = model
        self.block = default_block(model) if block is None else block
        self._spatial = spatial_model(model, self.block)
        # ReplaceToLinear makes the head emit logits (scores of a softmax head
        # saturate); tf-keras-vis clones the model first, so the caller's ViT keeps
        # its activation. ScoreCAM applies its own softmax to these logits.
        self._modifier = ReplaceToLinear()
        self._cache = {}

    def _visualizer(self, kind):
        if kind not in self._cache:
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.saliency import Saliency
            from tf_keras_vis.scorecam import Scorecam

            visualizer = {"saliency": Saliency, "gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam}[kind]
            # Share one cloned, linearized model between all methods: cloning a ViT
            # costs as much as several explanations.
            if self._cache:
                visualizer = visualizer(next(iter(self._cache.values())).model, clone=False)
            else:
                visualizer = visualizer(self._spatial, model_modifier=self._modifier, clone=True)
                # This clone is ours alone, so two instance-level patches are safe:
                # ScoreCAM calls `predict` with Keras' default progress bar, which
                # would print one bar per explanation; and Saliency/SmoothGrad call
                # the model eagerly, 4x slower than a traced call for vit_ti16 at
                # 224 (same gradients). The CAM methods build their own model per
                # call from this one's graph, so they stay eager.
                visualizer.model.predict = functools.partial(visualizer.model.predict, verbose=0)
                visualizer.model.call = tf.function(visualizer.model.call, reduce_retracing=True)
            self._cache[kind] = visualizer
        return self._cache[kind]

    @staticmethod
    def _score(class_ids):
        from tf_keras_vis.utils.scores import CategoricalScore

        return CategoricalScore([int(c) for c in np.ravel(class_ids)])

    def _run(self, kind, *args, **kwargs):
        with warnings.catch_warnings():
            # tf-keras-vis feeds a one-input model a list of inputs, which Keras 3
            # accepts with a UserWarning about the input structure.
            warnings.filterwarnings("ignore", message="The structure of `inputs`", category=UserWarning)
            return self._visualizer(kind)(*args, **kwargs)

    def _finish(self, maps):
        maps = np.nan_to_num(np.asarray(maps, dtype="float32"))
        return upsample(maps, self.model.image_size, "bilinear")

    def saliency(self, images, class_ids):
        """Vanilla gradient saliency (Simonyan et al. 2014): max over channels of |d score / d pixel|."""
        images = np.asarray(images, dtype="float32")
        return self._finish(self._run("saliency", self._score(class_ids), images))

    def smoothgrad(self, images, class_ids, samples=20, noise=0.2, seed=0):
        """SmoothGrad (Smilkov et al. 2017): saliency averaged over `samples` noisy copies.

        `noise` is the noise standard deviation as a share of each image's value range.
        """
        if int(samples) < 1:
            raise ValueError(f"smoothgrad samples must be at least 1, got {samples}")
        images = np.asarray(images, dtype="float32")
        # tf-keras-vis draws the noise from NumPy's global generator and takes no seed: seed it
        # for this call only, and give the caller's generator back its state.
        caller_state = np.random.get_state()
        np.random.seed(seed)
        try:
            maps = self._run(
                "saliency",
                self._score(class_ids), images, smooth_samples=int(samples), smooth_noise=float(noise)
            )
        finally:
            np.random.set_state(caller_state)
        return self._finish(maps)

    def _cam(self, kind, images, class_ids, **options):
        images = np.asarray(images, dtype="float32")
        # expand_cam=False and our own upsampling: tf-keras-vis zooms with
        # scipy's corner-aligned grid, which shifts a patch's value by up to half a
        # patch; `upsample` keeps every method aligned on the same patch centres.
        maps = self._run(
            kind,
            self._score(class_ids),
            images,
            penultimate_layer=SPATIAL_LAYER,
            seek_penultimate_conv_layer=False,
            expand_cam=False,
            **options,
        )
        return self._finish(maps)

    def gradcam(self, images, class_ids):
        """Grad-CAM (Selvaraju et al. 2017) on the patch-token grid."""
        return self._cam("gradcam", images, class_ids)

    def gradcam_plus_plus(self, images, class_ids):
        """Grad-CAM++ (Chattopadhyay et al. 2018) on the patch-token grid."""
        return self._cam("gradcam++", images, class_ids)

    def scorecam(self, images, class_ids, max_channels=None, batch_size=32):
        """Score-CAM (Wang et al. 2020) on the patch-token grid.

        Runs the model once per token channel (hidden_dim masked images per image);
        `max_channels` keeps only the channels of largest spatial variance
        (Faster Score-CAM).
        """
        return self._cam("scorecam", images, class_ids, max_N=max_channels, batch_size=batch_size)
