"""Keras multi-task architectures, chosen by `model.architecture` in the config.

Each architecture is a short `build(vocab_sizes, numeric, tasks, config, text)` returning a
functional Keras model with one named output per task (`text`: the catalogue's text vectors, or None); `mtrec.models.multitask` trains any of them.
"""
from typing import Dict, List

from mtrec.models import cross_stitch, esmm, mmoe, ple, shared_bottom, two_tower

ARCHITECTURES = {"shared_bottom": shared_bottom.build, "mmoe": mmoe.build, "ple": ple.build, "esmm": esmm.build,
                 "cross_stitch": cross_stitch.build, "two_tower": two_tower.build}


def build_model(architecture: str, vocab_sizes: Dict[str, int], numeric: List[str], tasks, model_config, text=None):
    """Builds `architecture` over the given inputs (`text`: a `layers.TextTables`) with one named
    output per task."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](vocab_sizes, numeric, tasks, model_config, text)
