"""Bad stacks: one clear line per problem (file, line, key), all at once, exit 2, nothing built."""

from __future__ import annotations

import pytest

from tests.build.conftest import Project

GOOD = """\
[host]
name = "web1"
address = "web1.example.org"

[vars]
greeting = "hello"

[volumes.data]
[networks.backend]
[pods.app]
ports = ["127.0.0.1:8080:80"]

[containers.web]
image = "docker.io/library/nginx"
version = "1.27.3"
pod = "app"
volumes = ["data:/usr/share/nginx/html"]
configs = [{ template = "web/index.html.j2", mount = "/usr/share/nginx/html/index.html" }]

[containers.cache]
image = "docker.io/library/redis"
version = "7.4-alpine"
networks = ["backend"]
ports = ["127.0.0.1:6379:6379"]
"""


def good_project(p: Project) -> Project:
    p.write("web1.toml", GOOD)
    p.write("templates/web/index.html.j2", "<h1>{{ vars.greeting }} from {{ host.name }}</h1>\n")
    return p


def assert_refused(p: Project, *expected: str) -> list[str]:
    result = p.run("build", "web1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].endswith("nothing was built or changed")
    for text in expected:
        assert any(text in line for line in lines), f"{text!r} not in:\n{result.stderr}"
    assert not (p.bundles / "web1").exists() or not any((p.bundles / "web1").glob("[0-9]*"))
    check = p.run("check", "web1")
    assert check.returncode == 2
    return lines


def test_good_stack_builds(empty_project: Project) -> None:
    p = good_project(empty_project)
    result = p.run("build", "web1")
    assert result.returncode == 0, result.stderr
    html = next((p.bundles / "web1").glob("1-*[0-9a-f]")) / "files/web/index.html"
    assert html.read_text() == "<h1>hello from web1</h1>\n"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'pod = "app"',
            'pod = "app"\nbogus = 1',
            "stacks/web1.toml:17: containers.web.bogus: unknown key",
        ),
        (
            'version = "1.27.3"',
            "version = 1.27",
            "stacks/web1.toml:15: containers.web.version: must be a string, not float 1.27",
        ),
        ('version = "1.27.3"\n', "", "containers.web.version: no version pinned"),
        (
            'version = "1.27.3"',
            'version = "latest"',
            "containers.web.version: 'latest' moves under you: pin a version with a number in it "
            '(like "1.27.3" or "1.27-alpine"), or a digest',
        ),
        (
            'ports = ["127.0.0.1:6379:6379"]',
            'ports = ["127.0.0.1:8080:6379"]',
            "containers.cache.ports[0]: host port 127.0.0.1:8080/tcp is already published by pods.app",
        ),
        (
            'ports = ["127.0.0.1:6379:6379"]',
            'ports = ["0.0.0.0:8080:6379"]',
            "is already published by pods.app",
        ),
        (
            "[networks.backend]",
            '[networks.backend]\n[containers.app-pod]\nimage = "x"\nversion = "1"',
            "duplicate unit name app-pod.service",
        ),
        (
            'pod = "app"',
            'pod = "nope"',
            "containers.web.pod: pod 'nope' is not defined: add [pods.nope]",
        ),
        (
            'volumes = ["data:',
            'volumes = ["missing:',
            "containers.web.volumes[0]: volume 'missing' is not defined",
        ),
        (
            'networks = ["backend"]',
            'networks = ["front"]',
            "containers.cache.networks[0]: network 'front' is not defined",
        ),
        (
            "web/index.html.j2",
            "web/nothere.j2",
            "template stacks/templates/web/nothere.j2 does not exist",
        ),
        (
            'mount = "/usr',
            'path = "../../etc/passwd", mount = "/usr',
            "escapes the service's folder",
        ),
        ("[containers.cache]", "[containers.Bad_Name]", "invalid unit name 'Bad_Name'"),
        (
            'image = "docker.io/library/nginx"',
            'image = "docker.io/library/nginx:1.27"',
            "put the tag in version",
        ),
        (
            'ports = ["127.0.0.1:6379:6379"]',
            'ports = ["127.0.0.1:99999:6379"]',
            "port 99999 is outside 1-65535",
        ),
        ('ports = ["127.0.0.1:6379:6379"]', 'ports = "6379"', "containers.cache.ports"),
        ('name = "web1"', 'name = "web2"', "host.name: is 'web2' but the file is web1.toml"),
    ],
)
def test_one_problem(empty_project: Project, old: str, new: str, expected: str) -> None:
    p = good_project(empty_project)
    p.edit("web1.toml", old, new)
    lines = assert_refused(p, expected)
    assert lines[-1] == "1 problem; nothing was built or changed"


