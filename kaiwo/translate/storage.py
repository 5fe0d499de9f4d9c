"""Storage children of a workload (docs/design/upstream.md#storage-spec, #storage-pipeline, docs/design/decisions.md
D10): PVCs ``<name>-data`` and ``<name>-hf``, and when downloads are configured the ConfigMap and Job
``<name>-download``.

- ``<name>-data`` exists when ``storage.data.storageSize`` is set, ``<name>-hf`` whenever
  ``storage.huggingFace.storageSize`` is set (docs/design/decisions.md D10; upstream only with pre-cache repos). Both
  use ``storage.accessMode`` and ``storage.storageClassName``, else KaiwoConfig ``storage.defaultStorageClass``, else no
  class (the cluster default).
- ConfigMap key ``config.yaml``: ``{downloadRoot, hfHome, s3, gcs, azureBlob, git, hf}`` (empty sections left
  out), with every secret reference's ``file`` set to ``/app/secrets/<secretName>/<secretKey>``.
- The download Job (type ``downloader``) is queued through Kueue like the workload (upstream bypassed quotas): the
  workload's ``kueue.x-k8s.io/queue-name`` (and priority class) label and ``suspend: true``, so it is admitted on
  the ClusterQueue's CPU and memory quota (docs/downloads.md). Image KaiwoConfig
  ``storage.downloaderImage``, else ``Facts.downloader_image`` (the manager's ``--downloader-image``, by default
  the operator's own image, which contains the downloader),
  ``python -m kaiwo.downloader --log-level=INFO /config/config.yaml``, backoffLimit 0, restartPolicy Never,
  runAsUser/Group/fsGroup 1000, requests 1 CPU/1Gi, limits 2 CPU/4Gi; the ConfigMap at ``/config``, the data
  PVC at downloadRoot, each referenced Secret (only the keys used) at ``/app/secrets/<secretName>``, the HF PVC
  at hfHome with ``HF_HOME``; the workload's ``env`` and image pull secrets; the Kaiwo object's annotations on
  its pod (as on the workload's pods: e.g. a sidecar opt-out must reach the downloader too).
- Choice (docs/design/decisions.md D24): pre-cache repos without ``huggingFace.storageSize`` is InvalidSpec (the
  download would land in a volume that does not exist); data downloads without ``data.storageSize`` are ignored, as
  upstream.
"""

from __future__ import annotations

from typing import Any

import yaml

from kaiwo import __version__
from kaiwo.api.base import wire
from kaiwo.api.storage import StorageSpec, data_mount_path, hf_mount_path
from kaiwo.runtime.objects import Obj
from kaiwo.translate import downloadcache
from kaiwo.translate.meta import INVALID_SPEC, TranslateError, child_meta, queue_labels, system_labels
from kaiwo.translate.podtemplate import SECURITY_CONTEXT, SKIPPED_ANNOTATIONS, Workload

# The operator's own image runs the downloader too (the Dockerfile installs the `downloader` extra).
DOWNLOADER_IMAGE = f"ghcr.io/silogen/kaiwo-operator:{__version__}"
SECRETS_ROOT = "/app/secrets"
CONFIG_KEY = "config.yaml"


def _meta(w: Workload, name: str, labels: dict[str, str], key: str | None, shared: dict[str, str] | None = None) -> Obj:
    """A child's metadata, or a shared cache object's (no owner, none of one workload's labels but ``shared``)."""
    if key is None:
        return child_meta(w.cr, name, labels)
    return downloadcache.shared_meta(w.cr["metadata"].get("namespace"), name, key, shared or {})


def _pvc(w: Workload, storage: StorageSpec, claim: str, size: str, key: str | None) -> Obj:
    spec: Obj = {"accessModes": [storage.access_mode.value], "resources": {"requests": {"storage": size}}}
    storage_class = storage.storage_class_name or w.config.storage.default_storage_class
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(w, claim, system_labels(w.cr, w.workload_type), key),
        "spec": spec,
    }


def claims(w: Workload) -> tuple[str, str, str | None]:
    """(data PVC, Hugging Face PVC, download cache key or None) of the workload."""
    storage = w.spec.storage
    cfg = w.config.storage
    if storage is None:
        return f"{w.name}-data", f"{w.name}-hf", None
    data_path = data_mount_path(storage, cfg.default_data_mount_path)
    return downloadcache.claims(w.name, storage, data_path, hf_mount_path(storage, cfg.default_hf_mount_path))


def _resolve_secrets(value: Any, secrets: dict[str, set[str]]) -> Any:
    """Copy of ``value`` with ``file`` set on every secret reference; collects secret name -> keys."""
    if isinstance(value, list):
        return [_resolve_secrets(v, secrets) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _resolve_secrets(v, secrets) for k, v in value.items()}
    if "secretName" in out and "secretKey" in out:
        secrets.setdefault(out["secretName"], set()).add(out["secretKey"])
        out["file"] = f"{SECRETS_ROOT}/{out['secretName']}/{out['secretKey']}"
    return out


