"""Example manifests in the shapes upstream Kaiwo documents (quickstart, workload examples, admin guide).

They appear in the reference docs and the tests apply them to a real apiserver, so every example here is
known to be accepted. ``EXAMPLES[kind]`` lists ``(title, manifest)`` pairs; namespaced examples carry no
namespace.
"""

from __future__ import annotations

from kaiwo.api.groups import KAIWO_API as KAIWO
from kaiwo.api.groups import KAIWO_CONFIG_API
from kaiwo.runtime.objects import Obj

BATCH_JOB: Obj = {
    "apiVersion": KAIWO,
    "kind": "KaiwoJob",
    "metadata": {"name": "dpo-singlenode"},
    "spec": {
        "user": "test@amd.com",
        "gpus": 4,
        "image": "ghcr.io/silogen/rocm-ray:6.4",
        "entrypoint": "accelerate launch code/dpo.py \\\n  --model_name_or_path Qwen/Qwen2-0.5B-Instruct \\\n"
        "  --output_dir Qwen2-0.5B-DPO\n",
        "duration": "4h",
        "resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"memory": "64Gi"}},
        "env": [
            {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "hf-token"}}},
        ],
    },
}

RAY_JOB: Obj = {
    "apiVersion": KAIWO,
    "kind": "KaiwoJob",
    "metadata": {"name": "deepspeed-zero3-multinode"},
    "spec": {
        "user": "test@amd.com",
        "ray": True,
        "gpus": 16,
        "gpuVendor": "AMD",
        "image": "ghcr.io/silogen/rocm-ray:6.4",
        "entrypoint": "python code/main.py --model meta-llama/Llama-3.1-8B-Instruct --ds-config zero3.json",
        "preferredTopologyLabel": "kaiwo/topology-rack",
        "secretVolumes": [{"name": "minio", "secretName": "minio-credentials", "mountPath": "/secrets/minio"}],
    },
}

STORAGE_JOB: Obj = {
    "apiVersion": KAIWO,
    "kind": "KaiwoJob",
    "metadata": {"name": "download-and-train"},
    "spec": {
        "user": "test@amd.com",
        "gpus": 8,
        "replicas": 2,
        "gpusPerReplica": 4,
        "gpuModels": ["mi300x"],
        "image": "ghcr.io/silogen/rocm-ray:6.4",
        "entrypoint": "#!/bin/bash\nls /workload/code && python /workload/code/train.py\n",
        "clusterQueue": "research",
        "priorityClass": "high-priority",
        "storage": {
            "storageEnabled": True,
            "storageClassName": "rwx-nfs",
            "data": {
                "storageSize": "20Gi",
                "mountPath": "/workload",
                "download": {
                    "git": [
                        {
                            "repository": "https://github.com/silogen/kaiwo.git",
                            "path": "workloads/training/LLMs/dpo-singlenode",
                            "targetPath": "code",
                        }
                    ],
                    "s3": [
                        {
                            "endpointUrl": "https://minio.example.com",
                            "accessKeyId": {"secretName": "minio", "secretKey": "access-key-id"},
                            "secretKey": {"secretName": "minio", "secretKey": "secret-key"},
                            "buckets": [
                                {
                                    "name": "datasets",
                                    "files": [{"path": "tokens/train.bin", "targetPath": "data/train.bin"}],
                                    "folders": [{"path": "images/", "targetPath": "data/images", "glob": "*.jpg"}],
                                }
                            ],
                        }
                    ],
                    "gcs": [
                        {
                            "applicationCredentials": {"secretName": "gcs", "secretKey": "key.json"},
                            "buckets": [{"name": "checkpoints", "folders": [{"path": "base/", "targetPath": "ckpt"}]}],
                        }
                    ],
                    "azureBlob": [
                        {
                            "connectionString": {"secretName": "azure", "secretKey": "connection-string"},
                            "containers": [
                                {"name": "corpus", "files": [{"path": "a.txt", "targetPath": "corpus/a.txt"}]}
                            ],
                        }
                    ],
                },
            },
            "huggingFace": {
                "storageSize": "100Gi",
                "preCacheRepos": [
                    {"repoId": "Qwen/Qwen2-0.5B-Instruct"},
                    {"repoId": "meta-llama/Llama-3.1-8B-Instruct", "files": ["config.json"]},
                ],
            },
        },
    },
}

