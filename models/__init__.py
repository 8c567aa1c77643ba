"""Keras multi-task architectures, chosen by `model.architecture` in the config."""
from typing import Dict, List

from mtrec.models import mmoe, shared_bottom

ARCHITECTURES = {"shared_bottom": shared_bottom.build, "mmoe": mmoe.build}


def build_model(architecture: str, vocab_sizes: Dict[str, int], numeric: List[str], tasks, model_config):
    """Builds `architecture` over the given inputs with one named output per task."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](vocab_sizes, numeric, tasks, model_config)
