"""What the CLI reads about the cluster's Kueue installation: its Configuration, as Kueue's install keeps it.

Kueue's manifests and Helm chart store the manager's Configuration in the ConfigMap ``kueue-manager-config``
(key ``controller_manager_config.yaml``) of the ``kueue-system`` namespace; the local cluster publishes its
Kueue settings the same way. Scientists often may not read it: every reader returns None then, and callers say
that they could not check rather than guess.
"""

from __future__ import annotations

import yaml

from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import Obj

NAMESPACE = "kueue-system"
CONFIG_MAP = "kueue-manager-config"
CONFIG_KEY = "controller_manager_config.yaml"
# Kueue's default when the Configuration sets no managedJobsNamespaceSelector (v0.10 and later).
DEFAULT_MANAGED_SELECTOR: Obj = {
    "matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]}
    ]
}


async def configuration(client: Client) -> Obj | None:
    """Kueue's Configuration, or None when it cannot be read (not installed this way, or not allowed)."""
    try:
        cm = await client.get_or_none("v1", "ConfigMap", CONFIG_MAP, NAMESPACE)
    except ApiError:
        return None
    text = ((cm or {}).get("data") or {}).get(CONFIG_KEY)
    if not text:
        return None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return loaded if isinstance(loaded, dict) else None


def managed_selector(config: Obj | None) -> Obj | None:
    """The namespaces whose jobs Kueue manages (a LabelSelector), None when the configuration is unknown."""
    if config is None:
        return None
    selector = config.get("managedJobsNamespaceSelector")
    return dict(selector) if isinstance(selector, dict) else DEFAULT_MANAGED_SELECTOR
