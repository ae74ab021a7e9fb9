"""The pre-norm Transformer encoder block of ViT, with stochastic depth."""

import keras
from keras import ops


def check_rates(**rates):
    """Raises a ValueError naming the first rate (dropout, stochastic depth) outside [0, 1)."""
    for name, rate in rates.items():
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate}")


@keras.saving.register_keras_serializable(package="keras_vit")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a whole residual branch per sample while training.

    Keras has no core stochastic-depth layer (keras-cv's `StochasticDepth` wraps the
    residual sum, which does not fit a pre-norm block), so this one scales the branch.

    Shapes: `[B, ...]` -> `[B, ...]`.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype) < keep
        return ops.where(mask, x / keep, ops.zeros_like(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerBlock(keras.layers.Layer):
    """Pre-norm Transformer encoder block (Dosovitskiy et al. 2020, eq. 2-3).

        y = x + DropPath(Dropout(MHSA(LayerNorm(x))))
        z = y + DropPath(MLP(LayerNorm(y))),  MLP = Dense(mlp_dim, GELU), Dense(hidden_dim)

    Self-attention is written here rather than with `keras.layers.MultiHeadAttention`:
    one fused query/key/value projection is one `[T, D] x [D, 3D]` matrix product
    instead of three `EinsumDense` calls, and the graph stays 2-D matmuls and 4-D
    transposes, which is what TFLite's fully-connected and batch-matmul kernels
    (and their int8 versions) run fastest.

    Shapes: `[B, T, D]` -> `[B, T, D]`; with `return_attention_scores=True` also
    the attention weights `[B, num_heads, T, T]` (rows sum to 1).

    Example:
    >>> block = TransformerBlock(num_heads=3, hidden_dim=192, mlp_dim=768)
    >>> tokens, attention = block(keras.random.normal((2, 197, 192)), return_attention_scores=True)
    >>> tuple(attention.shape)
    (2, 3, 197, 197)
    """

    def __init__(
        self,
        num_heads,
        hidden_dim,
        mlp_dim,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_heads, hidden_dim, mlp_dim = int(num_heads), int(hidden_dim), int(mlp_dim)
        if num_heads < 1 or hidden_dim < 1 or mlp_dim < 1:
            raise ValueError(
                f"num_heads, hidden_dim and mlp_dim must be positive, got "
                f"{num_heads}, {hidden_dim}, {mlp_dim}"
            )
        if hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})"
            )
        check_rates(
            dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            drop_path_rate=drop_path_rate,
        )
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.mlp_dim = mlp_dim
        self.head_dim = hidden_dim // num_heads
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)

        policy = self.dtype_policy
        dense = dict(kernel_initializer="glorot_uniform", dtype=policy)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="attention_norm"
        )
        self.qkv = keras.layers.Dense(3 * hidden_dim, name="qkv", **dense)
        self.attention_output = keras.layers.Dense(hidden_dim, name="attention_output", **dense)
        self.attention_dropout = keras.layers.Dropout(self.attention_dropout_rate, dtype=policy)
        self.mlp_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="mlp_norm"
        )
        self.mlp_dense_1 = keras.layers.Dense(
            mlp_dim,
            bias_initializer=keras.initializers.RandomNormal(stddev=1e-6),
            name="mlp_dense_1",
            **dense,
        )
        self.mlp_dense_2 = keras.layers.Dense(
            hidden_dim,
            bias_initializer=keras.initializers.RandomNormal(stddev=1e-6),
            name="mlp_dense_2",
            **dense,
        )
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy)

    def build(self, input_shape):
        if len(input_shape) != 3 or (input_shape[-1] not in (None, self.hidden_dim)):
            raise ValueError(
                f"TransformerBlock expects [batch, tokens, {self.hidden_dim}], "
                f"got {tuple(input_shape)}"
            )
        self.attention_norm.build(input_shape)
        self.qkv.build(input_shape)
        self.attention_output.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_dense_1.build(input_shape)
        self.mlp_dense_2.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        self.built = True

    def _split_heads(self, x, num_tokens):
        # [B*T, D] -> [B, heads, T, head_dim]
        x = ops.reshape(x, (-1, num_tokens, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def _attend(self, flat_x, num_tokens, training=None, first_token_only=False):
        """Self-attention on normalized tokens flattened to `[B*T, D]`: returns the
        output projection `[B*T, D]` and the weights `[B, h, T, T]` (with
        `first_token_only`, token 0's query alone: `[B, D]` and `[B, h, 1, T]`)."""
        qkv = self.qkv(flat_x)
        query, key, value = ops.split(qkv, 3, axis=-1)
        query_tokens = num_tokens
        if first_token_only:
            query = ops.reshape(query, (-1, num_tokens, self.hidden_dim))[:, 0]
            query_tokens = 1
        # Scaling the query (T x head_dim) is cheaper than scaling the scores (T x T).
        query = self._split_heads(query * ops.cast(self.head_dim**-0.5, qkv.dtype), query_tokens)
        key = ops.transpose(
            ops.reshape(key, (-1, num_tokens, self.num_heads, self.head_dim)), (0, 2, 3, 1)
        )
        value = self._split_heads(value, num_tokens)
        scores = ops.matmul(query, key)
        # Softmax in float32 so that float16 training does not overflow the logits.
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), qkv.dtype)
        attended = ops.matmul(self.attention_dropout(weights, training=training), value)
        attended = ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (-1, self.hidden_dim))
        return self.attention_output(attended), weights

    def call(self, x, training=None, return_attention_scores=False, first_token_only=False):
        """`[B, T, D]` -> `[B, T, D]`; with `first_token_only=True`, only token 0's output
        `[B, 1, D]` (attention `[B, h, 1, T]`): all a class-token head reads from the
        last block, for about 1/T of its query, projection and MLP work."""
        # Every Dense runs on a 2-D `[B*T, D]` view (reshapes are free): Keras maps a
        # 3-D Dense to tensordot, whose reshapes sit between MatMul and the bias add,
        # while on 2-D TensorFlow's grappler/oneDNN fuse MatMul + bias (+ GELU) into
        # one kernel (measured on ViT-Ti/16: see BENCHMARKS.md, section 1). The residual
        # stream stays `[B, T, D]`, so DropPath still drops whole samples.
        num_tokens = x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]
        flat = ops.reshape(self.attention_norm(x), (-1, self.hidden_dim))
        attended, weights = self._attend(flat, num_tokens, training, first_token_only)
        if first_token_only:
            x = x[:, :1]
        shape = (-1, 1 if first_token_only else num_tokens, self.hidden_dim)
        attended = ops.reshape(attended, shape)
        x = x + self.drop_path(self.dropout(attended, training=training), training=training)
        hidden = self.mlp_dense_1(ops.reshape(self.mlp_norm(x), (-1, self.hidden_dim)))
        hidden = keras.activations.gelu(hidden, approximate=False)
        hidden = ops.reshape(self.mlp_dense_2(self.dropout(hidden, training=training)), shape)
        x = x + self.drop_path(self.dropout(hidden, training=training), training=training)
        if return_attention_scores:
            return x, weights
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "mlp_dim": self.mlp_dim,
                "dropout_rate": self.dropout_rate,
                "attention_dropout_rate": self.attention_dropout_rate,
                "drop_path_rate": self.drop_path_rate,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
