"""`bundle import`: a compose file becomes a stack that checks, with a report of what did not translate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.build.conftest import REPO, Project, quadlet_dryrun

DATA = REPO / "tests/build/data"
COMPOSE = DATA / "compose-nextcloud.yml"
SECRETS_ENV = {"BUNDLE_PASSPHRASE": "import test passphrase", "BUNDLE_SECRETS_KDF_LOG2N": "10"}


def test_import_compose_file(empty_project: Project, tmp_path: Path, quadlet_bin: Path) -> None:
    p = empty_project
    result = p.run("import", str(COMPOSE), "--host", "cloud1", env=SECRETS_ENV)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert "wrote " in report and "stacks/cloud1.toml" in report
    for expected in (
        "stored 2 secrets in stacks/secrets/cloud1.enc (db_mysql_password, db_mysql_root_password)",
        "services.app.volumes[1]: relative bind mount './config:/var/www/html/config' not translated",
        "services.cron.image: 'nextcloud:latest' is not pinned; set version to a real tag",
        "services.cron.build: not translated",
        "services.cron.depends_on.db.condition: service_healthy: cron starts once db has started",
    ):
        assert expected in report, report
    text = (p.stacks / "cloud1.toml").read_text()
    assert 'image = "docker.io/library/nextcloud"' in text and 'version = "29.0.1-apache"' in text
    assert 'ports = ["127.0.0.1:8081:80", "8443:443"]' in text
    assert 'depends_on = ["db", "redis"]' in text
    assert "[volumes.nextcloud]" in text and "[networks.front]" in text
    assert 'entrypoint = "/cron.sh"' in text
    # every service joins the project's network, which has DNS: db and redis resolve by name
    assert 'networks = ["front", "data_default"]' in text and "[networks.data_default]" in text
    # the env_file's passwords are in the encrypted file, not in the stack or the report
    assert '{ name = "db_mysql_password", env = "MYSQL_PASSWORD" }' in text
    for value in ("nc-db-pass-7f3a", "root pass 9e1c"):
        assert value not in text and value not in report
    listed = p.run("secrets", "list", "cloud1", env=SECRETS_ENV)
    assert listed.stdout.split()[::2] == ["db_mysql_password", "db_mysql_root_password"]

    # the unpinned image is refused until a version is set; then it builds and podman accepts it
    check = p.run("check", "cloud1", env=SECRETS_ENV)
    assert check.returncode == 2 and "containers.cron.version" in check.stderr
    fixed = text.replace(
        '[containers.cron]\nimage = "docker.io/library/nextcloud"',
        '[containers.cron]\nimage = "docker.io/library/nextcloud"\nversion = "29.0.1-apache"',
    )
    (p.stacks / "cloud1.toml").write_text(fixed)
    built = p.run("build", "cloud1", env=SECRETS_ENV)
    assert built.returncode == 0, built.stderr
    gen = next((p.bundles / "cloud1").glob("1-*[0-9a-f]"))
    units = tmp_path / "units"
    shutil.copytree(gen / "units/quadlet", units)
    dry = quadlet_dryrun(quadlet_bin, units)
    assert dry.returncode == 0, dry.stderr
    assert "--health-cmd" in dry.stdout and "curl -f http://localhost/status.php" in dry.stdout

    again = p.run("import", str(COMPOSE), "--host", "cloud1")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_import_refuses_what_is_not_compose(empty_project: Project, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("services: [1, 2\n")
    result = empty_project.run("import", str(bad), "--host", "x1")
    assert (
        result.returncode == 2
        and result.stderr.startswith(f"error: {bad}:")
        and "not valid YAML" in result.stderr
    )
    bad.write_text("just: text\n")
    result = empty_project.run("import", str(bad), "--host", "x1")
    assert result.returncode == 2 and "no `services:` table" in result.stderr


def test_interpolation_as_docker_compose_does_it(empty_project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / ".env").write_text(
        "# read next to the compose file\nFROM_DOTENV=dotenv\nOVERRIDDEN=from .env\n"
        "QUOTED='single $NOT_EXPANDED'\nDOUBLE=\"a ${FROM_DOTENV} b\" # a comment\nEMPTY=\n"
    )
    (folder / "app.env").write_text("export FROM_FILE=file ${FROM_DOTENV}\nPLAIN=plain # note\n")
    (folder / "compose.yml").write_text(
        """\
