"""Test set-up: Keras 2 (tf-keras) must be chosen before TensorFlow is imported anywhere."""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import mtrec  # noqa: E402,F401

MOVIELENS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ml-100k")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

from mtrec.config import SYNTHETIC_TEXT_FIELDS  # noqa: E402

# Tests on `small_run` share one xdist worker, so the run happens once.
SMALL_RUN = pytest.mark.xdist_group("small_run")
# xdist groups by their measured time, longest first. Workers take work in collection order (the
# Makefile turns xdist's reordering by test count off): a long group taken last would keep one
# worker busy alone at the end, while the ungrouped tests fill in around the long ones.
LONGEST_FIRST = ("movielens", "small_run", "e2e", "daily", "missing_table", "table_run", "mirrored_check")


def pytest_collection_modifyitems(items):
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}

    def group(item):
        marker = item.get_closest_marker("xdist_group")
        return marker.args[0] if marker and marker.args else None

    items.sort(key=lambda item: rank.get(group(item), len(rank)))  # stable: file order within a group


class SmallRun:
    def __init__(self, work_dir, logs, config, summary, blanked):
        self.work_dir, self.logs, self.config, self.summary, self.blanked = work_dir, logs, config, summary, blanked
        self.metadata = os.path.join(work_dir, "metadata.db")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """`mtrec run` on 4000 impressions (3 epochs at batch 512, no quality gates, single-task baselines), trained on
    one device (tests/pipeline/test_distributed.py retrains it under Mirrored and MultiWorkerMirrored), on a log that leaves optional fields out of 6% of its lines (device,
    page, position, category, price, region, signup day), with text features from the items' titles
    and descriptions and the users' `about`, and their ablation. In a process of its own: LocalDagRunner
    runs every component in one process, and logical devices must be configured before
    TensorFlow starts there."""
    from mtrec.config import PipelineConfig
    from mtrec.data import missing, synthetic

    root = tmp_path_factory.mktemp("small_run")
    logs, work = root / "logs", root / "work"
    synthetic.generate(str(logs), synthetic.SyntheticLogSpec(impressions=4000, days=4, seed=3))
    blanked = missing.blank_log_fields(str(logs), rate=0.06, seed=3)
    raw = PipelineConfig().to_dict()
    raw["training"].update(epochs=3, strategy="one_device", batch_size=512)
    raw["text"].update(fields=SYNTHETIC_TEXT_FIELDS, ablation=True)
    raw["baselines"] = True
    for task in raw["tasks"]:
        task["gate"] = {"bound": None, "tolerance": 1e6}  # plumbing, not quality
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "mtrec.cli", "run", "--work-dir", str(work), "--logs", str(logs),
                           "--config", str(root / "config.yaml")], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(work / "run_summary.json") as f:
        summary = json.load(f)
    assert summary["pushed_model"], summary["failed_gates"]
    return SmallRun(str(work), logs, str(root / "config.yaml"), summary, blanked)
