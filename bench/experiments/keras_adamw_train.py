"""`keras-vit train` with Keras' own `AdamW` where the package uses `FusedAdamW` (an ablation).

    python bench/default_command.py digits --seeds 0,1,2 --runner bench.experiments.keras_adamw_train \
        --name digits_keras_adamw --args=--quiet

Same recipe, variables and schedule: only the update's kernels differ (training/fused_adamw.py).
"""

import sys

import keras

from keras_vit.training import optimization
from keras_vit.training.cli import main

optimization.FusedAdamW = keras.optimizers.AdamW
sys.exit(main())
