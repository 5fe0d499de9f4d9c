"""``TYPE/NAME`` references to Kaiwo workloads, as kubectl spells them: ``job/NAME``, ``service/NAME``,
``kaiwojob/NAME``, ``kaiwoservices/NAME``, or the ``kaiwojob.kaiwo.silogen.ai/NAME`` that submit prints."""

from __future__ import annotations

from dataclasses import dataclass

from kaiwo.api.groups import KAIWO_API, KAIWO_GROUP
from kaiwo.cli.errors import USAGE, CliError

_KINDS = {
    "KaiwoJob": ("job", "jobs", "kaiwojob", "kaiwojobs"),
    "KaiwoService": ("service", "services", "svc", "kaiwoservice", "kaiwoservices"),
}
_ALIASES = {alias: kind for kind, aliases in _KINDS.items() for alias in aliases}


@dataclass(frozen=True)
class WorkloadRef:
    kind: str  # KaiwoJob | KaiwoService
    name: str

    api_version = KAIWO_API

    @property
    def short(self) -> str:
        """``job/NAME`` or ``service/NAME``."""
        return f"{_KINDS[self.kind][0]}/{self.name}"

    @property
    def qualified(self) -> str:
        """``kaiwojob.kaiwo.silogen.ai/NAME``, as kubectl prints it."""
        return qualified_name(self.kind, self.name)


def qualified_name(kind: str, name: str, api_version: str = KAIWO_API) -> str:
    group = api_version.rpartition("/")[0]
    return f"{kind.lower()}.{group}/{name}" if group else f"{kind.lower()}/{name}"


def parse_ref(text: str) -> WorkloadRef:
    kind_part, sep, name = text.partition("/")
    kind_part = kind_part.lower().removesuffix(f".{KAIWO_GROUP}")
    if not sep or not name or "/" in name or kind_part not in _ALIASES:
        raise CliError(
            f"{text!r} is not a workload reference",
            "write job/NAME or service/NAME (see `kaiwo list` for names)",
            code=USAGE,
        )
    return WorkloadRef(_ALIASES[kind_part], name)
