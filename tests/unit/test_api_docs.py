"""The generated field reference: committed pages are current and cover every field."""

from __future__ import annotations

from pathlib import Path

from kaiwo.api import crds, docs
from kaiwo.api.schema import walk


def test_committed_docs_match_the_models() -> None:
    stale = docs.write(check=True)
    assert stale == [], f"regenerate with `python -m kaiwo.api.docs`: {stale}"


def test_every_field_is_documented_with_a_description() -> None:
    for info in crds.ALL:
        page = docs.render_kind(info)
        schema = crds.root_schema(info)
        for top in ("spec", "status"):
            if top not in schema["properties"]:
                continue
            for path, node in walk(schema["properties"][top], top):
                if path.endswith(("[]", "}")) or path == top:
                    continue
                name = path.rsplit(".", 1)[-1]
                assert f"| `{name}`" in page, f"{info.kind}: {path} missing"
                assert node.get("description"), f"{info.kind}: {path} has no description"


def test_pages_explain_limits_in_words() -> None:
    page = docs.render_kind(next(i for i in crds.ALL if i.kind == "KaiwoJob"))
    assert "a quantity such as `4`, `500m`, `16Gi`" in page
    assert "a duration such as `90s`, `5m`, `1h30m`" in page
    assert "`amd` or `nvidia`, in any letter case" in page
    assert "must be at most 47 characters when Ray is used" in page
    assert "## Example: A Ray job on 16 GPUs" in page
    assert "| `gpus` | integer | `0` | at least 0 |" in page


def test_index_lists_every_kind(tmp_path: Path) -> None:
    index = docs.render_index()
    for info in crds.ALL:
        assert f"[{info.kind}]({info.kind.lower()}.md)" in index
    assert sorted(docs.write(tmp_path)) == sorted(docs.render())
    assert docs.main(["--out", str(tmp_path), "--check"]) == 0
