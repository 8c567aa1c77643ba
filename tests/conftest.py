"""Test set-up: Keras 2 (tf-keras) must be chosen before TensorFlow is imported anywhere."""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import mtrec  # noqa: E402,F401

MOVIELENS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ml-100k")
