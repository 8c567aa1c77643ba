"""ESMM (Ma et al., SIGIR 2018): post-click tasks learned over the entire impression space.

pCVR is never fitted on clicked impressions alone (a sample-selection bias: serving scores every
impression). Instead each post-click binary task (`given` = a binary task's label, as purchase
given click) gets a `<task>_ctcvr` output, pCTR x pCVR, fitted to click-and-purchase on every
impression; its `<task>` output is pCVR. Towers share only the embeddings (and cross layer).
"""
import tf_keras as keras

from mtrec.config import BINARY
from mtrec.models.layers import cross, feature_inputs, task_heads

CTCVR_SUFFIX = "_ctcvr"


def entire_space_tasks(tasks):
    """{post-click task name: name of the task it is conditional on} for the tasks ESMM chains."""
    by_label = {t.label: t for t in tasks if t.type == BINARY}
    return {t.name: by_label[t.given].name for t in tasks if t.type == BINARY and t.given in by_label}


def build(vocab_sizes, numeric, tasks, config, text=None) -> keras.Model:
    inputs, x = feature_inputs(vocab_sizes, numeric, config.embedding_dim, config.embedding_l2, text)
    x = cross(x, config.cross_layers, config.cross_projection_dim)
    outputs = task_heads(x, tasks, config.bottom_units + config.tower_units, config.dropout)
    for task, given in entire_space_tasks(tasks).items():
        outputs[task + CTCVR_SUFFIX] = keras.layers.Multiply(name=task + CTCVR_SUFFIX)([outputs[given], outputs[task]])
    return keras.Model(inputs, outputs, name="esmm")
