"""Sub-commands of the `keras-vit` command line, one module each."""
