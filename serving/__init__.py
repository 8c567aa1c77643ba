"""Serving: the TF Serving contract on both sides.

`client` talks to TF Serving's gRPC API (real `tensorflow_model_server` or ours); `server` is a
local model server speaking that API (gRPC and REST) over the same versioned model directory, for
laptops and CI where the official binary cannot be installed. Deployment files for the official
image are in `serving/deploy/`.
"""
