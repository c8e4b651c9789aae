"""Render config and script templates with Jinja2; undefined variables are errors with file:line."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import jinja2

from builder.base.errors import Problem, StackError
from builder.stack import stackfiles


class TemplateFailure(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _StackLoader(jinja2.BaseLoader):
    """Jinja2 reads templates (and their includes) through the stack tree's one reader."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        path = self.root.joinpath(*jinja2.loaders.split_template_path(template))
        if stackfiles.absent(path):
            raise jinja2.TemplateNotFound(template)
        text = stackfiles.read_text(path, self.root)
        # up to date for the renderer's life (one build): compiled once, not once per service
        return text, str(path), lambda: True


class TemplateRenderer:
    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = jinja2.Environment(
            loader=_StackLoader(templates_dir),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )

    def shown(self, name: str) -> str:
        return f"{self.templates_dir.parent.name}/{self.templates_dir.name}/{name}"

    def render(self, name: str, context: dict[str, Any]) -> bytes:
        try:
            return self.env.get_template(name).render(context).encode()
        except jinja2.TemplateSyntaxError as exc:
            file = self.shown(exc.name or name)
            raise TemplateFailure(
                Problem(f"template syntax error: {exc.message}", file, None, exc.lineno)
            ) from exc
        except jinja2.TemplateNotFound as exc:
            # an {% include %} or {% import %} of a file that is not there
            file, line = self._template_frame(exc, name)
            raise TemplateFailure(
                Problem(f"template {self.shown(str(exc.name))} does not exist", file, None, line)
            ) from exc
        except jinja2.UndefinedError as exc:
            file, line = self._template_frame(exc, name)
            raise TemplateFailure(
                Problem(f"undefined template variable: {exc.message}", file, None, line)
            ) from exc
        except jinja2.TemplateError as exc:
            file, line = self._template_frame(exc, name)
            raise TemplateFailure(Problem(f"template error: {exc}", file, None, line)) from exc
        except stackfiles.UnreadableFile as exc:
            raise TemplateFailure(self._located(exc.problem)) from None
        except StackError as exc:
            # `hosts.NAME` read a stack that does not load: its own problems, and who read it
            file, line = self._template_frame(exc, name)
            reader = Problem(
                "reads a host whose stack has problems (listed with its file)", file, None, line
            )
            raise StackError([*exc.problems, reader]) from exc

    def source(self, name: str) -> bytes:
        """A file copied as it is (any bytes), read only from inside the templates folder."""
        try:
            return stackfiles.read_bytes(self.templates_dir / name, self.templates_dir)
        except stackfiles.UnreadableFile as exc:
            raise TemplateFailure(self._located(exc.problem)) from None

    def _located(self, problem: Problem) -> Problem:
        # the reader names files under the templates folder's own name; add stacks/ in front
        if problem.file is None or problem.file.startswith("/"):
            return problem
        return attrs.evolve(problem, file=f"{self.templates_dir.parent.name}/{problem.file}")

    def _template_frame(self, exc: BaseException, name: str) -> tuple[str, int | None]:
        # jinja2 rewrites tracebacks so template frames carry the template's file and line
        root = str(self.templates_dir.resolve())
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename and str(Path(frame.filename).resolve()).startswith(root):
                rel = Path(frame.filename).resolve().relative_to(root).as_posix()
                return self.shown(rel), frame.lineno
        return self.shown(name), None
