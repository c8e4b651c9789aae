"""Property: whatever a stack holds, `bundle export --kube` exits 0 or 2, never with a
traceback; a refused stack leaves no folder, and every object of an accepted one validates
strictly against the Kubernetes version k3s ships (the whole class of names, ports, times and
values a stack may hold, not the cases met so far)."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from hypothesis import event, given, settings

from builder.cli import main
from tests.build import stack_strategies
from tests.build.stack_strategies import make_templates
from tests.build.test_hostile_stacks import SETTINGS, STACK, toml_document
from tests.build.test_kube_export import K3S_KUBERNETES, api_rules


def export_outcome(doc: dict[str, Any]) -> str:
    root = Path(tempfile.mkdtemp(prefix="hostile-kube-"))
    try:
        (root / "outside").mkdir()
        make_templates(root / "stacks/templates", root / "outside")
        (root / "stacks/bad.toml").write_bytes(toml_document(doc))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["--stacks", str(root / "stacks"), "export", "bad", "--kube"])
        assert code in (0, 2), err.getvalue()
        assert "Traceback" not in err.getvalue()
        out = root / "export" / "bad"
        if code == 2:
            assert not out.exists()
            return "refused"
        listed = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
        for name in listed:
            obj = yaml.safe_load((out / name).read_text())
            try:
                kubernetes_validate.validate(obj, K3S_KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                stack = toml_document(doc).decode()
                raise AssertionError(f"{name}: {path}: {e.message}\n{stack}") from e
            assert api_rules(obj) == [], f"{name}\n{toml_document(doc).decode()}"
        return "exported"
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(doc=STACK)
def test_hostile_stacks_are_exported_validly_or_refused_cleanly(doc: dict[str, Any]) -> None:
    event(export_outcome(doc))


@settings(SETTINGS, max_examples=120)
@given(doc=stack_strategies.STACK)
def test_well_typed_stacks_export_to_valid_objects(doc: dict[str, Any]) -> None:
    event(export_outcome(doc))
