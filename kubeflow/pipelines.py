"""The same pipeline on Kubeflow Pipelines: compiled with KubeflowV2DagRunner, uploaded and run with kfp.Client.

`compile_pipeline` writes two files: `pipeline.json`, the Vertex-style PipelineJob that
KubeflowV2DagRunner writes (Vertex AI Pipelines takes it as is), and `pipeline.yaml`, its
`pipelineSpec` part, which is what the OSS KFP API server takes. Every component runs in the
pipeline image (`kubeflow/Dockerfile`) with TFX's v2 container entry point, and finds our code by
import path, so nothing in either file refers to the machine that compiled it: data, pipeline root
and serving directory must be URIs the cluster can read (gs://...), and the default schema is the
copy inside the image.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

import yaml
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
from tfx.orchestration.pipeline import Pipeline

import mtrec
from mtrec.config import ConfigError, PipelineConfig
from mtrec.pipeline.pipeline import PipelinePaths, create_components

#: Where kubeflow/Dockerfile puts this repository inside the pipeline image.
IMAGE_SOURCE_DIR = "/mtrec"
IMAGE_SCHEMA = f"{IMAGE_SOURCE_DIR}/schemas/schema.pbtxt"
ENTRY_POINT = list(kubeflow_v2_dag_runner.KUBEFLOW_TFX_CMD)
TRAINERS = ("Trainer", "single_task_trainer")
JSON_FILE, YAML_FILE = "pipeline.json", "pipeline.yaml"
#: Run-time parameter naming the log drop (a date, say): KFP's cache reuses a step whose inputs and
#: parameters are unchanged, so a new drop of logs under the same URI needs a new value.
DATA_VERSION = "data_version"
#: Run-time parameter of a daily log's pipeline: the day to ingest, `latest` (the newest) or YYYY-MM-DD.
SPAN = "span"
_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://")
_ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def _remote(key: str, uri: str) -> str:
    if not _REMOTE.match(uri or ""):
        raise ConfigError(f"config {key}={uri!r}: Kubeflow pods cannot read the compiling machine's files; "
                          "give a URI the cluster can read (gs://bucket/...)")
    return uri.rstrip("/")


def kubeflow_config(config: PipelineConfig) -> PipelineConfig:
    """`config` as it runs in the cluster: logs read from `data.path` (a URI), the schema from
    the image unless a URI is given."""
    data = config.data
    source = "events" if data.source == "synthetic" else data.source
    schema = data.schema if data.schema in ("infer", "default") else _remote("data.schema", data.schema)
    _remote("data.path", data.path)
    if data.span and config.text.fields:
        raise ConfigError("config text.fields with data.span: on Kubeflow, a daily log's text is not wired yet "
                          "(the TextEmbedder reads one folder); run it locally, or leave text.fields empty")
    # A daily log: the span is a run-time parameter, resolved in the pod; the rolling window and
    # the previous-span drift check need MLMD resolvers KFP v2 does not compile, so one span a run.
    span = "latest" if data.span else ""
    return dataclasses.replace(config, data=dataclasses.replace(data, source=source, schema=schema, span=span,
                                                                window_days=1))


def trainer_resources(config: PipelineConfig) -> Optional[_ResourceSpec]:
    kfp = config.kubeflow
    if not (kfp.trainer_cpu or kfp.trainer_memory_gb or kfp.trainer_gpus):
        return None
    spec = _ResourceSpec(cpu_limit=kfp.trainer_cpu, memory_limit=kfp.trainer_memory_gb)
    if kfp.trainer_gpus:
        spec.accelerator.type, spec.accelerator.count = kfp.gpu_type, kfp.trainer_gpus
    return spec


def create_kubeflow_pipeline(config: PipelineConfig) -> Pipeline:
    config = kubeflow_config(config)
    root = _remote("kubeflow.pipeline_root", config.kubeflow.pipeline_root)
    serving = _remote("kubeflow.serving_dir", config.kubeflow.serving_dir or f"{root}/serving")
    data_version = RuntimeParameter(name=DATA_VERSION, ptype=str, default="")
    span = RuntimeParameter(name=SPAN, ptype=str, default="latest") if config.data.span else None
    components = create_components(config, PipelinePaths(root=root, data=config.data.path, serving=serving),
                                   schema_file=IMAGE_SCHEMA, data_fingerprint=data_version, span_date=span)
    resources = trainer_resources(config)
    for component in components:
        if resources is not None and component.id in TRAINERS:
            component.with_platform_config(resources)
    return Pipeline(pipeline_name=config.name, pipeline_root=root, components=components,
                    enable_cache=True, beam_pipeline_args=config.beam_args)


def compile_pipeline(config: PipelineConfig, output_dir: str) -> Tuple[str, str]:
    """Writes pipeline.json (KubeflowV2DagRunner's PipelineJob) and pipeline.yaml (its
    `pipelineSpec`, for OSS KFP) into `output_dir`; returns their paths."""
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=config.kubeflow.image,
                                                                default_commands=ENTRY_POINT),
        output_dir=output_dir, output_filename=JSON_FILE)
    job = runner.run(create_kubeflow_pipeline(config))
    found = local_paths(json.dumps(job), [os.getcwd(), os.path.expanduser("~"), sys.prefix,
                                          os.path.dirname(os.path.dirname(mtrec.__file__))])
    if found:
        os.remove(os.path.join(output_dir, JSON_FILE))
        raise ConfigError(f"the compiled pipeline refers to {found} on this machine, which its pods cannot read")
    yaml_path = os.path.join(output_dir, YAML_FILE)
    with open(yaml_path, "w") as f:
        yaml.safe_dump(job["pipelineSpec"], f, sort_keys=False)
    return os.path.join(output_dir, JSON_FILE), yaml_path


def executors(spec: Dict) -> Dict[str, Dict]:
    """{executor label: its container} of a compiled pipelineSpec."""
    return {name: executor["container"] for name, executor in spec["deploymentSpec"]["executors"].items()
            if "container" in executor}


def client(host: str):
    """kfp.Client for `host`; an unreachable or failing API server raises ConnectionError naming it."""
    import kfp
    import kfp_server_api
    import urllib3

    try:
        return kfp.Client(host=host)
    except (urllib3.exceptions.HTTPError, kfp_server_api.ApiException, OSError) as e:
        raise ConnectionError(f"no Kubeflow Pipelines API answered at {host}: {getattr(e, 'reason', e)}") from e


def upload(host: str, package: str, name: Optional[str] = None, version: Optional[str] = None) -> str:
    """Uploads a compiled pipeline.yaml (a new pipeline, or a version of `name` if it exists); returns its id."""
    kfp_client = client(host)
    name = name or _pipeline_name(package)
    existing = kfp_client.get_pipeline_id(name)
    if existing and version:
        return kfp_client.upload_pipeline_version(package, pipeline_version_name=version,
                                                  pipeline_id=existing).pipeline_id
    if existing:
        raise ValueError(f"pipeline {name!r} is already on {host}: give --version to add a version of it")
    return kfp_client.upload_pipeline(package, pipeline_name=name).pipeline_id


def run(host: str, package: str, experiment: str = "mtrec", run_name: Optional[str] = None,
        pipeline_root: Optional[str] = None, arguments: Optional[Dict] = None) -> str:
    """Starts a run of a compiled pipeline.yaml; returns the run id."""
    if pipeline_root:
        _remote("--pipeline-root", pipeline_root)
    result = client(host).create_run_from_pipeline_package(
        package, arguments=arguments or {}, run_name=run_name, experiment_name=experiment,
        pipeline_root=pipeline_root)
    return result.run_id


def recurring_run_request(package: str, cron: str, experiment_id: str, name: Optional[str] = None,
                          span: str = "latest", pipeline_root: Optional[str] = None) -> Dict:
    """`kfp.Client.create_recurring_run`'s arguments for a daily run of a compiled pipeline.yaml.

    `cron` is KFP's six-field expression (seconds first: `0 0 6 * * *` is 06:00 daily); a
    five-field one gets `0` seconds. The span (`latest`: the newest day folder when the run
    starts) goes in as the `span` run parameter. KFP's cache is off: the parameters are the same
    every day, and a cached ingestion would be yesterday's."""
    fields = cron.split()
    if len(fields) == 5:
        fields = ["0"] + fields
    if len(fields) != 6:
        raise ValueError(f"--cron {cron!r}: expected 5 or 6 fields (KFP's cron: second minute hour day month weekday)")
    with open(package) as f:
        spec = yaml.safe_load(f)
    if SPAN not in spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}):
        raise ValueError(f"{package} has no {SPAN!r} run parameter: compile it with data.span set (a daily log)")
    if pipeline_root:
        _remote("--pipeline-root", pipeline_root)
    return {"experiment_id": experiment_id, "job_name": name or f"{spec['pipelineInfo']['name']}-daily",
            "cron_expression": " ".join(fields), "params": {SPAN: span}, "pipeline_package_path": package,
            "enable_caching": False, "no_catchup": True, "max_concurrency": 1, "pipeline_root": pipeline_root}


