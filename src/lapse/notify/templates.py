"""Rendering notices from Jinja2 templates: subject, plain text and HTML for one template name.

Each notice template is three files, `<name>.subject.txt.j2`, `<name>.txt.j2`, `<name>.html.j2`,
looked up first among the templates the policy carries (its `templates:` section), then in the
deployment's override directory, then among the templates shipped in `lapse/notify/templates/`.
Overriding `_layout.html.j2` or `_layout.txt.j2` rebrands every notice at once. HTML is
autoescaped (the reason of a case can come from an event), text is not. Variables are strict: a
misspelt name fails the render instead of leaving a hole in an email to a customer. Templates
run in Jinja's sandbox because override directories are edited by operators, not developers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from lapse.core.model import Account, NoticeEffect
from lapse.errors import ConfigError
from lapse.notify.context import notice_context
from lapse.policy.durations import add
from lapse.policy.model import Policy

#: (part, file suffix) of the three files that make one notice template
PARTS: tuple[tuple[str, str], ...] = (
    ("subject", ".subject.txt.j2"),
    ("text", ".txt.j2"),
    ("html", ".html.j2"),
)

#: the notice templates shipped with lapse: every name the preset policies use
SHIPPED_TEMPLATES: tuple[str, ...] = (
    "inactivity-grace-started",
    "inactivity-final-warning",
    "expiry-grace-started",
    "expiry-locked",
    "expiry-final-warning",
    "lock-started",
    "lock-retention-warning",
    "trial-expired",
    "trial-retention-warning",
)

#: deployment-wide links and contacts the templates may show; None hides the sentence
LINKS: tuple[str, ...] = ("login_url", "billing_url", "support_contact", "sales_contact")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_BLANK_RUNS = re.compile(r"\n{3,}")


class NoticeTemplateError(ConfigError):
    """A notice template is missing, malformed, or uses a name the context does not have."""

    code = "invalid-template"


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedNotice:
    """A notice ready to send: one-line subject, plain text and HTML bodies."""

    subject: str
    text: str
    html: str


def join_words(items: Iterable[object]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    words = [str(item) for item in items]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def sentence(text: object) -> str:
    """The text with its first letter upper-cased (unlike `capitalize`, keeps 'API' intact)."""
    value = str(text)
    return value[:1].upper() + value[1:]


def policy_templates(policy: Policy) -> list[str]:
    """Every template name the policy's notices use, sorted."""
    return sorted(
        {
            rule.template
            for flow in policy.flows.values()
            for phase in flow.phases
            for rule in phase.notices
        }
    )


