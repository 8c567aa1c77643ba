import numpy as np
import pytest
import tensorflow as tf

from mtrec.config import REGRESSION, PipelineConfig, TaskConfig
from mtrec.models.multitask import WeightingCallback, build_multitask_model
from mtrec.models.weighting import DynamicWeightAverage, make_weighting


def _regression_pair(weighting, noise=(0.5, 2.0), scale=(1.0, 1.0), b_coefficients=(0.5, 1.5), n=20_000, **model):
    """Two regression tasks on the same inputs: label_i = scale_i * (x . w_i + N(0, noise_i^2))."""
    config = PipelineConfig.from_dict({
        "features": {"ids": [], "categorical": [], "numeric": ["x1", "x2"]}, "slices": [],
        "tasks": [{"name": "a", "type": REGRESSION, "loss": "mse"}, {"name": "b", "type": REGRESSION, "loss": "mse"}],
        "model": {"architecture": "shared_bottom", "weighting": weighting, "cross_layers": 0,
                  "bottom_units": [16], "tower_units": [8], **model},
        "training": {"learning_rate": 0.01}})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype("float32")
    labels = {name: (s * (x @ w + rng.normal(scale=sd, size=n))).astype("float32")[:, None]
              for name, w, sd, s in (("a", [1.0, -2.0], noise[0], scale[0]), ("b", list(b_coefficients), noise[1], scale[1]))}
    present = np.zeros((n, 1), "float32")  # the missing indicators Transform adds beside each numeric
    data = tf.data.Dataset.from_tensor_slices(({"x1": x[:, :1], "x2": x[:, 1:], "x1_missing": present,
                                                "x2_missing": present}, labels)).batch(256)
    tf.keras.utils.set_random_seed(0)
    return build_multitask_model(config, {}), data


def test_fixed_weights_are_the_config_weights_and_logged_every_epoch():
    model, data = _regression_pair("fixed")
    model.weighting.task_weights.assign([1.0, 0.25])
    callback = WeightingCallback(model.weighting)
    history = model.fit(data.take(10), epochs=2, verbose=0, callbacks=[callback])
    assert callback.history == [{"a": 1.0, "b": 0.25}] * 2
    assert history.history["b_weight"] == [0.25, 0.25]


def test_uncertainty_learns_each_task_noise_variance():
    model, data = _regression_pair("uncertainty", noise=(0.5, 2.0))
    model.fit(data, epochs=6, verbose=0)
    variances = np.exp(model.weighting.log_variances.numpy())
    np.testing.assert_allclose(variances, [0.25, 4.0], rtol=0.25)
    weights = {k: float(v) for k, v in model.weighting.weights().items()}
    assert weights["a"] > 8 * weights["b"]  # the noisy task counts less


def test_gradnorm_pulls_a_task_with_ten_times_larger_gradients_back_to_equal_training_rates():
    # b is a scaled by 10: the same problem, so equal training rates mean equal weighted gradient norms.
    model, data = _regression_pair("gradnorm", noise=(0.5, 0.5), scale=(1.0, 10.0), b_coefficients=(1.0, -2.0),
                                   gradnorm_alpha=1.5)
    model.fit(data, epochs=6, verbose=0)
    weights = model.weighting.task_weights.numpy()
    weighted_norms = model.weighting.grad_norms.numpy()
    raw_norms = weighted_norms / weights
    assert raw_norms[1] / raw_norms[0] > 10  # b's gradients are still much larger ...
    assert weights[1] < 0.3 * weights[0]  # ... so GradNorm scaled b's loss down ...
    assert 1 / 2 < weighted_norms[1] / weighted_norms[0] < 2  # ... until the weighted norms are about equal
    np.testing.assert_allclose(weights.sum(), 2.0, rtol=1e-5)


def test_dwa_weights_are_the_softmax_of_loss_ratios_after_two_epochs():
    tasks = [TaskConfig("a", REGRESSION), TaskConfig("b", REGRESSION)]
    dwa = DynamicWeightAverage(tasks, temperature=2.0)
    dwa.on_epoch_end(0, {"a": 1.0, "b": 1.0})
    np.testing.assert_allclose(dwa.task_weights.numpy(), [1.0, 1.0])
    dwa.on_epoch_end(1, {"a": 0.5, "b": 0.9})  # a learns faster: b gets more weight
    ratios = np.array([0.5, 0.9]) / 2.0
    expected = 2 * np.exp(ratios) / np.exp(ratios).sum()
    np.testing.assert_allclose(dwa.task_weights.numpy(), expected, rtol=1e-6)
    assert expected[1] > expected[0]


def test_unknown_weighting_fails_naming_it():
    with pytest.raises(ValueError, match="unknown weighting 'magic'"):
        make_weighting("magic", [TaskConfig("a")])


@pytest.mark.parametrize("architecture, expected", [
    ("shared_bottom", ["shared_bottom"]), ("mmoe", ["cross_0"]), ("two_tower", ["query_tower_embedding", "item_tower_embedding"])])
def test_gradnorm_measures_at_the_last_layer_every_task_shares(architecture, expected):
    from mtrec.models import build_model
    from mtrec.models.multitask import shared_variables
    config = PipelineConfig.from_dict({"model": {"architecture": architecture, "query_features": ["user_id"]},
                                       "features": {"categorical": [], "numeric": []}, "slices": []})
    network = build_model(architecture, {"user_id": 9, "item_id": 7}, [], config.tasks, config.model)
    variables = shared_variables(network)
    assert variables and all(any(name in v.name for name in expected) for v in variables)
