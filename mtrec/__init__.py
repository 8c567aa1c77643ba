"""mtrec: multi-task recommendation models from raw interaction logs to TF Serving, via TFX.

TFX 1.16 trains with tf-keras (Keras 2); under Keras 3 the Trainer fails at save. The switch must be
set before TensorFlow is first imported, so importing `mtrec` sets it for the whole process.
"""
import os
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The Google Cloud client libraries TFX imports warn on every import that Python 3.10 is old.
warnings.filterwarnings("ignore", message="You are using a non-supported Python version", category=FutureWarning)

__version__ = "0.1.0"