def test_undefined_template_variable_names_template_line(empty_project: Project) -> None:
    p = good_project(empty_project)
    p.write("templates/web/index.html.j2", "<h1>\n{{ vars.greeting }}\n{{ vars.colour }}\n</h1>\n")
    assert_refused(
        p,
        "stacks/templates/web/index.html.j2:3: undefined template variable: 'dict object' has no attribute 'colour'",
    )


def test_template_syntax_error(empty_project: Project) -> None:
    p = good_project(empty_project)
    p.write("templates/web/index.html.j2", "ok\n{% if %}\n")
    assert_refused(p, "stacks/templates/web/index.html.j2:2: template syntax error")


def test_all_problems_at_once(empty_project: Project) -> None:
    p = good_project(empty_project)
    p.edit("web1.toml", 'version = "1.27.3"', 'version = "latest"')
    p.edit("web1.toml", 'pod = "app"', 'pod = "nope"')
    p.edit("web1.toml", 'networks = ["backend"]', 'networks = ["front"]')
    lines = assert_refused(p, "'latest' moves", "pod 'nope'", "network 'front'")
    assert lines[-1] == "3 problems; nothing was built or changed"


def test_invalid_toml_names_line(empty_project: Project) -> None:
    p = good_project(empty_project)
    p.edit("web1.toml", 'address = "web1.example.org"', "address = web1")
    assert_refused(p, "stacks/web1.toml:3: not valid TOML")


def test_unknown_host(empty_project: Project) -> None:
    p = good_project(empty_project)
    result = p.run("build", "nosuch")
    assert result.returncode == 2
    assert result.stderr == "error: stacks/nosuch.toml: no stack for host 'nosuch' (known: web1)\n"


def test_debug_shows_traceback(empty_project: Project) -> None:
    p = good_project(empty_project)
    p.edit("web1.toml", 'version = "1.27.3"', 'version = "latest"')
    result = p.run("--debug", "build", "web1")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_include_and_variant_problems_name_their_file(empty_project: Project) -> None:
    p = good_project(empty_project)
    p.write(
        "shared/base.toml",
        '[containers.shared]\nimage = "docker.io/library/busybox"\nversion = "latest"\n',
    )
    p.edit("web1.toml", "[host]", 'include = ["shared/base.toml"]\n\n[host]')
    assert_refused(p, "stacks/shared/base.toml:3: containers.shared.version: 'latest' moves")
    p.edit("web1.toml", 'include = ["shared/base.toml"]', 'include = ["shared/none.toml"]')
    assert_refused(p, "included file 'shared/none.toml' does not exist")


def test_variant_overrides_and_reports_in_its_own_file(empty_project: Project) -> None:
    p = good_project(empty_project)
    p.write(
        "web1-staging.toml",
        'extends = "web1"\n\n[host]\nname = "web1-staging"\n\n[vars]\ngreeting = "hi"\n\n[containers.web]\nversion = "latest"\n',
    )
    result = p.run("build", "web1-staging")
    assert result.returncode == 2
    assert "stacks/web1-staging.toml:10: containers.web.version: 'latest' moves" in result.stderr
    p.edit("web1-staging.toml", 'version = "latest"', 'version = "1.27.4"')
    assert p.run("build", "web1-staging").returncode == 0
    gen = next((p.bundles / "web1-staging").glob("1-*[0-9a-f]"))
    assert (gen / "files/web/index.html").read_text() == "<h1>hi from web1-staging</h1>\n"
    assert "nginx:1.27.4" in (gen / "units/quadlet/web.container").read_text()
