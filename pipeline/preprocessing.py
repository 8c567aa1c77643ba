"""Transform's preprocessing_fn: the feature engineering shared by training and serving.

Passed to Transform by import path (`mtrec.pipeline.preprocessing.preprocessing_fn`) with the
pipeline config as `custom_config`, so the same code runs in training and inside every exported
serving signature.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from mtrec.config import PipelineConfig


def bucket_name(numeric_feature: str) -> str:
    return f"{numeric_feature}_bucket"


def preprocessing_fn(inputs, custom_config):
    """Vocabularies with OOV buckets for ids and categoricals, z-score and quantile buckets for
    numerics, labels passed through as float32. All outputs have shape [batch, 1]."""
    config = PipelineConfig.from_json(custom_config["config"])
    features = config.features
    outputs = {}
    for name in features.ids + features.categorical:
        # Named per feature: TFT's lookup tables take their shared name from this scope, and two
        # pipelines in one process (tests, notebooks) would otherwise collide on a numbered one.
        outputs[name] = tft.compute_and_apply_vocabulary(
            inputs[name], num_oov_buckets=features.oov_buckets, vocab_filename=name, name=f"vocabulary_{name}")
    for name in features.numeric:
        value = tf.cast(inputs[name], tf.float32)
        outputs[name] = tft.scale_to_z_score(value)
        outputs[bucket_name(name)] = tft.bucketize(value, num_buckets=features.numeric_buckets)
    for label in config.label_keys:
        outputs[label] = tf.cast(inputs[label], tf.float32)
    return outputs