services:
  app:
    image: registry.example.org/app:1.0
    env_file: app.env
    environment:
      PLAIN_VAR: $FROM_DOTENV
      BRACED: ${FROM_DOTENV}
      COLON_DEFAULT: ${EMPTY:-was empty}
      DASH_DEFAULT: ${EMPTY-kept empty}
      UNSET_DEFAULT: ${NOWHERE:-fallback:with:colons}
      NESTED: ${NOWHERE:-${FROM_DOTENV}-nested}
      ALT_SET: ${FROM_DOTENV:+alternative}
      ALT_EMPTY: "${EMPTY:+not used}"
      PLUS_EMPTY: ${EMPTY+set but empty}
      REQUIRED: ${FROM_DOTENV:?never shown}
      REQUIRED_DASH: ${EMPTY?never shown}
      ENV_WINS: ${OVERRIDDEN}
      DOLLARS: "cost $$5, $${NOT_A_VAR}"
      QUOTED: $QUOTED
      DOUBLE: $DOUBLE
      MISSING: "[${NOT_SET_ANYWHERE}]"
      FROM_SHELL:
"""
    )
    result = empty_project.run(
        "import", str(folder / "compose.yml"), "--host", "app1",
        env={"OVERRIDDEN": "from the environment", "FROM_SHELL": "shell"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    import tomllib

    env = tomllib.loads((empty_project.stacks / "app1.toml").read_text())["containers"]["app"]
    assert env["environment"] == {
        "FROM_FILE": "file dotenv",
        "PLAIN": "plain",
        "PLAIN_VAR": "dotenv",
        "BRACED": "dotenv",
        "COLON_DEFAULT": "was empty",
        "DASH_DEFAULT": "",
        "UNSET_DEFAULT": "fallback:with:colons",
        "NESTED": "dotenv-nested",
        "ALT_SET": "alternative",
        "ALT_EMPTY": "",
        "PLUS_EMPTY": "set but empty",
        "REQUIRED": "dotenv",
        "REQUIRED_DASH": "",
        "ENV_WINS": "from the environment",
        "DOLLARS": "cost $5, ${NOT_A_VAR}",
        "QUOTED": "single $NOT_EXPANDED",
        "DOUBLE": "a dotenv b",
        "MISSING": "[]",
        "FROM_SHELL": "shell",
    }
    assert (
        "services.app.environment.MISSING: variable NOT_SET_ANYWHERE is not set; an empty string "
        "was used; set it in the environment or in the .env file" in result.stdout
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("${DB_PASSWORD:?set it in .env}", "services.db.environment.PW: required variable "
         "DB_PASSWORD is missing a value: set it in .env"),
        ("${DB_PASSWORD?}", "required variable DB_PASSWORD is missing a value: is not set"),
        ("pa$1word", "a '$' must start a variable ($VAR or ${VAR}); write $$ for a literal $"),
        ("${DB_PASSWORD", "a '${' has no closing '}'"),
        ("${DB_PASSWORD/x/y}", "has an unknown operator"),
    ],
)  # fmt: skip
def test_interpolation_errors_write_nothing(
    empty_project: Project, tmp_path: Path, value: str, message: str
) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(
        f"services:\n  db:\n    image: postgres:16\n    environment:\n      PW: '{value}'\n"
    )
    result = empty_project.run("import", str(compose), "--host", "db1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert not (empty_project.stacks / "db1.toml").exists()


def selfhosted(tmp_path: Path) -> Path:
    folder = tmp_path / "selfhosted"
    folder.mkdir()
    shutil.copy(DATA / "compose-selfhosted.yml", folder / "compose.yml")
    (folder / ".env").write_text("DB_PASSWORD=pg-pass-4d2b\nAPP_SECRET=app-secret-8a1e # cookies\n")
    (folder / "smtp_password.txt").write_text("smtp-pass-33c1")
    return folder / "compose.yml"


def test_what_self_hosted_compose_files_use(
    empty_project: Project, tmp_path: Path, quadlet_bin: Path
) -> None:
    p = empty_project
    result = p.run("import", str(selfhosted(tmp_path)), "--host", "apps1", env=SECRETS_ENV)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert (
        "stored 3 secrets in stacks/secrets/apps1.enc (app_secret_key, db_postgres_password, smtp_password)"
        in report
    )
    for expected in (
        "networks.web.external: the external network is created by this stack as 'proxy'",
        "services.proxy.ports[1]: '8000-8010:8000-8010' not translated",
        "services.proxy.volumes[0]: the docker socket /var/run/docker.sock is not mounted; the "
        "server runs podman",
        "mount /run/podman/podman.sock:/var/run/docker.sock",
        "services.proxy.container_name: the container is named 'proxy', not 'traefik'",
        "services.proxy.logging: not translated",
        "services.db.deploy.resources: not translated",
        "services.db.healthcheck.start_interval: not translated",
        "services.db.ulimits: not translated",
        "services.app.depends_on.migrate.condition: service_completed_successfully not translated",
        "services.app.depends_on.db.condition: service_healthy: app starts once db has started, "
        "not once it is healthy; app must retry its connection; the switch waits for db's health",
        "services.app.configs: not translated",
        "configs.app_config: not translated",
        "services.adminer.profiles: only started with profile tools; imported with enabled = false",
        "services.migrate.build: no image; build the image, push it to a registry",
    ):
        assert expected in report, report
    assert "x-common" not in report and "x-db-env" not in report  # extension fields are for anchors
    text = (p.stacks / "apps1.toml").read_text()
    for value in ("pg-pass-4d2b", "app-secret-8a1e", "smtp-pass-33c1"):
        assert value not in text and value not in report
    import tomllib

    stack = tomllib.loads(text)
    db, app = stack["containers"]["db"], stack["containers"]["app"]
    assert db["health"] == {
        "cmd": "pg_isready -U app", "interval": "10s", "timeout": "5s", "start_period": "20s",
        "retries": 5,
    }  # fmt: skip
    assert db["checks"] == [{"command": "podman healthcheck run db"}]
    assert db["labels"] == {"org.example.stack": "selfhosted"} and db["restart"] == "always"
    # one password shared by two services stays one secret to rotate
    assert {"name": "db_postgres_password", "env": "DB_PASS"} in app["secrets"]
    assert {"name": "smtp_password", "file": "/run/secrets/smtp_password"} in app["secrets"]
    assert app["image"] == "ghcr.io/example/app" and app["version"] == "2.3.1"
    assert app["environment"]["TZ"] == "Europe/Berlin"  # from the service it extends
    assert app["environment"]["PRICE"] == "$5 a month"
    assert app["networks"] == ["selfhosted_default", "proxy"]
    assert "volumes" not in stack["containers"]["proxy"]
    assert stack["containers"]["adminer"]["enabled"] is False

    # once the one service without an image has one, it builds, and podman accepts the units
    p.edit(
        "apps1.toml",
        'image = "REPLACE-ME"',
        'image = "registry.example.org/migrate"\nversion = "1"',
    )
    built = p.run("build", "apps1", env=SECRETS_ENV)
    assert built.returncode == 0, built.stderr
    gen = next((p.bundles / "apps1").glob("1-*[0-9a-f]"))
    units = tmp_path / "units"
    shutil.copytree(gen / "units/quadlet", units)
    dry = quadlet_dryrun(quadlet_bin, units)
    assert dry.returncode == 0, dry.stderr
    assert "--health-timeout 5s" in dry.stdout and "--health-retries 5" in dry.stdout
    assert "--health-start-period 20s" in dry.stdout
    assert "--network selfhosted_default" in dry.stdout


def test_credentials_need_a_passphrase_first(empty_project: Project, tmp_path: Path) -> None:
    result = empty_project.run("import", str(selfhosted(tmp_path)), "--host", "apps1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert (
        "3 values in" in result.stderr
        and "look like credentials and go to bundle secrets" in result.stderr
    )
    assert "$BUNDLE_PASSPHRASE" in result.stderr and "nothing was written" in result.stderr
    assert not (empty_project.stacks / "apps1.toml").exists()
    assert not (empty_project.stacks / "secrets").exists()


def test_what_published_compose_files_write(
    empty_project: Project, tmp_path: Path, quadlet_bin: Path
) -> None:
    """Forms the self-hosted projects' own compose files use, read as docker compose reads them."""
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / ".env").write_text("COMPOSE_PROJECT_NAME=photos\nDB_PASSWORD=db-pass-5e0c\n")
    (folder / "compose.yml").write_text(
        """\
services:
  app:
    image: registry.example.org/app:1.4.2
    ports:
      - ${EXPOSE_PORT-:2283:2283}
      - 22:22
      - target: 53
        published: "5353"
        protocol: udp
        mode: host
      - 127.0.0.1::9090
      - 3868:3868/sctp
    volumes:
      - type: bind
        source: /srv/photos
        target: /photos
        read_only: true
        bind:
          selinux: z
      - type: volume
        source: data
        target: /data
        volume:
          nocopy: true
    restart: no
    environment:
      ENABLE_SIGNUP: yes
      DATABASE_URL: postgres://app:${DB_PASSWORD}@db:5432/app
      REDIS_URL: redis://redis:6379
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD}
  redis:
    image: redis:7.4
    command: redis-server --requirepass redis-pass-0b9d --appendonly yes
    healthcheck:
      test: ["CMD-SHELL", "redis-cli -a $$REDIS_PASSWORD ping"]
  cache:
    image: redis:7.4
    command: ["sh", "-c", "exec redis-server --requirepass \\"$$CACHE_PASSWORD\\""]
volumes:
  data:
"""
    )
    p = empty_project
    result = p.run("import", str(folder / "compose.yml"), "--host", "photos1", env=SECRETS_ENV)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert (
        "stored 3 secrets in stacks/secrets/photos1.enc (app_database_url, db_postgres_password, "
        "redis_requirepass)" in report
    ), report
    for expected in (
        "services.app.ports[3]: '127.0.0.1::9090' publishes a random host port in compose; the "
        "stack publishes it on the same port (9090)",
        "services.app.ports[4]: '3868:3868/sctp': the protocol sctp is not translated",
        "services.app.volumes[1].volume: not translated; the mount has podman's defaults",
        "services.redis.command: the credential after --requirepass is stored as bundle secret "
        "redis_requirepass and is not in the stack",
        "redis is imported with enabled = false; give redis the secret in a way it reads it",
    ):
        assert expected in report, report
    assert "ports[0]" not in report and "ports[2]" not in report and "mode" not in report
    text = (p.stacks / "photos1.toml").read_text()
    for value in ("db-pass-5e0c", "redis-pass-0b9d"):
        assert value not in text and value not in report
    import tomllib

    containers = tomllib.loads(text)["containers"]
    app, redis, cache = containers["app"], containers["redis"], containers["cache"]
    # YAML 1.2, as compose reads it: 22:22 is a port, not 1342; no and yes are words
    assert app["ports"] == ["2283:2283", "22:22", "5353:53/udp", "127.0.0.1:9090:9090"]
    assert app["volumes"] == ["/srv/photos:/photos:ro,z", "data:/data"]
    assert app["restart"] == "no" and app["environment"]["ENABLE_SIGNUP"] == "yes"
    # a URL's password makes the whole URL a secret; a URL without one stays
    assert {"name": "app_database_url", "env": "DATABASE_URL"} in app["secrets"]
    assert app["environment"]["REDIS_URL"] == "redis://redis:6379"
    assert app["networks"] == ["photos_default"]  # COMPOSE_PROJECT_NAME from .env names it
    assert redis["command"] == [
        "redis-server", "--requirepass", "<secret redis_requirepass>", "--appendonly", "yes",
    ]  # fmt: skip
    assert redis["enabled"] is False
    # a variable the container's shell expands is no literal credential
    assert "enabled" not in cache and "$CACHE_PASSWORD" in cache["command"][2]
    assert redis["health"]["cmd"] == "redis-cli -a $REDIS_PASSWORD ping"

    built = p.run("build", "photos1", env=SECRETS_ENV)
    assert built.returncode == 0, built.stderr
    gen = next((p.bundles / "photos1").glob("1-*[0-9a-f]"))
    for value in ("db-pass-5e0c", "redis-pass-0b9d"):
        assert not any(value in f.read_text() for f in gen.rglob("*") if f.is_file())
    units = tmp_path / "units"
    shutil.copytree(gen / "units/quadlet", units)
    dry = quadlet_dryrun(quadlet_bin, units)
    assert dry.returncode == 0, dry.stderr
    for line in ("PublishPort=2283:2283", "PublishPort=22:22", "PublishPort=5353:53/udp"):
        assert line in (units / "app.container").read_text()
    assert "--network photos_default" in dry.stdout
