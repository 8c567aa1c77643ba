"""Training under MirroredStrategy computes what one device computes, GradNorm's learned weights too.

`mirrored_check` runs in its own process (logical CPU devices must exist before TensorFlow starts)
and trains the same model on the same data and global batch both ways."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.xdist_group("mirrored_check")  # one worker runs the shared subprocess
# GradNorm all-reduces its own losses and gradients on top of the path every weighting takes (fixed
# weights under Mirrored are also checked on the pipeline, tests/pipeline/test_distributed.py).
WEIGHTINGS = ("gradnorm",)
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.fixture(scope="module")
def results():
    done = subprocess.run([sys.executable, "-m", "tests.models.mirrored_check", *WEIGHTINGS], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_two_replicas_train_the_same_model_as_one_device(results, weighting):
    one, two = results[weighting]["one_device"], results[weighting]["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    for metric, value in one["eval"].items():
        assert two["eval"][metric] == pytest.approx(value, rel=1e-3, abs=1e-4), metric
    for task, weight in one["task_weights"].items():  # GradNorm's learned weights included
        assert two["task_weights"][task] == pytest.approx(weight, rel=1e-3), task
    assert one["task_weights"] != {"click": 1.0, "like": 1.0, "purchase": 1.0, "dwell": 0.2}  # learned


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains_as_well_with_float32_outputs(results, precision):
    reference, mixed = results["float32"], results[precision]
    assert mixed["output_dtype"] == "float32"
    for task in ("click", "like", "purchase"):
        assert abs(mixed["eval"][f"{task}_auc"] - reference["eval"][f"{task}_auc"]) < 0.01
