"""The live KaiwoConfig: read from the cache on every reconcile (upstream re-reads it too), defaults if absent."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.api.groups import KAIWO_CONFIG_API as KAIWO_CONFIG_API  # re-exported: controllers read KaiwoConfig by it
from kaiwo.runtime.informer import Informer

log = logging.getLogger(__name__)
SINGLETON = "kaiwo"


def current(configs: Informer | None) -> KaiwoConfigSpec:
    obj = configs.get_by(SINGLETON) if configs is not None else None
    if obj is None:
        return KaiwoConfigSpec()
    try:
        return KaiwoConfigSpec.model_validate(obj.get("spec") or {})
    except ValidationError as e:  # the CRD schema should prevent this; never crash on it
        log.error("KaiwoConfig %s is invalid, using defaults: %s", SINGLETON, e)
        return KaiwoConfigSpec()
