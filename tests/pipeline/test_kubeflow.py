"""The pipeline compiled for Kubeflow Pipelines: loads with kfp's own loader, runs only our image and
code, and refers to nothing on the compiling machine."""
import ast
import json
import os
import sys

import pytest
from kfp.client import client as kfp_client

import mtrec
from mtrec import cli
from mtrec.config import ConfigError, PipelineConfig
from mtrec.kubeflow import pipelines

IMAGE = "registry.example.com/team/mtrec-pipeline:0.1.0"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp")
    assert cli.main(["kfp", "compile", "--output-dir", str(out), "--data", "gs://bucket/logs",
                     "--pipeline-root", "gs://bucket/root", "--image", IMAGE, "--trainer-cpu", "8",
                     "--trainer-memory-gb", "32", "--trainer-gpus", "2",
                     "--beam-arg=--direct_running_mode=multi_processing", "--beam-arg=--direct_num_workers=0"]) == 0
    with open(out / "pipeline.json") as f:
        job = json.load(f)
    return out, job


def test_the_yaml_is_the_jobs_pipeline_spec_and_loads_with_kfps_loader(compiled):
    out, job = compiled
    doc = kfp_client._extract_pipeline_yaml(str(out / "pipeline.yaml"))  # what upload and run use
    assert doc.pipeline_spec.pipeline_info.name == "mtrec"
    tasks = set(doc.pipeline_spec.root.dag.tasks)
    assert tasks == set(job["pipelineSpec"]["root"]["dag"]["tasks"])
    assert {"LogExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "AnomalyGate", "Transform",
            "Trainer", "Evaluator", "ServingWarmup", "Pusher"} <= tasks
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    assert pipelines.DATA_VERSION in doc.pipeline_spec.root.input_definitions.parameters


def test_every_component_runs_our_image_and_code(compiled):
    _, job = compiled
    containers = pipelines.executors(job["pipelineSpec"])
    assert len(containers) >= 10
    for name, container in containers.items():
        assert container["image"] == IMAGE, name
        assert container["command"] == pipelines.ENTRY_POINT, name
        args = container["args"]
        executor = args[args.index("--executor_class_path") + 1]
        assert executor.startswith(("mtrec.", "tfx.")), (name, executor)
    text = json.dumps(job)
    assert "mtrec.pipeline.training.run_fn" in text and "mtrec.pipeline.preprocessing.preprocessing_fn" in text
    assert "mtrec.components.log_example_gen" in text


def test_nothing_points_at_the_compiling_machine(compiled):
    out, job = compiled
    text = (out / "pipeline.json").read_text() + (out / "pipeline.yaml").read_text()
    machine = [os.getcwd(), os.path.expanduser("~"), sys.prefix, str(out), os.path.dirname(mtrec.__file__),
               os.path.dirname(os.path.dirname(mtrec.__file__))]
    assert pipelines.local_paths(text, machine) == []
    assert pipelines.IMAGE_SCHEMA in text  # the schema inside the image
    assert "gs://bucket/logs" in text and "gs://bucket/root/serving/mtrec" in text


def test_trainer_resources_and_beam_args_are_compiled_in(compiled):
    _, job = compiled
    spec = job["pipelineSpec"]
    trainer = spec["root"]["dag"]["tasks"]["Trainer"]["componentRef"]["name"]
    executor = spec["components"][trainer]["executorLabel"]
    resources = spec["deploymentSpec"]["executors"][executor]["container"]["resources"]
    assert resources["cpuLimit"] == 8 and resources["memoryLimit"] == 32
    assert resources["accelerator"] == {"type": "NVIDIA_TESLA_T4", "count": "2"}
    assert "--direct_running_mode=multi_processing" in json.dumps(spec)


@pytest.mark.parametrize("key,value", [("data.path", "/home/me/logs"), ("kubeflow.pipeline_root", "work/root")])
def test_local_paths_are_refused_naming_the_key(key, value, tmp_path):
    raw = PipelineConfig().to_dict()
    raw["data"].update(source="events", path="gs://bucket/logs")
    raw["kubeflow"]["pipeline_root"] = "gs://bucket/root"
    section, field = key.split(".")
    raw[section][field] = value
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        pipelines.compile_pipeline(PipelineConfig.from_dict(raw), str(tmp_path))


