"""TFX's Beam dependency package: DirectRunner's args untouched (no 49 MB copy of TFX per
component), other runners get one package per process, gone when the process ends."""
import glob
import os
import subprocess
import sys

import pytest

from mtrec.pipeline import beam_dependencies

CHILD = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
from tfx.utils import dependency_utils
from mtrec.pipeline import beam_dependencies
beam_dependencies.apply()
first = dependency_utils.make_beam_dependency_flags(["--runner=DataflowRunner", "--project=p"])
second = dependency_utils.make_beam_dependency_flags(["--runner=PortableRunner"])
package = first[-1].split("=", 1)[1]
assert first[-1] == second[-1] and second[-1].startswith("--extra_package="), (first, second)
assert os.path.isfile(package), package
print(package)
"""


@pytest.mark.parametrize("args", [["--direct_running_mode=in_memory"], ["--runner=DirectRunner"], ["--runner=direct"],
                                  ["--runner=directrunner", "--direct_running_mode=multi_processing"]])
def test_directrunner_args_are_left_as_they_are(args):
    assert beam_dependencies.is_local(args)
    assert beam_dependencies.dependency_flags(args) == args


@pytest.mark.parametrize("args", [["--runner=DataflowRunner"], ["--runner=FlinkRunner"], ["--runner=portable"]])
def test_other_runners_are_not_local(args):
    assert not beam_dependencies.is_local(args)


def test_other_runners_share_one_package_removed_at_exit(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    package = out.stdout.strip().splitlines()[-1]
    assert package.startswith(str(tmp_path)) and package.endswith(".tar.gz")
    assert not os.path.exists(package)
    assert glob.glob(str(tmp_path / "*" / "build")) == [], "the copy of TFX is removed with the package"
