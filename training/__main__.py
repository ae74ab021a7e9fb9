import sys

from keras_vit.training.cli import main

sys.exit(main())