SERVICE: Obj = {
    "apiVersion": KAIWO,
    "kind": "KaiwoService",
    "metadata": {"name": "vllm-openai"},
    "spec": {
        "user": "test@amd.com",
        "gpus": 1,
        "image": "rocm/vllm:latest",
        "entrypoint": "vllm serve Qwen/Qwen2-0.5B-Instruct --port 8000",
        "env": [{"name": "HF_HOME", "value": "/hf_cache"}],
        "storage": {
            "storageEnabled": True,
            "storageClassName": "rwx-nfs",
            "huggingFace": {"storageSize": "50Gi", "mountPath": "/hf_cache"},
        },
    },
}

RAY_SERVICE: Obj = {
    "apiVersion": KAIWO,
    "kind": "KaiwoService",
    "metadata": {"name": "online-inference-vllm"},
    "spec": {
        "user": "test@amd.com",
        "gpus": 16,
        "ray": True,
        "serveConfigV2": (
            "applications:\n- name: llm\n  route_prefix: /\n  import_path: code:deployment\n  deployments:\n"
            "  - name: VLLMDeployment\n    autoscaling_config:\n      target_num_ongoing_requests_per_replica: 20\n"
        ),
        "env": [
            {"name": "MODEL_ID", "value": "meta-llama/Llama-3.1-8B-Instruct"},
            {"name": "MAX_MODEL_LEN", "value": "8192"},
        ],
        "storage": {
            "storageEnabled": True,
            "storageClassName": "multinode",
            "data": {
                "storageSize": "10Mi",
                "mountPath": "/workload",
                "download": {
                    "git": [
                        {
                            "repository": "https://github.com/silogen/kaiwo.git",
                            "path": "workloads/inference/LLMs/online-inference",
                            "targetPath": "code",
                        }
                    ]
                },
            },
            "huggingFace": {
                "storageSize": "100Gi",
                "mountPath": "/hf_cache",
                "preCacheRepos": [{"repoId": "meta-llama/Llama-3.1-8B-Instruct", "files": []}],
            },
        },
    },
}

JOB_WITH_BASE_SPEC: Obj = {
    "apiVersion": KAIWO,
    "kind": "KaiwoJob",
    "metadata": {"name": "custom-job"},
    "spec": {
        "user": "test@amd.com",
        "image": "busybox:1.36",
        "job": {
            "spec": {
                "ttlSecondsAfterFinished": 600,
                "template": {
                    "spec": {
                        "containers": [{"name": "main", "command": ["sh", "-c", "echo hello"]}],
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                    }
                },
            }
        },
    },
}

