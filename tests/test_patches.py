"""Patches and unpatchify against the reference patchify, the patch-embedding shape table, bad sizes."""

import keras
import numpy as np
import pytest

from keras_vit import PatchEncoder, Patches, ViT, unpatchify


def reference_patchify(images_nchw, patch_size):
    """The reference (PyTorch) patchify, ported to NumPy and generalized to (pH, pW) patches:

    x.reshape(B, C, H//ps, ps, W//ps, ps).permute(0, 2, 4, 3, 5, 1).flatten(1, 2).flatten(2, 4)
    """
    patch_height, patch_width = patch_size
    batch, channels, height, width = images_nchw.shape
    x = images_nchw.reshape(
        batch, channels, height // patch_height, patch_height, width // patch_width, patch_width
    )
    x = x.transpose(0, 2, 4, 3, 5, 1)  # B, rows, cols, pH, pW, C
    rows, cols = x.shape[1], x.shape[2]
    return x.reshape(batch, rows * cols, patch_height * patch_width * channels)


# (height, width, channels, patch_size): square and non-square images, square and rectangular patches.
CASES = [
    (8, 8, 3, (2, 2)),
    (12, 8, 1, (4, 2)),
    (6, 10, 2, (3, 5)),
    (10, 6, 4, (1, 3)),
    (32, 48, 3, (16, 8)),
    (5, 7, 3, (5, 7)),  # a single patch covering the whole image
]


@pytest.mark.parametrize("height, width, channels, patch_size", CASES)
def test_patches_match_reference_patchify(height, width, channels, patch_size):
    rng = np.random.default_rng(0)
    images_nchw = rng.normal(size=(3, channels, height, width)).astype("float32")
    expected = reference_patchify(images_nchw, patch_size)

    layer_patch_size = patch_size if patch_size[0] != patch_size[1] else patch_size[0]
    got = keras.ops.convert_to_numpy(Patches(layer_patch_size)(images_nchw.transpose(0, 2, 3, 1)))

    rows, cols = height // patch_size[0], width // patch_size[1]
    assert got.shape == (3, rows * cols, patch_size[0] * patch_size[1] * channels)
    # A pure permutation: the values must be bit-identical, not just close.
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("height, width, channels, patch_size", CASES)
def test_unpatchify_inverts_patchify(height, width, channels, patch_size):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, height, width, channels)).astype("float32")
    patches = Patches(patch_size)(images)
    restored = unpatchify(patches, (height, width), patch_size)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), images)
    restored = unpatchify(patches, (height, width), patch_size, channels=channels)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), images)


def test_patch_order_is_row_major_over_the_image():
    # Each pixel holds its own (row, col); patch k must be the k-th block in reading order.
    height, width = 4, 6
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    images = np.stack([rows, cols], axis=-1)[None].astype("float32")
    patches = keras.ops.convert_to_numpy(Patches((2, 3))(images))[0].reshape(4, 2, 3, 2)
    for k, (r0, c0) in enumerate([(0, 0), (0, 3), (2, 0), (2, 3)]):
        np.testing.assert_array_equal(patches[k, ..., 0], rows[r0 : r0 + 2, c0 : c0 + 3])
        np.testing.assert_array_equal(patches[k, ..., 1], cols[r0 : r0 + 2, c0 : c0 + 3])


def test_shape_table_image_224_patch_16_dim_512():
    images = np.zeros((1, 224, 224, 3), dtype="float32")
    patches = Patches(16)(images)
    assert tuple(patches.shape) == (1, 196, 768)

    encoder = PatchEncoder(num_patches=196, hidden_dim=512)
    tokens = encoder(patches)
    assert tuple(encoder.projection(patches).shape) == (1, 196, 512)
    assert tuple(tokens.shape) == (1, 197, 512)
    assert encoder.compute_output_shape((1, 196, 768)) == (1, 197, 512)
    assert Patches(16).compute_output_shape((None, 224, 224, 3)) == (None, 196, 768)

    no_class = PatchEncoder(num_patches=196, hidden_dim=512, use_class_token=False)
    assert tuple(no_class(patches).shape) == (1, 196, 512)


