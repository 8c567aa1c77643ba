"""TensorFlow's thread pools are sized from `training` before TensorFlow starts; once it has, a
different size cannot apply, and the call says so instead of failing the run."""
import os
import subprocess
import sys

SCRIPT = """
import tensorflow as tf
from mtrec.config import TrainingConfig
from mtrec.pipeline import distribution
distribution.configure_threads(TrainingConfig())
print(float(tf.constant(1.0) + 1.0))  # TensorFlow starts, with the configured pools
distribution.configure_threads(TrainingConfig())  # the same again: nothing to change
distribution.configure_threads(TrainingConfig(intra_op_threads=2))  # too late: warns, keeps them
print("pools", tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
"""


def test_pools_are_sized_before_tensorflow_starts_and_a_late_change_warns():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pools 1 0" in done.stdout
    assert done.stderr.count("not applied") == 1
    assert "training.intra_op_threads=2, inter_op_threads=0 not applied: TensorFlow started before with 1 and 0" \
        in done.stderr
