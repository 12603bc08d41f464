"""The freeze of the label-free rule study: the chosen rule's code, the code it runs on and the held-out
sweeps with their study presets are pinned by SHA-256, fixed before any held-out run.

An edit to one of these files fails here: the held-out results (benchmarks/results/selection/held-out/) then
no longer judge the code in the repository. A change to the rules is a new study: new held-out sweeps, a new
freeze, every held-out sweep run and reported.
"""

import hashlib
import json
from pathlib import Path

import pytest

from selfsup.select import rules as R
from selfsup.select.spec import load_sweep

ROOT = Path(__file__).parents[2]
FROZEN = {
    "selfsup/select/rules.py": "9df6d60dbcacb9455310e9f752f23c7eb23dea64043d0966f97cbd01dd506fef",
    "selfsup/select/flags.py": "60909e18c3a511a0c2194ccbf6209779e5ea2b1078dd2014957639b2b6158ef1",
    "selfsup/select/epochs.py": "360cffae78710b7a422f3151be58dfd103f73272cb3bf48ca1851af848b6fb46",
    "selfsup/select/selection.py": "dd5a3b5dc9f6085ea6cd2e319a3e84f4790f1f391fe850f38d9b90a4f27e6a37",
    "selfsup/select/evidence.py": "84901e19467549eecfeab48e709474793611243924e0d00042310860afd1595a",
    "configs/sweeps/held-out/objects3d-simclr-temp.yaml": "5b8ff26437587f7394265021f3eca98f34768ce7c142070dd9d1e4381524e04f",  # noqa: E501
    "configs/sweeps/held-out/objects3d-simsiam-proj.yaml": "9149f9cf47b0ae4a259663923135f944d8de494f4cd1be03953f5d0da15b2688",  # noqa: E501
    "configs/sweeps/held-out/objects3d-vicreg-cov.yaml": "08da7a5546b5b54a7c8b1cc87f16c2acd4e1143ccb236ee10c80fc1a4bb64f94",  # noqa: E501
    "configs/sweeps/held-out/objects3d-vicreg-lr.yaml": "27b731afd8fb610650bff6aaf9ee046477531bf3d44da41244cc89ad3a1fbb21",  # noqa: E501
    "configs/study/objects3d-simclr.yaml": "5b715f774dc0f86c9e0ce44ff5021e2e0d9777ab983c087125cd75a9b800e03f",
    "configs/study/objects3d-simsiam.yaml": "3c7346dbfdf325b7ae3b36a1d4b9927028c20fcf5b3d35878c68917547b02f67",  # noqa: E501
    "configs/study/objects3d-vicreg.yaml": "68f25ec196fdf7e0ae5b73ba83a83c0842be7ff80622253b22af64aa381e6f4e",
}
HELD_OUT = sorted((ROOT / "configs" / "sweeps" / "held-out").glob("*.yaml"))


@pytest.mark.parametrize("path", sorted(FROZEN))
def test_frozen_file_is_unchanged(path):
    assert hashlib.sha256((ROOT / path).read_bytes()).hexdigest() == FROZEN[path], f"{path} is frozen"


def test_the_held_out_set_is_the_frozen_one_and_as_the_study_requires():
    assert {str(p.relative_to(ROOT)) for p in HELD_OUT} == {p for p in FROZEN if "held-out" in p}
    assert R.CHOSEN_RULE in R.RULES
    kinds, objects3d = set(), 0
    for path in HELD_OUT:
        sw = load_sweep(path)
        assert sw.keys[-1] == "train.seed" and sw.spec.space["train.seed"].values == [0, 1, 2]
        assert len(sw.keys) == 2 and sw.n_trials >= 12  # one hyper-parameter, >= 4 values, 3 seeds each
        kinds.add(sw.keys[0].split(".")[-1])
        objects3d += sw.base["data"]["dataset"] == "objects3d"
    assert len(kinds) == len(HELD_OUT) == 4 and objects3d >= 3


def test_the_study_presets_ran_within_60_s():
    presets = json.loads((ROOT / "benchmarks/results/selection/study_presets.json").read_text())["results"]
    assert {f"configs/study/{name}.yaml" for name in presets["presets"]} == {
        p for p in FROZEN if "study/" in p
    }
    assert all(p["wall_s"] <= 60 for p in presets["presets"].values())
