from models.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module of this package imports it
