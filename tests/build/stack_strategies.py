"""Hypothesis strategies for well-typed stacks with hostile values mixed in.

Every key has the type the model wants, so a generated stack gets past the type checks and
reaches the deep ones (ports, cycles, times, lines, templates, volumes, pods, networks,
secrets, backups, scripts). Each value is usually valid and sometimes near-valid or hostile.
The templates folder the stacks refer to is made by `make_templates`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

NAMES = ["web", "db", "cache", "x-1"]
BAD_NAMES = ["Web", "a.b", "-x", "x" * 64, "web\n", "٣"]
# what every kind of value can go wrong with, whatever the field
HOSTILE = ["", " ", "a\nb", "x\rEnv=1", "\x1b[31m", "\x00", "\x7f", "%h $HOME", '"q"', "\\"]
HOSTILE += ["x" * 140_000, "é", "\u202e", "\ufeff", "١٢", "²"]


def mostly(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    """A good value about four times in five, else a bad one (of the same type)."""
    worse = HOSTILE if isinstance(good[0], str) else []
    return st.one_of(*[st.sampled_from(good)] * 4, st.sampled_from(bad + worse))


def text(good: list[str]) -> st.SearchStrategy[str]:
    return mostly(good, [])


NAME = mostly(NAMES, BAD_NAMES)
PORT = mostly(
    ["8080:80", "127.0.0.1:8081:81", "9000:9000/udp", "[::1]:8082:82", "8083"],
    ["65536:80", "0:80", "80:0", "80:80/sctp", "999.1.1.1:80:80", "８０:80", "80:٨٠",
     "[::1:80:80", "8080:80\n", " 8080:80", "1.2.3:80:80", "8080:80:90", "-1:80"],
)  # fmt: skip
DURATION = mostly(
    ["30s", "1m30s", "2h", "1s", "10s"],
    ["0", "0s", "999ms", "1 d", "1d", "1S", "-1s", "+1s", ".5s", "1.s", "1µs", "٣s", "1e3s",
     "9223372036854775807ns", "2562048h", "1s ", "disable", "DISABLE"],
)  # fmt: skip
SPAN = mostly(
    ["90s", "5min", "1h 30min", "2d", "2h"],
    ["5 parsecs", "1.5.5s", "-1s", "infinity", "infinityx", "٣s", "99999999999999999999y", "."],
)
CALENDAR = mostly(
    ["daily", "Mon..Fri 06:00", "*-*-* 03:30:00", "weekly", "Sun 23:59 UTC"],
    ["every tuesday", "Fri..Mon", "*-*-* 24:00", "2020-02-30", "٣:00", "Mon,", "@x",
     "*-*-* 3:00 Mars/Base", "*-*-* 00:00/0", "Mon..Fri 06:00\n"],
)  # fmt: skip
VOLUME = mostly(
    ["data:/data", "/srv/x:/x:ro", "data:/var/lib/data:Z"],
    ["../x:/x", "data:../x", "data:/../x", "/srv/../etc:/x", "undefined:/x", "data", ":/x",
     "data:/x:ro:z", "data:/x\n"],
)  # fmt: skip
TEMPLATE = mostly(
    ["site.conf", "inner.conf", "vars.conf.j2", "sub/deep.conf"],
    ["link.conf", "loop.conf", "sub", "missing.conf", "../bad.toml", "/etc/passwd", "sub\\x",
     "broken.j2", "undefined.j2", "./site.conf", "sub/../site.conf"],
)  # fmt: skip
ABS_PATH = mostly(["/etc/x", "/etc/y.conf", "/run/s"], ["etc/x", "/etc/../x", "/", "//x"])
VERSION = mostly(["1.27.3", "16-alpine", "v2"], ["latest", "alpine", "1.27.3\n", ".1", "x" * 129])
ENV_KEY = mostly(["A", "B_1", "PATH"], ["1A", "A-B", "A B", "Ä"])
ENV = st.dictionaries(ENV_KEY, text(["1", "on", "a b", "$HOME"]), max_size=3)


def opt(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


HEALTH = st.fixed_dictionaries(
    {"cmd": text(["true", "wget -q -O- http://127.0.0.1/"])},
    optional={
        "interval": DURATION,
        "timeout": DURATION,
        "start_period": DURATION,
        "retries": mostly([1, 3], [0, -1, 2**40]),
    },
)
CHECK = st.one_of(
    opt(http=text(["http://127.0.0.1:8080/", "https://x.test/h"]), status=mostly([200], [99, 600])),
    opt(tcp=text(["127.0.0.1:5432", "[::1]:80", "db:6379"]), timeout=mostly([5], [0, 301])),
    opt(command=text(["true", "pg_isready"]), body=text(["ok"])),
)
CONFIG = st.fixed_dictionaries(
    {"mount": ABS_PATH},
    optional={
        "template": TEMPLATE,
        "source": TEMPLATE,
        "path": text(["a.conf", "sub/b.conf"]) | st.sampled_from(["../x", "/abs", "a/../../x"]),
        "mode": mostly(["0644", "600"], ["0999", "rw", "0644\n", "٠٦٤٤"]),
    },
)
SECRET = st.fixed_dictionaries(
    {"name": NAME},
    optional={"env": ENV_KEY, "file": ABS_PATH},
)
CONTAINER = st.fixed_dictionaries(
    {"image": mostly(["docker.io/library/nginx", "registry.test:5000/bundle/web"],
                     ["nginx:1.2", "a b", "x@sha256:0"]),
     "version": VERSION},
    optional={
        "enabled": st.booleans(),
        "description": text(["web server"]),
        "command": st.lists(text(["sh", "-c", "echo $x"]), max_size=3),
        "ports": st.lists(PORT, max_size=3),
        "volumes": st.lists(VOLUME, max_size=2),
        "depends_on": st.lists(NAME, max_size=3),
        "pod": NAME,
        "networks": st.lists(mostly(["front", "host"], ["none", "undefined"]), max_size=2),
        "environment": ENV,
        "labels": st.dictionaries(text(["a.b", "role"]), text(["x"]), max_size=2),
        "secrets": st.lists(SECRET, max_size=2),
        "configs": st.lists(CONFIG, max_size=2),
        "health": HEALTH,
        "checks": st.lists(CHECK, max_size=2),
        "restart": mostly(["always", "on-failure"], ["sometimes", "Always"]),
        "stateful": st.booleans(),
        "dump": text(["pg_dump"]),
        "restore": text(["psql"]),
        "metrics": st.fixed_dictionaries({"port": mostly([9100], [0, 70000])}),
    },
)  # fmt: skip
SCRIPT = st.fixed_dictionaries(
    {},
    optional={
        "run": text(["echo hi", "exit 0"]),
        "template": TEMPLATE,
        "source": TEMPLATE,
        "on_calendar": CALENDAR,
        "randomized_delay": SPAN,
        "timeout": SPAN,
        "environment": ENV,
        "on_activation": st.booleans(),
        "stop": text(["echo bye"]),
        "description": text(["nightly"]),
    },
)
BACKUP = st.fixed_dictionaries(
    {
        "tool": mostly(["restic", "kopia"], ["borg"]),
        "repository": mostly(["/srv/backup", "s3:https://s3.test/bucket", "sftp:b@x:/r"],
                             ["s3:nope", "relative"]),
        "password_secret": NAME,
    },
    optional={
        "on_calendar": CALENDAR,
        "timeout": SPAN,
        "randomized_delay": SPAN,
        "s3_access_key_secret": NAME,
        "s3_secret_key_secret": NAME,
        "keep": opt(daily=mostly([7], [-1]), last=mostly([3], [2**63 - 1])),
        "healthcheck_url": text(["https://hc.test/x"]),
    },
)  # fmt: skip
STACK = st.fixed_dictionaries(
    {"host": st.just({"name": "bad", "address": "bad.example.org"})},
    optional={
        "containers": st.dictionaries(NAME, CONTAINER, min_size=1, max_size=3),
        "pods": st.dictionaries(NAME, opt(ports=st.lists(PORT, max_size=2)), max_size=2),
        "networks": st.dictionaries(
            mostly(["front"], ["host"]), opt(subnet=text(["10.89.0.0/24"])), max_size=1
        ),
        "volumes": st.dictionaries(mostly(["data"], ["web"]), st.just({}), max_size=2),
        "scripts": st.dictionaries(NAME, SCRIPT, max_size=2),
        "vars": st.fixed_dictionaries({"x": text(["1", "{{ x }}"])}),
        "backup": st.one_of(st.none(), st.none(), st.none(), BACKUP),
    },
).map(lambda doc: {k: v for k, v in doc.items() if v is not None})


def make_templates(templates: Path, outside: Path) -> None:
    """The files the stacks refer to, with symlinks inside, outside and round in a loop."""
    (templates / "sub").mkdir(parents=True)
    (templates / "site.conf").write_text("server {}\n")
    (templates / "sub/deep.conf").write_text("deep\n")
    (templates / "vars.conf.j2").write_text("x={{ vars.x }}\n")
    (templates / "broken.j2").write_text("{% if %}\n")
    (templates / "undefined.j2").write_text("{{ nowhere }}\n")
    (outside / "secret.txt").write_text("outside\n")
    os.symlink("site.conf", templates / "inner.conf")
    os.symlink(outside / "secret.txt", templates / "link.conf")
    os.symlink("loop.conf", templates / "loop.conf")
