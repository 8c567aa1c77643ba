"""Transform's preprocessing_fn: the feature engineering shared by training and serving.

Passed to Transform by import path (`mtrec.pipeline.preprocessing.preprocessing_fn`) with the
pipeline config as `custom_config`, so the same code runs in training and inside every exported
serving signature. Missing values are part of the design, not an error: a feature the schema
marks optional arrives as a SparseTensor with rows absent, a present one may hold a sentinel
(empty string, NaN); both mean missing. Output names: `mtrec.transformed`.
"""
from __future__ import annotations

from typing import Tuple

import tensorflow as tf
import tensorflow_transform as tft

from mtrec.config import PipelineConfig
from mtrec.serving.signatures import missing_value
from mtrec.transformed import MISSING, REVIEWS_BEFORE, bucket_name, missing_name, presence_name, text_key_name


def with_missing(x) -> Tuple[tf.Tensor, tf.Tensor]:
    """(values [batch, 1], missing [batch, 1] bool) of a raw feature, dense or sparse. An absent
    value becomes the serving signatures' sentinel for its dtype, so both mean the same."""
    default = tf.constant(missing_value(x.dtype), x.dtype)
    if isinstance(x, tf.SparseTensor):
        x = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default)
    x = tf.reshape(x, [-1, 1])
    return x, (tf.math.is_nan(x) if x.dtype.is_floating else tf.equal(x, default))


def as_category(x) -> tf.Tensor:
    """Strings for a vocabulary or a hash: int codes as text, a missing value as `MISSING`."""
    values, missing = with_missing(x)
    text = values if values.dtype == tf.string else tf.strings.as_string(values)
    return tf.where(missing, MISSING, text)


def preprocessing_fn(inputs, custom_config):
    """Vocabularies with OOV buckets (ids, categoricals), hash buckets (hashed), z-score and
    quantile buckets of imputed values plus missing indicators (numerics), the raw ids (and review
    counts) that text vectors are looked up by, labels as float32 with their presence. All outputs have shape [batch, 1]. A mean-imputed value has z-score 0."""
    config = PipelineConfig.from_json(custom_config["config"])
    features = config.features
    outputs = {}
    for name in features.vocabulary:
        # Named per feature: TFT's lookup tables take their shared name from this scope, and two
        # pipelines in one process (tests, notebooks) would otherwise collide on a numbered one.
        outputs[name] = tft.compute_and_apply_vocabulary(
            as_category(inputs[name]), num_oov_buckets=features.oov_buckets, vocab_filename=name,
            name=f"vocabulary_{name}")
    for name, buckets in features.hashed.items():
        text = as_category(inputs[name])  # bucket 0 is kept for a missing value
        outputs[name] = tf.where(tf.equal(text, MISSING), tf.constant(0, tf.int64),
                                 1 + tf.strings.to_hash_bucket_fast(text, buckets - 1))
    for name in features.numeric:
        values, missing = with_missing(inputs[name])
        value = tf.cast(values, tf.float32)
        # Every statistic comes from the present values in one analysis phase (TFX's Transform
        # deep-copies the data for a second phase, which Beam 2.74 no longer supports).
        present = tf.boolean_mask(value, tf.logical_not(missing))
        # Summed in float64 and rounded to float32: Beam combines the partial sums in whatever
        # order its bundles finish, which moves a float32 sum's last bit from run to run.
        wide = tf.cast(present, tf.float64)
        mean = tf.cast(tft.mean(wide, name=f"mean_{name}"), tf.float32)
        variance = tf.cast(tft.var(wide, name=f"var_{name}"), tf.float32)
        mean = tf.where(tf.math.is_nan(mean), 0.0, mean)  # 0 if no value was present at all
        fill = tf.constant(features.impute[name], tf.float32) if name in features.impute else mean
        imputed = tf.where(missing, fill, value)
        std = tf.sqrt(variance)
        outputs[name] = tf.where(std > 0, (imputed - mean) / std, imputed - mean)  # tft.scale_to_z_score's rule
        boundaries = tft.quantiles(present, features.numeric_buckets, epsilon=min(1.0 / features.numeric_buckets, 0.01),
                                   name=f"quantiles_{name}")  # tft.bucketize's defaults
        outputs[bucket_name(name)] = tft.apply_buckets(imputed, boundaries)
        outputs[missing_name(name)] = tf.cast(missing, tf.float32)
    for name in config.text.key_features:
        outputs[text_key_name(name)] = as_category(inputs[name])
    if REVIEWS_BEFORE in config.text.raw_features:  # -1 where missing: every review the model knows
        values, missing = with_missing(inputs[REVIEWS_BEFORE])
        outputs[REVIEWS_BEFORE] = tf.where(missing, tf.constant(-1, tf.int64), tf.cast(values, tf.int64))
    outputs.update(label_outputs(inputs, config))
    return outputs


def label_outputs(inputs, config: PipelineConfig):
    """Each label as float32 (a binary label with `positive` as 1 for that value), 0 where missing,
    and `<label>__present`. Needs no analyzer, so the exported `transform_features` signature
    runs it on the raw labels alone."""
    positives, outputs = config.label_positives, {}
    for label in config.label_keys:
        values, missing = with_missing(inputs[label])
        if label in positives:  # e.g. "yes"/"no": 1 for the configured value
            text = values if values.dtype == tf.string else tf.strings.as_string(values)
            values = tf.cast(tf.equal(text, positives[label]), tf.float32)
        outputs[label] = tf.where(missing, 0.0, tf.cast(values, tf.float32))
        outputs[presence_name(label)] = 1.0 - tf.cast(missing, tf.float32)
    return outputs