def download_config(w: Workload, storage: StorageSpec) -> tuple[Obj, dict[str, set[str]]]:
    secrets: dict[str, set[str]] = {}
    config: Obj = {"downloadRoot": data_mount_path(storage, w.config.storage.default_data_mount_path)}
    if storage.hugging_face and storage.hugging_face.storage_size:
        config["hfHome"] = hf_mount_path(storage, w.config.storage.default_hf_mount_path)
    if storage.has_object_downloads() and storage.data and storage.data.download:
        dl = wire(storage.data.download)
        for key in ("s3", "gcs", "azureBlob", "git"):
            if dl.get(key):
                config[key] = _resolve_secrets(dl[key], secrets)
    if storage.has_hf_downloads() and storage.hugging_face:
        config["hf"] = [wire(r) for r in storage.hugging_face.pre_cache_repos or []]
    return config, secrets


def _download_job(
    w: Workload, storage: StorageSpec, config: Obj, secrets: dict[str, set[str]], image: str, name: str
) -> Obj:
    data_claim, hf_claim, key = claims(w)
    queue = queue_labels(w.queue, w.spec.priority_class)
    labels = {**system_labels(w.cr, "downloader"), **queue}
    volumes: list[Obj] = [{"name": "download-config", "configMap": {"name": name}}]
    mounts: list[Obj] = [{"name": "download-config", "mountPath": "/config", "readOnly": True}]
    env = [wire(e) for e in w.spec.env or []]
    if storage.has_data():
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": data_claim}})
        mounts.append({"name": "data", "mountPath": config["downloadRoot"]})
    if "hfHome" in config:
        volumes.append({"name": "hf", "persistentVolumeClaim": {"claimName": hf_claim}})
        mounts.append({"name": "hf", "mountPath": config["hfHome"]})
        env = [e for e in env if e["name"] != "HF_HOME"] + [{"name": "HF_HOME", "value": config["hfHome"]}]
    for i, secret in enumerate(sorted(secrets)):
        volumes.append(
            {
                "name": f"secret-{i}",
                "secret": {"secretName": secret, "items": [{"key": k, "path": k} for k in sorted(secrets[secret])]},
            }
        )
        mounts.append({"name": f"secret-{i}", "mountPath": f"{SECRETS_ROOT}/{secret}", "readOnly": True})
    container: Obj = {
        "name": "downloader",
        "image": image,
        "command": ["python", "-m", "kaiwo.downloader", "--log-level=INFO", f"/config/{CONFIG_KEY}"],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        # The downloader writes its summary to the termination log; a crash (OOM) leaves the log's tail instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    if env:
        container["env"] = env
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "securityContext": dict(SECURITY_CONTEXT),
        "containers": [container],
        "volumes": volumes,
    }
    if w.spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [wire(s) for s in w.spec.image_pull_secrets]
    meta = _meta(w, name, labels, key, queue)
    pod_meta: Obj = {"labels": dict(meta["labels"])}
    annotations = {k: v for k, v in (w.cr["metadata"].get("annotations") or {}).items() if k not in SKIPPED_ANNOTATIONS}
    if annotations:
        pod_meta["annotations"] = dict(sorted(annotations.items()))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {"backoffLimit": 0, "suspend": True, "template": {"metadata": pod_meta, "spec": pod_spec}},
    }


def download_failure(job: Obj, pods: list[Obj], fallback: str) -> str:
    """The downloader's own message (its container's termination message: which item failed and why) from the
    failed download Job's pods, else ``fallback`` (the Job's condition message)."""
    name = job["metadata"]["name"]
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name", "") != name:
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if cs.get("name") == "downloader" and message:
                return str(message).strip()
    return fallback


def build(w: Workload, downloader_image: str = DOWNLOADER_IMAGE) -> list[Obj] | TranslateError:
    storage = w.spec.storage
    if storage is None or not storage.storage_enabled:
        return []
    hf = storage.hugging_face
    if storage.has_hf_downloads() and not (hf and hf.storage_size):
        return TranslateError(
            INVALID_SPEC,
            "spec.storage.huggingFace.storageSize: required when preCacheRepos is "
            "set (the models are downloaded into the <name>-hf volume)",
        )
    data_claim, hf_claim, key = claims(w)
    out: list[Obj] = []
    if storage.has_data() and storage.data and storage.data.storage_size:
        out.append(_pvc(w, storage, data_claim, storage.data.storage_size, key))
    if hf and hf.storage_size:
        out.append(_pvc(w, storage, hf_claim, hf.storage_size, key))
    if storage.has_downloads():
        config, secrets = download_config(w, storage)
        name = f"{w.name}-download" if key is None else downloadcache.name(key)
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(w, name, system_labels(w.cr, "downloader"), key),
                "data": {CONFIG_KEY: yaml.safe_dump(config, sort_keys=True)},
            }
        )
        image = w.config.storage.downloader_image or downloader_image
        out.append(_download_job(w, storage, config, secrets, image, name))
    return out