class TemplateRenderer:
    """Renders notice templates: the policy's own, the override directory, the shipped ones."""

    def __init__(
        self,
        override_dir: Path | None = None,
        product: str = "lapse",
        *,
        links: Mapping[str, str | None] | None = None,
    ) -> None:
        loaders: list[BaseLoader] = []
        if override_dir is not None:
            if not Path(override_dir).is_dir():
                raise ConfigError(f"template directory {str(override_dir)!r} does not exist")
            loaders.append(FileSystemLoader(str(override_dir)))
        loaders.append(PackageLoader("lapse.notify", "templates"))
        unknown = sorted(set(links or {}) - set(LINKS))
        if unknown:
            raise ConfigError(
                f"unknown template link(s) {', '.join(unknown)}; expected {', '.join(LINKS)}"
            )
        self.override_dir = override_dir
        self.product = product
        self.links = dict(links or {})
        self._loaders = loaders
        self.env = self._make_env(ChoiceLoader(loaders))
        # environments with a policy's own templates in front, by policy digest
        self._policy_envs: dict[str, SandboxedEnvironment] = {}

    def _make_env(self, loader: BaseLoader) -> SandboxedEnvironment:
        env = SandboxedEnvironment(
            loader=loader,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["join_words"] = join_words
        env.filters["sentence"] = sentence
        env.globals.update(dict.fromkeys(LINKS))
        env.globals.update(self.links)
        env.globals["product"] = self.product
        return env

    def _env_for(self, policy: Policy | None) -> SandboxedEnvironment:
        """The environment for `policy`: its own templates first, if it carries any."""
        if policy is None or not policy.templates:
            return self.env
        env = self._policy_envs.get(policy.digest)
        if env is None:
            files = {
                name + suffix: getattr(template, part)
                for name, template in policy.templates.items()
                for part, suffix in PARTS
            }
            env = self._make_env(ChoiceLoader([DictLoader(files), *self._loaders]))
            self._policy_envs[policy.digest] = env
        return env

    def render(
        self, template: str, context: Mapping[str, object], policy: Policy | None = None
    ) -> RenderedNotice:
        """Subject, text and HTML of `template` filled with `context` (the policy's own
        templates first, when it carries any)."""
        _check_name(template)
        values = dict(context)
        env = self._env_for(policy)
        parts = {
            part: self._render(env, template + suffix, values, policy) for part, suffix in PARTS
        }
        subject = " ".join(parts["subject"].split())
        if not subject:
            raise NoticeTemplateError(f"{template}.subject.txt.j2 rendered an empty subject")
        text = "\n".join(line.rstrip() for line in parts["text"].strip().splitlines())
        return RenderedNotice(
            subject=subject,
            text=_BLANK_RUNS.sub("\n\n", text) + "\n",
            html=parts["html"],
        )

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names (sorted, once each) for which a subject, text or HTML file is missing."""
        out = set()
        for name in names:
            if not _NAME.match(name):
                out.add(name)
                continue
            if not all(self._exists(self.env, name + suffix) for _, suffix in PARTS):
                out.add(name)
        return sorted(out)

    def problems(self, policy: Policy, *, now: datetime | None = None) -> list[str]:
        """Render every template the policy uses with a sample notice; one line per problem.

        Run at start-up so a broken override fails before the first real notice is due.
        """
        now = now or datetime.now(UTC)
        out: list[str] = []
        broken: set[str] = set()
        env = self._env_for(policy)
        for name in policy_templates(policy):
            for _, suffix in PARTS:
                if not _NAME.match(name) or not self._exists(env, name + suffix):
                    out.append(f"template {name!r}: no {name}{suffix} in {self._where(policy)}")
                    broken.add(name)
        for flow in policy.flows.values():
            for phase in flow.phases:
                for rule in phase.notices:
                    if rule.template in broken:
                        continue
                    deadline = add(now, phase.lasts, policy.timezone) if phase.lasts else None
                    effect = NoticeEffect(
                        account_id="sample-account",
                        case_id=f"{flow.name}#1",
                        flow=flow.name,
                        phase=phase.name,
                        key=rule.key,
                        template=rule.template,
                        to=rule.to,
                        recipients=("admin@example.com",),
                        via=rule.via,
                        due_at=now,
                        at=now,
                        deadline=deadline,
                        reason=flow.reason,
                    )
                    account = Account(
                        id="sample-account",
                        kind=next(iter(sorted(flow.applies_to or policy.kinds)), "standard"),
                        created_at=now,
                        address="owner@example.com",
                    )
                    context = notice_context(
                        effect,
                        account=account,
                        policy=policy,
                        now=now,
                        recipient="admin@example.com",
                        product=self.product,
                    )
                    try:
                        self.render(rule.template, context, policy)
                    except NoticeTemplateError as exc:
                        out.append(f"{flow.name}.{phase.name} notice {rule.key!r}: {exc}")
        return out

    def _render(
        self, env: SandboxedEnvironment, file: str, values: dict[str, object], policy: Policy | None
    ) -> str:
        try:
            return env.get_template(file).render(values)
        except TemplateNotFound as exc:
            raise NoticeTemplateError(
                f"no template file {exc.name!r} (looked in {self._where(policy)})"
            ) from exc
        except TemplateSyntaxError as exc:
            raise NoticeTemplateError(
                f"{exc.filename or exc.name or file}:{exc.lineno}: {exc.message}"
            ) from exc
        except TemplateError as exc:
            raise NoticeTemplateError(f"{_where_in(exc.__traceback__, file)}: {exc}") from exc

    @staticmethod
    def _exists(env: SandboxedEnvironment, file: str) -> bool:
        try:
            env.loader.get_source(env, file)  # type: ignore[union-attr]
        except TemplateNotFound:
            return False
        return True

    def _where(self, policy: Policy | None = None) -> str:
        places = []
        if policy is not None and policy.templates:
            places.append(f"the templates of policy {policy.name}")
        if self.override_dir is not None:
            places.append(str(self.override_dir))
        places.append("the templates shipped with lapse")
        return join_words(places)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise NoticeTemplateError(
            f"invalid template name {name!r}: use letters, digits, '.', '_' and '-'"
        )


def _where_in(tb: TracebackType | None, default: str) -> str:
    """'<file>:<line>' of the innermost template frame (Jinja points tracebacks there)."""
    found = default
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = f"{Path(filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found
