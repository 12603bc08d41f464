"""Every preset and sweep base resolves to the config pinned in tests/fixtures/presets.json.

A change of the library's defaults is a change of the main job (``selfsup train`` with no argument, and its
file configs/vicreg-mnist1d.yaml, the two entries left out here); every other preset must keep its recipe,
so a default that changes writes the old value into the presets that relied on it. After a deliberate change
of a preset, rewrite the pin: ``SELFSUP_PIN_PRESETS=1 pytest tests/test_presets_snapshot.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from selfsup import config as C
from selfsup.select.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]
PIN = ROOT / "tests" / "fixtures" / "presets.json"
MAIN_JOB = "configs/vicreg-mnist1d.yaml"


def _resolved() -> dict[str, dict]:
    out = {}
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        name = str(path.relative_to(ROOT))
        if name == MAIN_JOB:
            continue
        if "sweeps" in path.parts:
            out[name] = C.from_dict(load_sweep(path).base).model_dump(mode="json")
        else:
            out[name] = C.resolve(path).model_dump(mode="json")
    return out


def test_every_preset_but_the_main_job_resolves_as_pinned():
    now = _resolved()
    if os.environ.get("SELFSUP_PIN_PRESETS"):
        PIN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(PIN.read_text())
    assert sorted(now) == sorted(pinned), "a preset was added or removed: pin again (see the docstring)"
    for name in now:
        changed = {
            f"{section}.{key}": (pinned[name][section].get(key), value)
            for section, fields in now[name].items()
            for key, value in fields.items()
            if pinned[name][section].get(key) != value
        }
        assert not changed, f"{name} changed (pinned, now): {changed}"
