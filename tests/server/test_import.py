"""`bundle import` on a real server: a compose file whose web service fetches its page from a
second service by name is imported, switched, and the page answers with that service's data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.harness import Target
from tests.server.conftest import make_deploy_project

TOKEN = "tok-71c9e2-ONLY-IN-SECRETS"

COMPOSE = """\
services:
  web:
    image: registry.test:5000/bundle/web:${WEB_VERSION:-1.0.0}
    ports: ["0.0.0.0:8080:8080"]
    depends_on:
      api:
        condition: service_healthy
    command:
      - sh
      - -c
      - while :; do wget -q -O /www/index.html http://${API_HOST}:8080/; sleep 1; done &
        exec httpd -f -p 8080 -h /www

  api:
    image: registry.test:5000/bundle/web:1.0.0
    environment:
      API_TOKEN: "TOKEN"
      GREETING: ${GREETING}
    command: ["sh", "-c", "echo \\"$${GREETING} from api, token $$API_TOKEN\\" > /www/index.html; exec httpd -f -p 8080 -h /www"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"]
      interval: 2s
      timeout: 3s
      retries: 10
""".replace('"TOKEN"', f'"{TOKEN}"')


def test_imported_services_reach_each_other_by_name(
    tmp_path: Path, target: Target, registry: Any
) -> None:
    p = make_deploy_project(tmp_path, target)
    p.env.update({"BUNDLE_PASSPHRASE": "import on a server", "BUNDLE_SECRETS_KDF_LOG2N": "10"})
    (p.stacks / "web1.toml").unlink()
    folder = tmp_path / "compose"
    folder.mkdir()
    (folder / "compose.yml").write_text(COMPOSE)
    (folder / ".env").write_text("API_HOST=api\nGREETING=data\n")

    imported = p.ok("import", str(folder / "compose.yml"), "--host", "web1")
    assert "stored 1 secret in stacks/secrets/web1.enc (api_api_token)" in imported.stdout
    assert TOKEN not in imported.stdout and TOKEN not in (p.stacks / "web1.toml").read_text()
    p.edit("web1.toml", 'address = "web1.example.org"', 'address = "web1-test"')
    p.ok("switch", "web1")

    page = ""
    for _ in range(60):  # the web container fetches from api every second
        page = p.fetch(8080)
        if "from api" in page:
            break
        time.sleep(1)
    assert page == f"data from api, token {TOKEN}\n"
    # the stack's network is podman's own, with DNS: not the default network, which has none
    nets = target.ssh(
        "podman inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' web"
    )
    assert nets.stdout.strip() == "compose_default"
