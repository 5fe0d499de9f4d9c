from importlib import resources

import yaml


def test_pod_stages_are_valid_and_mutually_exclusive() -> None:
    text = resources.files("kaiwo.devcluster").joinpath("data", "kwok-pod-stages.yaml").read_text()
    docs = list(yaml.safe_load_all(text.replace("{{COMPLETE_AFTER_MS}}", "2000")))
    by_name = {d["metadata"]["name"]: d for d in docs}
    assert set(by_name) == {"kaiwo-pod-complete", "kaiwo-pod-fail"}
    fail_key = '.metadata.annotations["kwok.kaiwo.dev/fail"]'
    complete = {e["key"]: e for e in by_name["kaiwo-pod-complete"]["spec"]["selector"]["matchExpressions"]}
    fail = {e["key"]: e for e in by_name["kaiwo-pod-fail"]["spec"]["selector"]["matchExpressions"]}
    assert complete[fail_key]["operator"] == "DoesNotExist"
    assert fail[fail_key]["operator"] == "In"
    for d in docs:
        assert d["spec"]["delay"]["durationMilliseconds"] == 2000