QUEUE_CONFIG: Obj = {
    "apiVersion": KAIWO,
    "kind": "KaiwoQueueConfig",
    "metadata": {"name": "kaiwo"},
    "spec": {
        "resourceFlavors": [
            {
                "name": "amd-mi300x-8gpu",
                "nodeLabels": {"kaiwo/nodepool": "amd-mi300x-8gpu"},
                "topologyName": "default-topology",
                "taints": [{"key": "amd.com/gpu", "effect": "NoSchedule"}],
                "tolerations": [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
            {"name": "cpu-high-mem", "nodeLabels": {"kaiwo/nodepool": "cpu-high-mem"}},
        ],
        "clusterQueues": [
            {
                "name": "research",
                "namespaces": ["ai-research-1", "ai-research-2"],
                "spec": {
                    "queueingStrategy": "BestEffortFIFO",
                    "cohort": "kaiwo",
                    "namespaceSelector": {},
                    "resourceGroups": [
                        {
                            "coveredResources": ["cpu", "memory", "amd.com/gpu"],
                            "flavors": [
                                {
                                    "name": "amd-mi300x-8gpu",
                                    "resources": [
                                        {"name": "cpu", "nominalQuota": "192"},
                                        {"name": "memory", "nominalQuota": "1024Gi"},
                                        {"name": "amd.com/gpu", "nominalQuota": 8, "borrowingLimit": 8},
                                    ],
                                }
                            ],
                        },
                        {
                            "coveredResources": ["cpu", "memory"],
                            "flavors": [
                                {
                                    "name": "cpu-high-mem",
                                    "resources": [
                                        {"name": "cpu", "nominalQuota": 256},
                                        {"name": "memory", "nominalQuota": "2048Gi"},
                                    ],
                                }
                            ],
                        },
                    ],
                    "preemption": {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority"},
                },
            },
            {
                "name": "kaiwo",
                "spec": {
                    "namespaceSelector": {},
                    "resourceGroups": [
                        {
                            "coveredResources": ["cpu"],
                            "flavors": [{"name": "cpu-high-mem", "resources": [{"name": "cpu", "nominalQuota": "16"}]}],
                        }
                    ],
                },
            },
        ],
        "workloadPriorityClasses": [
            {"metadata": {"name": "high-priority"}, "value": 1000, "description": "Deadlines"},
            {
                "apiVersion": "kueue.x-k8s.io/v1beta1",
                "kind": "WorkloadPriorityClass",
                "metadata": {"name": "low-priority"},
                "value": 100,
            },
        ],
        "topologies": [
            {
                "metadata": {"name": "default-topology"},
                "spec": {
                    "levels": [
                        {"nodeLabel": "kaiwo/topology-block"},
                        {"nodeLabel": "kaiwo/topology-rack"},
                        {"nodeLabel": "kubernetes.io/hostname"},
                    ]
                },
            },
        ],
    },
}

KAIWO_CONFIG: Obj = {
    "apiVersion": KAIWO_CONFIG_API,
    "kind": "KaiwoConfig",
    "metadata": {"name": "kaiwo"},
    "spec": {
        "ray": {"headPodMemory": "1Gi"},
        "scheduling": {"pendingThresholdForPreemption": "1s"},
        "dynamicallyUpdateDefaultClusterQueue": True,
        "resourceMonitoring": {
            "lowUtilizationThreshold": 5,
            "terminateUnderutilized": True,
            "terminateUnderutilizedAfter": "1h",
            "targetNamespaces": ["team-a"],
        },
        "gpuPreemption": {
            "defaultThreshold": 5,
            "defaultGracePeriod": "10m",
            "defaultPolicy": "OnPressure",
            "defaultAggregation": "Max",
            "defaultTTL": "24h",
        },
    },
}

GPU_WORKLOAD: Obj = {
    "apiVersion": KAIWO,
    "kind": "GpuWorkload",
    "metadata": {"name": "job-train-1a2b3c4d"},
    "spec": {
        "workloadRef": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "train",
            "uid": "1a2b3c4d-0000-4000-8000-000000000000",
        },
        "gpuResources": {"amd.com/gpu": 4},
        "utilizationThreshold": 5,
        "gracePeriod": "10m",
        "preemptionPolicy": "OnPressure",
        "aggregationPolicy": "Max",
        "ttlAfterFinished": "0",
    },
}

EXAMPLES: dict[str, list[tuple[str, Obj]]] = {
    "KaiwoJob": [
        ("A batch job on 4 GPUs", BATCH_JOB),
        ("A Ray job on 16 GPUs", RAY_JOB),
        ("Downloads into storage before the job starts", STORAGE_JOB),
        ("Starting from your own batch Job spec", JOB_WITH_BASE_SPEC),
    ],
    "KaiwoService": [
        ("A Deployment serving a model", SERVICE),
        ("A Ray Serve service", RAY_SERVICE),
    ],
    "KaiwoQueueConfig": [("Flavors, queues, priority classes and a topology", QUEUE_CONFIG)],
    "KaiwoConfig": [("Settings for a small test cluster", KAIWO_CONFIG)],
    "GpuWorkload": [("A tracked Job (written by Kaiwo)", GPU_WORKLOAD)],
}
