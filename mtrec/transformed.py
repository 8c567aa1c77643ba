"""Names of what Transform outputs: the contract between `preprocessing_fn`, the models, the
training objectives and the exported signatures.

Every transformed feature is [batch, 1]. Beside a feature of the same name, Transform writes
`<numeric>_bucket` (quantile bucket) and `<numeric>_missing` (1.0 where the value was missing);
beside every label, `<label>__present` (1.0 where the example has it), so a task weighs an
example whose label is missing 0 in loss and metrics while the other tasks keep it.
"""
from __future__ import annotations

from typing import List

MISSING = "__missing__"  # the vocabulary entry of a missing categorical value (distinct from OOV)


def bucket_name(numeric_feature: str) -> str:
    return f"{numeric_feature}_bucket"


def missing_name(numeric_feature: str) -> str:
    return f"{numeric_feature}_missing"


def presence_name(label: str) -> str:
    return f"{label}__present"


def text_key_name(id_feature: str) -> str:
    """The raw id (a string, `MISSING` where absent) that a table's text vectors are looked up by
    inside the model: unlike the vocabulary index, it still tells apart ids training never saw."""
    return f"{id_feature}__text_key"


# Where the `transform_features` signature tells TFMA an example's item was never in a training
# example (1) or was (0): the Evaluator's cold-start slice. Items are keyed by this id feature.
COLD_START = "cold_start"
ITEM_ID = "item_id"
# How many reviews of the example's item were written before its impression (LogExampleGen): the
# reviews an example may see. Transform passes it on as is, -1 where missing (then: every review
# the model knows). `review_positive` is the label of an impression's own review.
REVIEWS_BEFORE = "item_reviews_before"
REVIEW_POSITIVE = "review_positive"


def weight_name(task: str) -> str:
    """A task's example weight, as the `transform_features` signature gives it to TFMA."""
    return f"{task}__weight"


def dense_inputs(features) -> List[str]:
    """Float model inputs: the z-scored numerics and their missing indicators."""
    return list(features.numeric) + [missing_name(n) for n in features.numeric]
