import os

# Nothing here uses Keras, yet `import tensorflow` imports it eagerly (keras.src.optimizers, and with it
# scikit-learn and matplotlib where installed): 1.9 of its 4.3 s on our CI machine. With this set, TF
# looks for the legacy tf_keras package instead, which is not installed, and skips it. (tf.keras is then
# unavailable in the process; a SavedModel loads without it.)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from musicnn_beam.models.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # before any module of this package imports it
