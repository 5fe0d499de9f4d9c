"""The CLI's own config file: who you are and which ClusterQueue you use (docs/design/upstream.md#cli).

Found at ``--config``, else ``$KAIWOCONFIG``, else ``$XDG_CONFIG_HOME/kaiwo/kaiwoconfig.yaml`` (XDG_CONFIG_HOME
defaults to ``~/.config``). It holds only ``user:`` and ``clusterQueue:``. ``submit`` offers to write it on the
first run, and only when a person is at a terminal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kaiwo.cli.errors import CliError

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DEFAULT_QUEUE = "kaiwo"


@dataclass(frozen=True)
class UserConfig:
    user: str = ""
    cluster_queue: str = ""


def config_path(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("KAIWOCONFIG"):
        return Path(os.environ["KAIWOCONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "kaiwo" / "kaiwoconfig.yaml"


def load(path: Path) -> UserConfig | None:
    """The config at ``path``, or None when there is no file."""
    if not path.is_file():
        return None
    try:
        data: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise CliError(
            f"{path} is not valid YAML: {e}", "fix or delete the file (it holds user: and clusterQueue:)"
        ) from None
    if not isinstance(data, dict):
        raise CliError(f"{path} must be a mapping with user: and clusterQueue:", "fix or delete the file")
    return UserConfig(user=str(data.get("user") or ""), cluster_queue=str(data.get("clusterQueue") or ""))


def save(path: Path, cfg: UserConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"user": cfg.user, "clusterQueue": cfg.cluster_queue}, sort_keys=False))


def validate_email(value: str) -> str:
    if not EMAIL.match(value.strip()):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value.strip()
