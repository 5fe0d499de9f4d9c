"""Golden-file comparison for table-driven tests: the rendered YAML of a case must equal its file.

``KAIWO_UPDATE_GOLDEN=1`` rewrites the files instead; review the diff before committing it."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.runtime.objects import Obj
from kaiwo.translate.gpus import GpuPool
from kaiwo.translate.workload import Facts


class _NoAliases(yaml.SafeDumper):
    """Show every value in full: a golden file is read by people."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# Typed values (phases, condition types) are StrEnums: shown as the string they are on the wire.
_NoAliases.add_multi_representer(StrEnum, lambda dumper, value: dumper.represent_str(str(value)))


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_NoAliases, sort_keys=True, default_flow_style=False, width=120)


def check(path: Path, value: Any) -> None:
    actual = dump(value)
    if os.environ.get("KAIWO_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.exists(), f"{path} missing: run with KAIWO_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(), f"{path.name} differs (KAIWO_UPDATE_GOLDEN=1 rewrites it; review the diff)"


def stale_files(folder: Path, cases: list[str]) -> list[str]:
    """Golden files in ``folder`` that no case writes any more."""
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem not in cases)


# --- translate cases: tests/unit/golden/<case>/input.yaml --------------------------------------------------------

TRANSLATE_GOLDEN = Path(__file__).parent / "unit" / "golden"
TRANSLATE_CASES = sorted(p.name for p in TRANSLATE_GOLDEN.iterdir() if (p / "input.yaml").exists())


def facts_from(data: dict[str, Any]) -> Facts:
    """``facts`` of an input file: ``config`` (a KaiwoConfig spec, defaults filled), ``gpuPools``
    (``[{vendor, gpusPerNode, nodes}]``)."""
    pools = tuple(GpuPool(p["vendor"], p["gpusPerNode"], p["nodes"]) for p in data.get("gpuPools") or [])
    return Facts(config=KaiwoConfigSpec.model_validate(data.get("config") or {}), gpu_pools=pools)


def translate_input(case: str) -> tuple[Obj, Facts]:
    """The Kaiwo object (``cr``) and the facts of a translate case."""
    data = yaml.safe_load((TRANSLATE_GOLDEN / case / "input.yaml").read_text())
    cr: Obj = data["cr"]
    return cr, facts_from(data.get("facts") or {})