def schedule(host: str, package: str, cron: str, experiment: str = "mtrec", name: Optional[str] = None,
             span: str = "latest", pipeline_root: Optional[str] = None) -> str:
    """Creates a KFP recurring run of a compiled pipeline.yaml (`recurring_run_request`); returns its id."""
    kfp_client = client(host)
    experiment_id = kfp_client.create_experiment(experiment).experiment_id
    request = recurring_run_request(package, cron, experiment_id, name, span, pipeline_root)
    return kfp_client.create_recurring_run(**request).recurring_run_id


def _pipeline_name(package: str) -> str:
    with open(package) as f:
        return yaml.safe_load(f)["pipelineInfo"]["name"]


def local_paths(text: str, machine_paths: List[str]) -> List[str]:
    """Which of `machine_paths` (directories of the compiling machine) occur in `text`."""
    return [path for path in machine_paths if path and path != "/"
            and re.search(r"(?<![\w/:.-])" + re.escape(path.rstrip("/")) + r"(?![\w.-])", text)]


def summary(json_path: str) -> str:
    with open(json_path) as f:
        spec = json.load(f)["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    return f"{spec['pipelineInfo']['name']}: {len(tasks)} components, image(s) " + \
        ", ".join(sorted({c["image"] for c in executors(spec).values()}))