def test_patch_encoder_adds_class_token_and_positions():
    rng = np.random.default_rng(2)
    patches = rng.normal(size=(2, 6, 12)).astype("float32")
    encoder = PatchEncoder(num_patches=6, hidden_dim=4, patch_grid=(2, 3))
    encoder.build(patches.shape)
    encoder.set_weights([rng.normal(size=w.shape).astype("float32") for w in encoder.get_weights()])
    weights = {w.path.split("/")[-1]: keras.ops.convert_to_numpy(w) for w in encoder.weights}

    projected = patches @ weights["kernel"] + weights["bias"]
    class_tokens = np.broadcast_to(weights["class_token"], (2, 1, 4))
    expected = np.concatenate([class_tokens, projected], axis=1) + weights["position_embedding"]
    got = keras.ops.convert_to_numpy(encoder(patches))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "image_shape, patch_size, numbers",
    [
        ((1, 10, 8, 3), 4, ("10", "4")),
        ((1, 8, 10, 3), 4, ("10", "4")),
        ((1, 12, 9, 1), (4, 2), ("9", "2")),
    ],
)
def test_non_divisible_image_raises_naming_both_sizes(image_shape, patch_size, numbers):
    with pytest.raises(ValueError, match="not divisible") as error:
        Patches(patch_size)(np.zeros(image_shape, dtype="float32"))
    for number in numbers:
        assert number in str(error.value)


def test_non_divisible_model_raises_naming_both_sizes():
    with pytest.raises(ValueError, match=r"height 30 is not divisible by patch height 4"):
        ViT(image_size=30, patch_size=4, num_layers=1, num_heads=1, hidden_dim=4, mlp_dim=4)
    with pytest.raises(ValueError, match=r"width 30 is not divisible by patch width 7"):
        ViT(image_size=(28, 30), patch_size=(4, 7), num_layers=1, num_heads=1, hidden_dim=4, mlp_dim=4)


@pytest.mark.parametrize("patch_size", ["16", 16.0, (16.5, 16), (4, 2, 1), (4,), True, (4, None), None])
def test_bad_patch_size_type_raises_type_error(patch_size):
    with pytest.raises(TypeError, match=r"patch_size must be an int or a pair of ints"):
        Patches(patch_size)


@pytest.mark.parametrize("patch_size", [0, -2, (4, 0), (-1, 4)])
def test_non_positive_patch_size_raises_value_error(patch_size):
    with pytest.raises(ValueError, match=r"patch_size must be positive"):
        Patches(patch_size)


def test_numpy_integer_patch_sizes_are_accepted():
    assert Patches(np.int64(4)).patch_size == (4, 4)
    assert Patches(np.array([4, 2])).patch_size == (4, 2)
    assert Patches([3, 5]).patch_size == (3, 5)


@pytest.mark.parametrize("shape", [(2, 8, 8), (8, 8, 3, 1, 1), (8,)])
def test_patches_reject_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"Patches expects images of shape \[batch, height, width, channels\]"):
        Patches(4)(np.zeros(shape, dtype="float32"))


def test_unpatchify_rejects_patches_that_do_not_fit():
    patches = np.zeros((1, 4, 12), dtype="float32")  # 2x2 patches of 2x2x3 fit an 4x4x3 image
    with pytest.raises(ValueError, match=r"do not fit image size \(6, 4\).*expected \[batch, 6, 12\]"):
        unpatchify(patches, (6, 4), 2)
    with pytest.raises(ValueError, match=r"with patch size \(2, 2\) and 2 channels"):
        unpatchify(patches, (4, 4), 2, channels=2)
    with pytest.raises(ValueError, match=r"unpatchify expects \[batch, num_patches, patch_dim\]"):
        unpatchify(np.zeros((4, 12), dtype="float32"), (4, 4), 2)
    with pytest.raises(ValueError, match=r"not divisible"):
        unpatchify(patches, (5, 4), 2)


def test_patches_in_a_model_with_unknown_spatial_size_raise_clearly():
    inputs = keras.Input(shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"static height, width and channels, got shape \(None, None, None, 3\)"):
        Patches(4)(inputs)