def test_upload_to_an_unreachable_host_names_it(compiled, capsys):
    out, _ = compiled
    assert cli.main(["kfp", "upload", "--host", "http://127.0.0.1:9", "--package", str(out / "pipeline.yaml")]) == 2
    assert "no Kubeflow Pipelines API answered at http://127.0.0.1:9" in capsys.readouterr().err


def test_the_dockerfile_builds_on_tfx_1_16_and_puts_the_package_where_the_pipeline_looks():
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    lines = open(os.path.join(root, "kubeflow", "Dockerfile")).read().splitlines()
    assert "FROM gcr.io/tfx-oss-public/tfx:1.16.0" in lines
    assert f"WORKDIR {pipelines.IMAGE_SOURCE_DIR}" in lines and "ENV TF_USE_LEGACY_KERAS=1" in lines
    copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
    setup_py = ast.parse(open(os.path.join(root, "setup.py")).read())
    subpackages = next(ast.literal_eval(node.value) for node in setup_py.body
                       if isinstance(node, ast.Assign) and node.targets[0].id == "SUBPACKAGES")
    for package in ("mtrec", *subpackages.values()):  # every folder setup.py installs
        assert package in copied and os.path.isdir(os.path.join(root, package)), package
    assert os.path.exists(os.path.join(root, pipelines.IMAGE_SCHEMA.replace(pipelines.IMAGE_SOURCE_DIR + "/", "")))


def test_a_daily_pipeline_schedules_as_a_kfp_recurring_run_with_the_span_as_its_parameter(tmp_path, capsys):
    config = tmp_path / "daily.yaml"
    config.write_text("data: {span: latest, split: hash, window_days: 3}\n")
    assert cli.main(["kfp", "compile", "--output-dir", str(tmp_path), "--config", str(config), "--data",
                     "gs://bucket/logs", "--pipeline-root", "gs://bucket/root", "--image", IMAGE]) == 0
    package = str(tmp_path / "pipeline.yaml")
    request = pipelines.recurring_run_request(package, "0 6 * * *", "exp-1")
    assert request["cron_expression"] == "0 0 6 * * *" and request["params"] == {pipelines.SPAN: "latest"}
    assert request["enable_caching"] is False and request["max_concurrency"] == 1
    with pytest.raises(ValueError, match="5 or 6 fields"):
        pipelines.recurring_run_request(package, "daily", "exp-1")
    with pytest.raises(ValueError, match="no 'span' run parameter"):  # a one-off pipeline has no span to pass
        pipelines.recurring_run_request(_one_off_package(tmp_path), "0 6 * * *", "exp-1")

    # kfp.Client's own request building, without a cluster: only the API call is recorded.
    sent = []
    client = kfp_client.Client.__new__(kfp_client.Client)
    client._recurring_run_api = type("Api", (), {"create_recurring_run": lambda self, body: sent.append(body) or body})()
    body = client.create_recurring_run(**request)
    assert body.trigger.cron_schedule.cron == "0 0 6 * * *" and body.mode == "ENABLE"
    assert body.runtime_config.parameters == {"span": "latest"} and body.no_catchup
    spec = body.pipeline_spec["pipeline_spec"] if "pipeline_spec" in body.pipeline_spec else body.pipeline_spec
    tasks = spec["root"]["dag"]["tasks"]
    assert all(not task.get("cachingOptions", {}).get("enableCache") for task in tasks.values())
    gen = next(t for name, t in tasks.items() if "LogExampleGen" in name)
    assert gen["inputs"]["parameters"]["span_date"]["componentInputParameter"] == "span"
    assert cli.main(["kfp", "schedule", "--host", "http://127.0.0.1:9", "--package", package,
                     "--cron", "0 6 * * *"]) == 2
    assert "no Kubeflow Pipelines API answered at http://127.0.0.1:9" in capsys.readouterr().err


def _one_off_package(tmp_path):
    out = tmp_path / "one-off"
    pipelines.compile_pipeline(PipelineConfig.from_dict({"data": {"source": "events", "path": "gs://bucket/logs"},
                                                         "kubeflow": {"pipeline_root": "gs://bucket/root"}}), str(out))
    return str(out / "pipeline.yaml")
