"""`mtrec config --from-table`: a config drafted from a table's header and values."""
import numpy as np

from mtrec.config import PipelineConfig
from mtrec.data import draft


def test_each_column_gets_the_treatment_its_values_ask_for(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.csv"
    with open(path, "w") as f:
        f.write("row_id,user_id,device,stars_given,price,session_hash,is_click,bought,constant\n")
        for i in range(3000):
            f.write(f"r{i},u{i % 300},{['m', 'd', 't'][i % 3]},{i % 5},{rng.normal():.3f},"
                    f"h{rng.integers(10_000)},{i % 2},{['NA', 'yes', 'no'][i % 3]},7\n")
    drafted = draft.draft(str(path))
    features = drafted["features"]
    assert features["ids"] == ["user_id"] and features["categorical"] == ["device", "stars_given", "bought"]
    assert features["numeric"] == ["price"] and list(features["hashed"]) == ["session_hash"]
    assert features["hashed"]["session_hash"] >= 2 * 3000
    assert drafted["tasks"] == [{"name": "is_click", "label": "is_click", "type": "binary"}]
    assert any(line.startswith("row_id") for line in drafted["_left_out"])
    assert any(line.startswith("constant") for line in drafted["_left_out"])
    assert drafted["data"]["pattern"] == "t.csv" and drafted["data"]["test_percent"] == 10
    labelled = draft.draft(str(path), labels=["bought"])
    assert labelled["tasks"] == [{"name": "bought", "label": "bought", "type": "binary", "positive": "yes"}]
    raw = PipelineConfig().to_dict()
    for key in ("data", "features", "tasks", "slices", "training"):
        raw[key] = {**raw[key], **drafted[key]} if isinstance(raw[key], dict) else drafted[key]
    PipelineConfig.from_dict(raw)  # a valid config
