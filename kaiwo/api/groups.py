"""The API groups and versions of Kaiwo's own kinds: the one place their ``apiVersion`` strings are spelled.

KaiwoJob, KaiwoService, KaiwoQueueConfig and GpuWorkload are served as ``kaiwo.silogen.ai/v1alpha1``;
KaiwoConfig has a group of its own, ``config.kaiwo.silogen.ai/v1alpha1``. The ``Literal`` aliases type the
models' ``apiVersion`` fields (a ``Literal`` cannot be built from a constant, so each string is written twice here).
"""

from __future__ import annotations

from typing import Final, Literal

KaiwoApiVersion = Literal["kaiwo.silogen.ai/v1alpha1"]
KaiwoConfigApiVersion = Literal["config.kaiwo.silogen.ai/v1alpha1"]

VERSION: Final = "v1alpha1"
KAIWO_GROUP: Final = "kaiwo.silogen.ai"
KAIWO_API: Final[KaiwoApiVersion] = "kaiwo.silogen.ai/v1alpha1"
CONFIG_GROUP: Final = "config.kaiwo.silogen.ai"
KAIWO_CONFIG_API: Final[KaiwoConfigApiVersion] = "config.kaiwo.silogen.ai/v1alpha1"
