"""The single-task baselines share one model and its traced steps, and are what each would be
trained alone."""
import numpy as np
import tensorflow as tf

from mtrec.config import REGRESSION, PipelineConfig
from mtrec.pipeline.training import single_task_config, train, train_single_task


def _setup():
    config = PipelineConfig.from_dict({
        "features": {"ids": [], "categorical": [], "numeric": ["x1", "x2"]}, "slices": [],
        "tasks": [{"name": "a", "type": REGRESSION, "loss": "mse"}, {"name": "b", "type": REGRESSION, "loss": "mse"}],
        "model": {"architecture": "mmoe", "bottom_units": [16], "tower_units": [8]},
        "training": {"learning_rate": 0.01, "epochs": 3, "patience": 1, "steps_per_execution": 4}})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 2)).astype("float32")
    labels = {"a": (x @ [1.0, -2.0])[:, None].astype("float32"), "b": np.sin(3 * x[:, :1]).astype("float32")}
    present = np.zeros((len(x), 1), "float32")
    features = {"x1": x[:, :1], "x2": x[:, 1:], "x1_missing": present, "x2_missing": present}
    data = tf.data.Dataset.from_tensor_slices((features, labels)).batch(128)
    return config, data.take(16), data.skip(16)


def test_each_baseline_is_the_model_trained_alone_on_its_task():
    config, train_data, eval_data = _setup()
    strategy = tf.distribute.get_strategy()
    networks, logs = train_single_task(config, train_data, eval_data, {}, lambda name: None, None, strategy,
                                       lambda name: None)
    assert set(networks) == {"a", "b"} and networks["a"] is not networks["b"]
    probe = next(iter(eval_data))[0]
    for task in config.tasks:
        alone_config = single_task_config(config, task)
        assert alone_config.model.architecture == "shared_bottom"  # nothing left to share
        alone, log = train(alone_config, train_data, eval_data, {}, None, strategy=strategy)
        assert logs[task.name]["epochs"] == log["epochs"]
        assert logs[task.name]["eval"]["loss"] == log["eval"]["loss"] == log["eval"][f"{task.name}_loss"]
        np.testing.assert_allclose(networks[task.name](probe)[task.name].numpy(), alone(probe)[task.name].numpy(),
                                   rtol=1e-6, atol=1e-6)
    # trained on different tasks: different models
    assert not np.allclose(networks["a"](probe)["a"].numpy(), networks["b"](probe)["a"].numpy())
