"""Run as its own process (logical CPU devices must be set before TensorFlow starts): trains the
same model on the same data and global batch on one device and with MirroredStrategy over 2
logical CPUs, and prints per weighting scheme named on the command line the eval losses, AUCs and
task weights of both as JSON; also float32, mixed_bfloat16 and mixed_float16 (loss-scaled) runs."""
import json
import sys

import mtrec  # noqa: F401  (TF_USE_LEGACY_KERAS)
from mtrec.pipeline import distribution

distribution.configure_logical_cpus(2)

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtrec.config import PipelineConfig, TrainingConfig  # noqa: E402
from mtrec.pipeline.training import train  # noqa: E402

VOCABS = {"user_id": 200, "item_id": 100, "device": 3}


def data(n: int, seed: int, batch: int) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    features = {name: rng.integers(size, size=(n, 1)) for name, size in VOCABS.items()}
    features["price"] = rng.normal(size=(n, 1)).astype("float32")
    features["price_bucket"] = np.digitize(features["price"], np.linspace(-2, 2, 9))
    features["price_missing"] = np.zeros((n, 1), "float32")
    user, item = np.sin(features["user_id"] * 0.7), np.cos(features["item_id"] * 1.3)
    p_click = 1 / (1 + np.exp(-(user + item + 0.5 * features["price"] - 1)))
    click = (rng.random((n, 1)) < p_click).astype("float32")
    like = click * (rng.random((n, 1)) < 1 / (1 + np.exp(-2 * user))).astype("float32")
    purchase = click * (rng.random((n, 1)) < 1 / (1 + np.exp(-2 * item))).astype("float32")
    dwell = click * (30 + 10 * user + rng.normal(size=(n, 1))).astype("float32")
    labels = {"click": click, "like": like, "purchase": purchase, "dwell": dwell}
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch)


def config(weighting: str, strategy: str, **training) -> PipelineConfig:
    base = PipelineConfig.from_dict({"features": {"ids": ["user_id", "item_id"], "categorical": ["device"],
                                                  "numeric": ["price"]}, "slices": []})
    base.tasks = [t for t in base.tasks if t.name in ("click", "like", "purchase", "dwell")]  # the labels `data` draws
    base.model.weighting = weighting
    base.training = dataclasses.replace(TrainingConfig(epochs=2, patience=5), strategy=strategy, **training)
    return base


def run(weighting: str, strategy_name: str, **training) -> dict:
    cfg = config(weighting, strategy_name, **training)
    distribution.set_precision(cfg.training)
    try:
        strategy = distribution.make_strategy(cfg.training)
        replicas = strategy.num_replicas_in_sync
        sizes = {**VOCABS, "price_bucket": 11}
        batch = cfg.training.batch_size * replicas
        network, log = train(cfg, data(4000, 0, batch), data(2000, 1, batch), sizes, None, strategy=strategy)
        outputs = network(next(iter(data(8, 2, 8)))[0])
    finally:
        distribution.set_precision(TrainingConfig())
    return {"replicas": replicas, "eval": log["eval"], "task_weights": log["task_weights"][-1],
            "output_dtype": outputs["click"].dtype.name}


if __name__ == "__main__":
    # float32 on one device: the reference for the mixed-precision runs.
    results = {"float32": run("fixed", "one_device", batch_size=128)}
    for weighting in sys.argv[1:]:
        # The same global batch of 128: one device, or 2 replicas of 64.
        results[weighting] = {"one_device": run(weighting, "one_device", batch_size=128),
                              "mirrored": run(weighting, "mirrored", batch_size=64)}
    results["bfloat16"] = run("fixed", "mirrored", batch_size=64, mixed_precision="mixed_bfloat16")
    results["float16"] = run("fixed", "default", batch_size=128, mixed_precision="mixed_float16")  # loss scaling
    print("RESULT " + json.dumps(results))
