"""Patch embedding: linear projection, class token and position embedding."""

import keras
import numpy as np
from keras import ops


def resample_position_grid(grid_embedding, new_grid, method="bicubic"):
    """Resizes a position-embedding grid, as the original ViT fine-tuning code does.

    Args:
        grid_embedding: array `[rows, cols, D]`.
        new_grid: `(new_rows, new_cols)`.
        method: `"bilinear"` or `"bicubic"`.

    Returns:
        NumPy array `[new_rows, new_cols, D]`.
    """
    if method not in ("bilinear", "bicubic"):
        raise ValueError(f"method must be 'bilinear' or 'bicubic', got {method!r}")
    grid_embedding = np.asarray(grid_embedding, dtype="float32")
    if grid_embedding.ndim != 3:
        raise ValueError(f"grid_embedding must be [rows, cols, dim], got shape {grid_embedding.shape}")
    new_rows, new_cols = (int(n) for n in new_grid)
    if (new_rows, new_cols) == grid_embedding.shape[:2]:
        return grid_embedding
    # antialias=False matches the original code (scipy zoom / jax.image.resize
    # on upsampling); both are plain interpolation of the grid.
    resized = keras.ops.image.resize(
        grid_embedding[None], (new_rows, new_cols), interpolation=method, antialias=False
    )
    return np.asarray(keras.ops.convert_to_numpy(resized)[0], dtype="float32")


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchEncoder(keras.layers.Layer):
    """Projects flattened patches to `hidden_dim`, prepends a class token, adds positions.

    Shapes: `[B, N, P]` -> `[B, 1 + N, D]` (`[B, N, D]` without the class token).

    Args:
        num_patches: N, the number of patches per image.
        hidden_dim: D, the width of the token embedding.
        use_class_token: prepend a learnable class token.
        patch_grid: optional `(rows, cols)` of the patches; needed only to resample
            the position embedding to another grid. Defaults to a square grid.
        kernel_initializer: initializer of the projection.

    Example:
    >>> patches = keras.random.uniform((2, 196, 768))
    >>> tuple(PatchEncoder(num_patches=196, hidden_dim=192)(patches).shape)
    (2, 197, 192)
    """

    def __init__(
        self,
        num_patches,
        hidden_dim,
        use_class_token=True,
        patch_grid=None,
        kernel_initializer="lecun_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_patches) < 1 or int(hidden_dim) < 1:
            raise ValueError(
                f"num_patches and hidden_dim must be positive, got {num_patches} and {hidden_dim}"
            )
        self.num_patches = int(num_patches)
        self.hidden_dim = int(hidden_dim)
        self.use_class_token = bool(use_class_token)
        if patch_grid is None:
            side = int(round(self.num_patches**0.5))
            patch_grid = (side, side) if side * side == self.num_patches else (1, self.num_patches)
        self.patch_grid = tuple(int(n) for n in patch_grid)
        if self.patch_grid[0] * self.patch_grid[1] != self.num_patches:
            raise ValueError(
                f"patch_grid {self.patch_grid} does not hold num_patches={self.num_patches}"
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projection = keras.layers.Dense(
            self.hidden_dim,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="projection",
        )

    @property
    def num_tokens(self):
        return self.num_patches + int(self.use_class_token)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"PatchEncoder expects [batch, num_patches, patch_dim], got {tuple(input_shape)}"
            )
        if input_shape[1] is not None and input_shape[1] != self.num_patches:
            raise ValueError(
                f"PatchEncoder was made for {self.num_patches} patches, got {input_shape[1]}"
            )
        self.projection.build(input_shape)
        if self.use_class_token:
            self.class_token = self.add_weight(
                shape=(1, 1, self.hidden_dim), initializer="zeros", name="class_token"
            )
        self.position_embedding = self.add_weight(
            shape=(1, self.num_tokens, self.hidden_dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="position_embedding",
        )
        self.built = True

    def call(self, patches):
        tokens = self.projection(patches)
        if self.use_class_token:
            class_token = ops.cast(self.class_token, tokens.dtype)
            # Tile by the dynamic batch so that batch-1 exports stay static.
            class_tokens = ops.tile(class_token, (ops.shape(tokens)[0], 1, 1))
            tokens = ops.concatenate([class_tokens, tokens], axis=1)
        return tokens + ops.cast(self.position_embedding, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, self.hidden_dim)

    def resampled_position_embedding(self, new_grid, method="bicubic"):
        """Returns this layer's position embedding resampled to another patch grid.

        The class-token position is kept; the grid part is interpolated. Result:
        NumPy `[1, (1 +) new_rows * new_cols, D]`, ready for a `PatchEncoder` with
        `num_patches = new_rows * new_cols`.
        """
        embedding = keras.ops.convert_to_numpy(self.position_embedding)[0]
        return resample_position_embedding(
            embedding, self.patch_grid, new_grid, self.use_class_token, method
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_patches": self.num_patches,
                "hidden_dim": self.hidden_dim,
                "use_class_token": self.use_class_token,
                "patch_grid": self.patch_grid,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


def resample_position_embedding(embedding, old_grid, new_grid, has_class_token=True, method="bicubic"):
    """Resamples a `[T, D]` (or `[1, T, D]`) position embedding to another patch grid.

    Returns NumPy `[1, (1 +) new_rows * new_cols, D]`; the class position is kept as is.
    """
    embedding = np.asarray(embedding, dtype="float32")
    if embedding.ndim == 3:
        embedding = embedding[0]
    old_rows, old_cols = old_grid
    num_prefix = int(has_class_token)
    if embedding.shape[0] != num_prefix + old_rows * old_cols:
        raise ValueError(
            f"Position embedding has {embedding.shape[0]} tokens; expected "
            f"{num_prefix + old_rows * old_cols} for grid {tuple(old_grid)}"
            f"{' plus a class token' if num_prefix else ''}"
        )
    prefix, grid = embedding[:num_prefix], embedding[num_prefix:]
    grid = grid.reshape(old_rows, old_cols, -1)
    grid = resample_position_grid(grid, new_grid, method)
    resampled = np.concatenate([prefix, grid.reshape(-1, grid.shape[-1])], axis=0)
    return resampled[None]
