"""The complete example in docs/stack-reference.md builds exactly as written."""

from __future__ import annotations

import re

from tests.build.conftest import REPO, Project

BLOCK = re.compile(r"```(?:toml|jinja)\n(.*?)```", re.S)
NAMED = re.compile(r"^(?:# |\{# )(stacks/\S+?)(?::.*| -?#\})?$")


def example_files() -> dict[str, str]:
    text = (REPO / "docs/stack-reference.md").read_text()
    files = {}
    for block in BLOCK.findall(text):
        first = block.splitlines()[0]
        m = NAMED.match(first)
        if m:
            files[m.group(1)] = block
    return files


def test_reference_example_builds(empty_project: Project) -> None:
    files = example_files()
    assert {
        "stacks/web1.toml",
        "stacks/web1-staging.toml",
        "stacks/shared/node-exporter.toml",
    } <= set(files)
    for rel, text in files.items():
        path = empty_project.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = empty_project.run("build", "web1", "web1-staging")
    assert result.returncode == 0, result.stderr
    staging = next((empty_project.bundles / "web1-staging").glob("1-*[0-9a-f]"))
    html = (staging / "files/site/index.html").read_text()
    assert html == "<h1>hello from web1-staging (staging.example.org)</h1>\n"
    assert not (staging / "units/systemd/backup.timer").exists()
    prod = next((empty_project.bundles / "web1").glob("1-*[0-9a-f]"))
    assert (
        "--web.listen-address=10.8.0.1:9100"
        in (prod / "units/quadlet/node-exporter.container").read_text()
    )
    assert (prod / "units/systemd/backup.timer").exists()
