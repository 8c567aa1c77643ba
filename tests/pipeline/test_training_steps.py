"""Several steps per call train as one step per call does, from a step traced once."""
import numpy as np
import tensorflow as tf

from mtrec.pipeline.training import build, fit
from tests.pipeline.test_baselines import _setup


def test_steps_per_call_train_alike_and_the_step_is_traced_once():
    config, train_data, eval_data = _setup()
    strategy = tf.distribute.get_strategy()
    fitted = {}
    for steps_per_execution in (1, 4):
        config.training.steps_per_execution = steps_per_execution
        model = build(config, {}, strategy)
        fit(model, config, train_data, eval_data, None, strategy)
        fitted[steps_per_execution] = model
    for a, b in zip(fitted[1].network.get_weights(), fitted[4].network.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # With 4, Keras's loop traces its body twice; the step it calls is traced once, for all epochs.
    for model in fitted.values():
        assert model.train_tf_function.experimental_get_tracing_count() == 1
