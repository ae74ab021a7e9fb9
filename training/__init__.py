"""Training ViTs: dataset specs and the tf.data pipeline, strategies, `fit`, the `keras-vit` command line."""
