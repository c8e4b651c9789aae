"""builder/images/versions.py: reading tags and comparing a pinned one with a registry's list."""

from __future__ import annotations

import pytest

from builder.images.versions import compare, newest_release, parse_tag

# ---- reading tags ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "prefix", "numbers", "pre", "suffix"),
    [
        ("29.0.1-apache", "", (29, 0, 1), None, "-apache"),
        ("v1.8.2", "v", (1, 8, 2), None, ""),
        ("16.6-alpine", "", (16, 6), None, "-alpine"),
        ("7.4-alpine", "", (7, 4), None, "-alpine"),
        ("2024.10.5", "", (2024, 10, 5), None, ""),
        ("v3.2.3", "v", (3, 2, 3), None, ""),
        ("1.10.0", "", (1, 10, 0), None, ""),
        ("29-apache", "", (29,), None, "-apache"),
        ("16", "", (16,), None, ""),
        ("2.1.0-rc1", "", (2, 1, 0), (4, 1), ""),
        ("2.1.0-rc.2-alpine", "", (2, 1, 0), (4, 2), "-alpine"),
        ("1.0.0rc3", "", (1, 0, 0), (4, 3), ""),
        ("3.0.0-beta", "", (3, 0, 0), (2, 0), ""),
        ("v2.0.0-alpha.4", "v", (2, 0, 0), (1, 4), ""),
        ("1.27.3-alpine3.20", "", (1, 27, 3), None, "-alpine3.20"),
        ("1.0-devel", "", (1, 0), None, "-devel"),  # a variant, not `dev`
        ("11.4.4-ubi9", "", (11, 4, 4), None, "-ubi9"),
    ],
)
def test_parse_tag(
    tag: str, prefix: str, numbers: tuple[int, ...], pre: tuple[int, int] | None, suffix: str
) -> None:
    t = parse_tag(tag)
    assert t is not None
    assert (t.prefix, t.numbers, t.pre, t.suffix) == (prefix, numbers, pre, suffix)


@pytest.mark.parametrize("tag", ["latest", "stable", "bookworm", "sha-1a2b3c", "main", "", "v"])
def test_not_a_version(tag: str) -> None:
    assert parse_tag(tag) is None


def test_numbers_compare_as_numbers_not_text() -> None:
    c = compare("1.9.0", ["1.9.0", "1.10.0", "1.2.0"])
    assert (c.newest_in_major, c.newest) == ("1.10.0", "1.10.0")


# ---- the cases the shipped stacks pin -------------------------------------------------

NEXTCLOUD = [
    "28.0.14-apache",
    "29.0.1-apache",
    "29.0.9-apache",
    "29.0.16-apache",
    "30.0.2-apache",
    "30.0.4-apache",
    "31.0.0-rc1-apache",
    "29.0.16-fpm",
    "30.0.4-fpm-alpine",
    "29.0.16",
    "30.0.4",
    "29-apache",
    "30-apache",
    "29.0-apache",
    "30.0-apache",
    "stable-apache",
    "latest",
    "apache",
]


def test_variant_is_compared_only_with_its_own_variant_and_shape() -> None:
    c = compare("29.0.1-apache", NEXTCLOUD)
    assert c.newest_in_major == "29.0.16-apache"
    assert c.newest == "30.0.4-apache"  # not 30.0.4 (no variant), not 30-apache, not the rc
    assert c.behind_in_major and c.behind
    assert not c.moving and c.note is None


def test_major_only_tag_moves_with_its_major() -> None:
    c = compare("29-apache", NEXTCLOUD)
    assert c.moving
    assert c.newest_in_major == "29.0.16-apache"  # what 29-apache stands for today
    assert c.newest == "30.0.4-apache"
    assert not c.behind_in_major  # a moving tag follows its major by itself
    assert c.behind  # but a newer major exists
    assert c.note is not None and "moving" in c.note


def test_major_only_tag_on_the_newest_major_is_not_behind() -> None:
    c = compare("30-apache", NEXTCLOUD)
    assert (c.newest_in_major, c.newest, c.behind) == ("30.0.4-apache", "30.0.4-apache", False)


