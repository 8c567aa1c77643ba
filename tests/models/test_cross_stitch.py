import numpy as np
import pytest
import tensorflow as tf

from mtrec.config import ModelConfig, PipelineConfig
from mtrec.models import build_model
from mtrec.models.layers import CrossStitch


def test_units_start_at_the_configured_mix():
    layer = CrossStitch(self_weight=0.7)
    xs = [tf.fill((2, 3), float(v)) for v in (1.0, 2.0, 4.0)]
    out = layer(xs)
    np.testing.assert_allclose(layer.alpha.numpy(), [[0.7, 0.15, 0.15], [0.15, 0.7, 0.15], [0.15, 0.15, 0.7]], rtol=1e-6)
    np.testing.assert_allclose(out[0].numpy(), np.full((2, 3), 0.7 * 1 + 0.15 * 2 + 0.15 * 4), rtol=1e-6)


def test_cross_stitch_model_has_one_unit_per_column_layer_initialised_from_config():
    tasks = PipelineConfig().tasks
    model = build_model("cross_stitch", {"user_id": 9}, ["price"], tasks,
                        ModelConfig(architecture="cross_stitch", bottom_units=[8, 4], stitch_self_weight=0.4))
    units = [layer for layer in model.layers if isinstance(layer, CrossStitch)]
    assert len(units) == 2
    for unit in units:
        np.testing.assert_allclose(np.diag(unit.alpha.numpy()), [0.4] * len(tasks), rtol=1e-6)
        np.testing.assert_allclose(unit.alpha.numpy().sum(axis=1), [1.0] * len(tasks), rtol=1e-6)


def test_self_weight_out_of_range_fails_naming_it():
    with pytest.raises(ValueError, match="self_weight must be in \\[0, 1\\], got 1.5"):
        CrossStitch(1.5)
