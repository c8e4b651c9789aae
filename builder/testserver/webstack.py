"""The web stack of the test servers: two busybox web servers from the test registry, one of
them with a data volume and a page rendered from a template. `bundle demo` deploys it, and so do
the tests that deploy to a real server (tests/server, tests/safety, tests/faults).
"""

from __future__ import annotations

from pathlib import Path

PAGE_TEMPLATE = "web/index.html.j2"  # under stacks/templates/
PAGE = "{{ vars.message }} from {{ host.name }}\n"
DEMO_PAGE = "{{ vars.message }} ({{ host.name }})\n"


def web_stack(
    name: str = "web1",
    address: str = "web1-test",
    *,
    message: str = "first",
    host: str = "",
    volume: bool = True,
    more_configs: str = "",
    other: str = "other",
    other_port: int = 8081,
    other_lines: str = "",
    header: str = "",
) -> str:
    """The stack file of host `name`: `web` serves the page on 8080, `other` (or the name given)
    answers on `other_port`. `host` and `other_lines` are more lines (each ending in a newline)
    for [host] and for the other container, `more_configs` more entries (each starting with
    ", ") for web's configs, `header` comment lines on top."""
    data = 'volumes = ["web-data:/data"]\n' if volume else ""
    return (
        f'{header}[host]\nname = "{name}"\naddress = "{address}"\n{host}\n'
        f'[vars]\nmessage = "{message}"\n\n'
        + ("[volumes.web-data]\n\n" if volume else "")
        + '[containers.web]\nimage = "registry.test:5000/bundle/web"\nversion = "1.0.0"\n'
        f'ports = ["0.0.0.0:8080:8080"]\n{data}'
        f'configs = [{{ template = "{PAGE_TEMPLATE}", mount = "/www/index.html" }}{more_configs}]\n\n'
        f'[containers.{other}]\nimage = "registry.test:5000/bundle/web"\nversion = "1.0.0"\n'
        f'ports = ["0.0.0.0:{other_port}:8080"]\n{other_lines}'
    )


def write_stack(stacks: Path, name: str, text: str, page: str = PAGE) -> None:
    """Stack file `stacks/NAME.toml` and the page template it renders."""
    (stacks / "templates" / PAGE_TEMPLATE).parent.mkdir(parents=True, exist_ok=True)
    (stacks / f"{name}.toml").write_text(text)
    (stacks / "templates" / PAGE_TEMPLATE).write_text(page)