def test_major_only_versions_without_longer_tags_compare_among_themselves() -> None:
    c = compare("16", ["14", "15", "16", "17", "latest"])
    assert (c.newest_in_major, c.newest, c.behind_in_major, c.behind) == ("16", "17", False, True)
    assert not c.moving


def test_v_prefix() -> None:
    traefik = ["v3.2.3", "v3.2.5", "v3.3.1", "v2.11.14", "3.3.1", "v3.3.0-rc1", "v3.3", "v3"]
    c = compare("v3.2.3", traefik)
    assert (c.newest_in_major, c.newest) == ("v3.3.1", "v3.3.1")
    assert c.behind_in_major and c.behind


def test_v_prefix_new_major() -> None:
    c = compare("v1.8.2", ["v1.8.2", "v1.9.0", "v2.0.0", "v2.0.1-rc.0", "1.9.0"])
    assert (c.newest_in_major, c.newest) == ("v1.9.0", "v2.0.0")


def test_two_part_versions_with_variant() -> None:
    postgres = ["16.6-alpine", "16.8-alpine", "17.2-alpine", "16-alpine", "16.8", "17.2-bookworm"]
    c = compare("16.6-alpine", postgres)
    assert (c.newest_in_major, c.newest) == ("16.8-alpine", "17.2-alpine")


def test_two_part_tag_is_compared_with_two_part_tags_only() -> None:
    redis = ["7.4-alpine", "7.4.1-alpine", "7.4.2-alpine", "8.0-alpine", "8.0.1-alpine", "7-alpine"]
    c = compare("7.4-alpine", redis)
    assert (c.newest_in_major, c.newest) == ("7.4-alpine", "8.0-alpine")
    assert not c.behind_in_major and c.behind


def test_calendar_versions() -> None:
    authentik = ["2024.10.5", "2024.12.1", "2025.2.1", "2024.10", "2025.2"]
    c = compare("2024.10.5", authentik)
    assert (c.newest_in_major, c.newest) == ("2024.12.1", "2025.2.1")


def test_up_to_date() -> None:
    c = compare("1.10.0", ["1.9.0", "1.10.0", "0.9.9"])
    assert (c.newest_in_major, c.newest, c.behind_in_major, c.behind) == (
        "1.10.0",
        "1.10.0",
        False,
        False,
    )


def test_pinned_tag_missing_from_the_list_still_compares() -> None:
    c = compare("1.2.0", ["1.3.0"])
    assert (c.newest_in_major, c.newest, c.behind) == ("1.3.0", "1.3.0", True)
    assert compare("1.2.0", []).newest == "1.2.0"


# ---- pre-releases ---------------------------------------------------------------------


def test_pre_releases_ignored_for_a_release_pin() -> None:
    c = compare("1.2.0", ["1.2.0", "1.3.0-rc1", "2.0.0-beta.1", "1.2.1-alpha"])
    assert (c.newest_in_major, c.newest, c.behind) == ("1.2.0", "1.2.0", False)


def test_pre_release_pin_sees_pre_releases_and_the_release() -> None:
    tags = ["2.1.0-rc1", "2.1.0-rc2", "2.1.0-beta1", "2.0.1"]
    c = compare("2.1.0-rc1", tags)
    assert (c.newest_in_major, c.newest) == ("2.1.0-rc2", "2.1.0-rc2")
    c = compare("2.1.0-rc1", [*tags, "2.1.0"])
    assert (c.newest_in_major, c.newest) == ("2.1.0", "2.1.0")  # a release beats its rcs
    assert c.behind


def test_pre_release_order() -> None:
    c = compare("1.0.0-alpha.1", ["1.0.0-alpha.2", "1.0.0-beta", "1.0.0-rc.1", "1.0.0-dev"])
    assert c.newest == "1.0.0-rc.1"


# ---- not comparable -------------------------------------------------------------------


def test_pinned_tag_that_is_not_a_version() -> None:
    c = compare("bookworm", ["1.0.0", "bookworm"])
    assert (c.newest_in_major, c.newest, c.behind) == (None, None, False)
    assert c.note is not None and "not a version" in c.note


def test_newest_release_for_a_digest_pin() -> None:
    assert newest_release(["1.0.0", "1.2.0", "2.0.0-rc1", "2.0.0-alpine", "v9.0.0", "latest"]) == (
        "1.2.0"
    )
    assert newest_release(["latest"]) is None
