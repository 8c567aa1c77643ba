"""Names of the signatures mtrec exports and clients call: one place for both sides."""

SERVING_DEFAULT = "serving_default"  # serialized tf.Example `examples` -> {task: [batch, 1]}
SERVING_RAW = "serving_raw"          # one [batch] tensor per raw feature -> {task: [batch, 1]}
RANK = "rank"                        # raw features + one scalar `weight_<task>` each -> `score` and tasks
RETRIEVE = "retrieve"                # two-tower: raw query features -> top-100 `item_ids`, `scores`
EVALUATE = "evaluate"                # serialized tf.Example -> the TFMA-evaluated tasks only (for TFMA)
WEIGHT_PREFIX = "weight_"
BLEND_OUTPUT = "score"
TRANSFORM_FEATURES = "transform_features"  # serialized tf.Example -> labels and per-task weights (for TFMA)

# Missing values in `serving_raw`, `rank` and `retrieve` (one dense [batch] tensor per feature, as
# TF Serving requires every input): an empty string, NaN, or for int64 inputs the int64 minimum.
# In `serving_default`/`evaluate`, leave the feature out of the tf.Example.
MISSING_STRING = b""
MISSING_FLOAT = float("nan")
MISSING_INT = -(2 ** 63)


def missing_value(dtype):
    """The sentinel a raw-tensor signature reads as "missing", for inputs of `dtype` (a tf.DType)."""
    if dtype.name == "string":
        return MISSING_STRING
    return MISSING_INT if dtype.is_integer else MISSING_FLOAT
