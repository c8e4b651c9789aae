"""Files of the stack tree that must not be read: symlinks out of it, folders, non-UTF-8 text."""

from __future__ import annotations

from pathlib import Path

from tests.build.conftest import Project, small_stack

STACK = small_stack(
    "bad", 'configs = [{ KIND = "site.conf", mount = "/etc/nginx/conf.d/site.conf" }]'
)


def refused(project: Project, *lines: str) -> None:
    for command in ("check", "build"):
        result = project.run(command, "bad")
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines()[:-1] == [f"error: {line}" for line in lines]
    assert not (project.bundles / "bad").exists() or not any(
        p.name[0].isdigit() for p in (project.bundles / "bad").iterdir()
    )


def test_a_template_symlinked_out_of_the_tree_is_not_copied(
    empty_project: Project, tmp_path: Path
) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (empty_project.stacks / "templates/site.conf").symlink_to(private)
    for kind in ("source", "template"):
        empty_project.write("bad.toml", STACK.replace("KIND", kind))
        refused(
            empty_project,
            f"stacks/bad.toml:8: containers.web.configs[0].{kind}: template "
            f"stacks/templates/site.conf is a symlink to {private}, outside templates/: "
            "copy the file in instead",
        )


def test_a_symlink_inside_the_templates_folder_is_followed(empty_project: Project) -> None:
    (empty_project.stacks / "templates/real.conf").write_text("server {}\n")
    (empty_project.stacks / "templates/site.conf").symlink_to("real.conf")
    empty_project.write("bad.toml", STACK.replace("KIND", "source"))
    result = empty_project.run("build", "bad", "--json")
    assert result.returncode == 0, result.stderr


def test_a_jinja_include_out_of_the_tree_is_refused(empty_project: Project, tmp_path: Path) -> None:
    (tmp_path / "outside.j2").write_text("secret\n")
    (empty_project.stacks / "templates/part.j2").symlink_to(tmp_path / "outside.j2")
    (empty_project.stacks / "templates/site.conf").write_text('{% include "part.j2" %}\n')
    empty_project.write("bad.toml", STACK.replace("KIND", "template"))
    refused(
        empty_project,
        f"stacks/templates/part.j2: is a symlink to {tmp_path / 'outside.j2'}, outside "
        "templates/: copy the file in instead",
    )


def test_a_stack_symlinked_out_of_the_tree_is_refused(
    empty_project: Project, tmp_path: Path
) -> None:
    (tmp_path / "elsewhere.toml").write_text(STACK.replace("KIND", "source"))
    (empty_project.stacks / "bad.toml").symlink_to(tmp_path / "elsewhere.toml")
    refused(
        empty_project,
        f"stacks/bad.toml: is a symlink to {tmp_path / 'elsewhere.toml'}, outside stacks/: "
        "copy the file in instead",
    )


def test_a_folder_in_place_of_a_stack_names_the_problem(empty_project: Project) -> None:
    (empty_project.stacks / "bad.toml").mkdir()
    refused(empty_project, "stacks/bad.toml: is a folder, not a file: give the path of a file")


def test_a_template_that_is_not_utf8_names_its_line(empty_project: Project) -> None:
    (empty_project.stacks / "templates/site.conf").write_bytes(b"ok\nna\xefve\n")
    empty_project.write("bad.toml", STACK.replace("KIND", "template"))
    refused(
        empty_project,
        "stacks/templates/site.conf:2: byte 0xef is not UTF-8 text: save the file as UTF-8",
    )
