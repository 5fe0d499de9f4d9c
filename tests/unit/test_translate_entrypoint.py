"""Entrypoint handling and default resources, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from kaiwo.translate.entrypoint import ray_entrypoint, shell_command
from kaiwo.translate.meta import sanitize_user
from kaiwo.translate.resources import default_cpu_memory, fill_resources


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        ("echo hi", ["/bin/sh", "-c", "echo hi"]),
        ("\n  echo hi\n\n", ["/bin/sh", "-c", "echo hi"]),
        ("python a.py \\\n  --x 1", ["/bin/sh", "-c", "python a.py    --x 1"]),
        ("a \\\r\nb", ["/bin/sh", "-c", "a  b"]),
        ("#!/bin/bash\nset -e\necho $X", ["/bin/bash", "-c", "set -e\necho $X"]),
        ("#!/usr/bin/env python3\nprint(1)", ["/usr/bin/env", "python3", "-c", "print(1)"]),
        ("#!/bin/bash -eu\necho", ["/bin/bash", "-eu", "-c", "echo"]),
        ("#!\necho", ["/bin/sh", "-c", "echo"]),
    ],
)
def test_shell_command(entrypoint: str, expected: list[str]) -> None:
    assert shell_command(entrypoint) == expected


def test_ray_entrypoint() -> None:
    assert ray_entrypoint("  python x.py \\\n --a 1\n") == "python x.py   --a 1"


@pytest.mark.parametrize(
    ("user", "label"),
    [
        ("test@amd.com", "test-amd.com"),
        ("Alice.Smith@Example.com", "alice.smith-example.com"),
        ("-bob-", "bob"),
        ("", ""),
        ("a" * 70, "a" * 63),
    ],
)
def test_sanitize_user(user: str, label: str) -> None:
    assert sanitize_user(user) == label


@pytest.mark.parametrize(
    ("container", "spec_resources", "gpus", "expected"),
    [
        ({}, None, 0, ({"cpu": "2", "memory": "16Gi"}, {"cpu": "2", "memory": "16Gi"})),
        ({}, None, 2, ({"amd.com/gpu": "2", "cpu": "8", "memory": "64Gi"},) * 2),
        # explicit values win; a missing limit takes the request (and the other way round)
        (
            {"resources": {"requests": {"cpu": "1"}, "limits": {"memory": "3Gi"}}},
            None,
            0,
            ({"cpu": "1", "memory": "3Gi"},) * 2,
        ),
        # spec.resources before the defaults; GPU keys in spec.resources are ignored
        (
            {},
            {"requests": {"cpu": 6, "amd.com/gpu": "4"}},
            1,
            ({"amd.com/gpu": "1", "cpu": "6", "memory": "32Gi"},) * 2,
        ),
        # the GPU key is always overwritten
        (
            {"resources": {"limits": {"amd.com/gpu": "8"}}},
            None,
            1,
            ({"amd.com/gpu": "1", "cpu": "4", "memory": "32Gi"},) * 2,
        ),
    ],
)
def test_fill_resources(
    container: dict[str, Any],
    spec_resources: dict[str, Any] | None,
    gpus: int,
    expected: tuple[dict[str, str], dict[str, str]],
) -> None:
    out = fill_resources(
        container,
        gpus=gpus,
        resource_key="amd.com/gpu",
        spec_resources=spec_resources,
        defaults=default_cpu_memory(gpus),
    )
    assert (out["resources"]["requests"], out["resources"]["limits"]) == expected
    assert "resources" not in container or container["resources"] != out["resources"]
