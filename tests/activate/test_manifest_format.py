"""One manifest type: what the switcher reads back is what was written, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activate.errors import BadInput
from activate.manifest import manifest_from_dict, parse_manifest
from activate.manifest_format import bundle_hash, dump

from .switcherkit import Bundle, U, finish, make_bundle, sha256

WEB = U("[Container]\nImage=web\n", image="web", refs=("files/web/index.html",))


def web_bundle(n: int = 3, parent: int | None = 2) -> Bundle:
    return make_bundle(
        n,
        "/var/lib/bundle",
        {"web.container": WEB},
        {"files/web/index.html": b"hi\n"},
        parent=parent,
    )


def test_a_manifest_written_elsewhere_reads_back_to_the_same_bytes_and_hash() -> None:
    bundle = web_bundle()

    manifest = parse_manifest(bundle.manifest_bytes)

    assert dump(manifest) == bundle.manifest_bytes
    assert manifest.hash == bundle.hash
    assert manifest.sealed().hash == bundle.hash
    assert manifest.folder_name == bundle.folder


def test_generation_parent_and_built_at_do_not_change_the_hash() -> None:
    bundle = web_bundle()
    manifest = parse_manifest(bundle.manifest_bytes)

    renumbered = manifest.stamped(40, 39)

    assert renumbered.sealed().hash == manifest.hash
    assert b'"generation": 40' in dump(renumbered)
    assert parse_manifest(dump(renumbered)).hash == manifest.hash


def with_secrets(secrets: object, rendered: object = None) -> bytes:
    bundle = web_bundle()
    bundle.manifest["secrets"] = secrets
    if rendered is not None:
        bundle.manifest["rendered"] = rendered
    return finish(bundle).manifest_bytes


def test_secret_names_fingerprints_and_completed_files_are_read_as_typed_values() -> None:
    fp = sha256(b"not the value")
    use = {
        "fingerprint": fp,
        "podman_secret": f"db_password-{fp[:12]}",
        "used_by": ["web.container"],
    }
    completed = {"id": "0123456789abcdef", "secrets": ["db_password"]}
    data = with_secrets({"db_password": use}, {"files/web/index.html": completed})

    manifest = parse_manifest(data)

    use = manifest.secrets["db_password"]
    assert (use.fingerprint, use.podman, use.used_by) == (
        fp,
        f"db_password-{fp[:12]}",
        ("web.container",),
    )
    completed = manifest.rendered["files/web/index.html"]
    assert (completed.ident, completed.secrets, completed.mode) == (
        "0123456789abcdef",
        ("db_password",),
        0o644,
    )
    assert dump(manifest) == data


@pytest.mark.parametrize(
    ("secrets", "rendered", "message"),
    [
        ([], None, "secrets: expected an object"),
        ({"Bad Name": {}}, None, "secrets.Bad Name: invalid secret entry"),
        ({"db": {"fingerprint": "ABC"}}, None, "secrets.db.fingerprint: not a lowercase sha256"),
        ({"db": {"podman_secret": "other"}}, None, "secrets.db.podman_secret: expected db-"),
        ({"db": {"used_by": "web"}}, None, "secrets.db.used_by: expected a list of unit keys"),
        ({}, {"files/none": {"id": "0" * 16, "secrets": []}}, "rendered.files/none: not a file"),
        ({}, {"files/web/index.html": {"id": "x", "secrets": []}}, "index.html.id: expected 16"),
        ({}, {"files/web/index.html": {"id": "0" * 16, "secrets": ["db"]}}, "does not list"),
    ],
)
def test_a_malformed_secrets_section_is_refused_naming_its_key(
    secrets: object, rendered: object, message: str
) -> None:
    with pytest.raises(BadInput) as refused:
        parse_manifest(with_secrets(secrets, rendered), "gen/manifest.json")

    assert refused.value.message.startswith("gen/manifest.json: ")
    assert message in refused.value.message
    assert refused.value.message.endswith("rebuild the bundle with a matching builder")


def test_a_unit_whose_service_name_is_not_quadlets_is_refused() -> None:
    bundle = web_bundle()
    bundle.manifest["units"]["web.container"]["service"] = "web-container.service"

    with pytest.raises(BadInput, match=r"units\.web\.container\.service: expected web\.service"):
        manifest_from_dict(bundle.manifest)


# Written by the builder of commit 70faee1, before builder and switcher shared one manifest type:
# generations like these are on servers, and rollback reads them.
BUILT_BEFORE = sorted((Path(__file__).parent / "data").glob("*-70faee1.manifest.json"))


@pytest.mark.parametrize("path", BUILT_BEFORE, ids=lambda p: p.name)
def test_a_manifest_from_the_previous_builder_reads_back_to_its_bytes_and_hash(path: Path) -> None:
    data = path.read_bytes()

    manifest = parse_manifest(data, str(path))

    assert dump(manifest) == data
    assert manifest.sealed().hash == manifest.hash == bundle_hash(json.loads(data))
    assert manifest.generation == 1 and manifest.parent is None


def test_the_previous_builder_wrote_every_optional_part() -> None:
    read = [parse_manifest(p.read_bytes()) for p in BUILT_BEFORE]
    units = [u for m in read for u in m.units.values()]

    assert {c.kind for u in units for c in u.checks} == {"http", "tcp", "command"}
    assert any(c.body for u in units for c in u.checks)
    assert any(u.state and u.state.dump for u in units)
    assert any(u.state and not u.state.dump for u in units)
    assert all(m.secrets and m.deploy for m in read)
    assert any(m.rendered for m in read)
