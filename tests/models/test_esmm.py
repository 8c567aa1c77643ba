import numpy as np
import tensorflow as tf

from mtrec.config import ModelConfig, PipelineConfig
from mtrec.models import build_model
from mtrec.models.esmm import entire_space_tasks
from mtrec.models.multitask import PointwiseObjective, objectives_for

TASKS = PipelineConfig().tasks


def test_pctcvr_is_pctr_times_pcvr_for_every_post_click_binary_task():
    model = build_model("esmm", {"user_id": 9, "item_id": 7}, ["price"], TASKS, ModelConfig(architecture="esmm"))
    rng = np.random.default_rng(0)
    outputs = model({"user_id": tf.constant(rng.integers(9, size=(6, 1))), "item_id": tf.constant(rng.integers(7, size=(6, 1))),
                     "price": tf.constant(rng.normal(size=(6, 1)), tf.float32)})
    assert entire_space_tasks(TASKS) == {"like": "click", "purchase": "click"}  # dwell is regression: not chained
    for task in ("like", "purchase"):
        np.testing.assert_allclose(outputs[f"{task}_ctcvr"].numpy(), outputs["click"].numpy() * outputs[task].numpy(),
                                   rtol=1e-6)


def test_post_click_losses_use_every_impression_and_never_the_cvr_output_alone():
    config = PipelineConfig.from_dict({"model": {"architecture": "esmm"}})
    objectives = {o.task.name: o for o in objectives_for(config)}
    assert (objectives["purchase"].output, objectives["purchase"].entire_space) == ("purchase_ctcvr", True)
    assert (objectives["click"].output, objectives["dwell"].output) == ("click", "dwell")
    # Unclicked impressions count in the pCTCVR loss: changing their prediction changes the loss.
    labels = {"click": tf.constant([[1.0], [0.0]]), "purchase": tf.constant([[1.0], [0.0]])}
    low = {"purchase_ctcvr": tf.constant([[0.9], [0.1]])}
    high = {"purchase_ctcvr": tf.constant([[0.9], [0.8]])}
    purchase = objectives["purchase"]
    assert float(purchase({}, labels, high)) > float(purchase({}, labels, low))
    expected = -(np.log(0.9) + np.log(1 - 0.1)) / 2
    np.testing.assert_allclose(float(purchase({}, labels, low)), expected, rtol=1e-4)
    # The same task without ESMM is weighted by click: the unclicked row costs nothing.
    plain = PointwiseObjective(purchase.task)
    np.testing.assert_allclose(float(plain({}, labels, {"purchase": tf.constant([[0.9], [0.8]])})),
                               -np.log(0.9) / 2, rtol=1e-4)
