"""TemplateRenderer and the shipped templates: every preset notice renders, faithfully."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
from notify_scenarios import ADMIN, PRESET_NOTICES, Scenario, run_until

from lapse.errors import ConfigError
from lapse.notify.context import notice_context
from lapse.notify.templates import (
    SHIPPED_TEMPLATES,
    NoticeTemplateError,
    RenderedNotice,
    TemplateRenderer,
    join_words,
    policy_templates,
    sentence,
)
from lapse.policy import Policy, load_policy, load_preset, preset_names

#: the notices sent "N before end": when late, they say the date allows for the delay
BEFORE_END = {
    "inactivity-final-warning",
    "expiry-final-warning",
    "lock-retention-warning",
    "trial-retention-warning",
}


def context(s: Scenario, **extra: object) -> dict[str, object]:
    ctx = notice_context(
        s.effect, account=s.account, policy=s.policy, now=s.now, recipient=ADMIN, product="Acme"
    )
    ctx.update(extra)
    return ctx


def render(
    s: Scenario, renderer: TemplateRenderer | None = None, **extra: object
) -> RenderedNotice:
    return (renderer or TemplateRenderer(product="Acme")).render(
        s.effect.template, context(s, **extra)
    )


def visible(rendered: RenderedNotice) -> str:
    """The HTML part as a reader sees it: tags stripped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rendered.html)).split())


def flat(text: str) -> str:
    return " ".join(text.split())


def test_every_template_the_presets_use_is_shipped() -> None:
    used = {name for preset in preset_names() for name in policy_templates(load_preset(preset))}
    assert used == set(SHIPPED_TEMPLATES)
    assert TemplateRenderer().missing(used) == []


@pytest.mark.parametrize("preset", ["inactivity-cleanup", "staged-expiry", "account-locks"])
def test_presets_have_no_template_problems(preset: str) -> None:
    assert TemplateRenderer().problems(load_preset(preset)) == []


@pytest.mark.parametrize("late", [timedelta(0), timedelta(days=20)], ids=["on-time", "late"])
@pytest.mark.parametrize(("flow", "template"), PRESET_NOTICES)
def test_every_preset_notice_states_reason_deadline_and_time_left(
    flow: str, template: str, late: timedelta
) -> None:
    s = run_until(flow, template, late=late)
    ctx = context(s)
    rendered = render(s)
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert "Acme" in rendered.subject
    for part in (flat(rendered.text), visible(rendered)):
        assert s.effect.reason in part or s.effect.reason.capitalize() in part
        assert f"{ctx['deadline_date']}" in part
        time_left = str(ctx["time_left"])
        assert f"{time_left} left" in part or f"in {time_left}" in part.lower()
        assert "None" not in part
        assert "Acme" in part
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert "{{" not in rendered.text
    assert "{%" not in rendered.text
    assert "\n\n\n" not in rendered.text
    assert rendered.text.endswith("\n")
    says_late = "later than planned" in rendered.text
    assert says_late == (bool(late) and template in BEFORE_END)
    assert ("later than planned" in rendered.html) == says_late


def test_inactivity_notices_follow_the_seed() -> None:
    for template in ("inactivity-grace-started", "inactivity-final-warning"):
        s = run_until("inactivity", template)
        for part in (flat(render(s).text), visible(render(s))):
            assert "permanently deleted" in part
            assert "log on" in part.lower()
            assert "contact our sales team, or take out a subscription" in part
            assert "export" in part
            assert "register a new account with your current email address" in part
            assert "cannot be restored" in part
            assert "sending campaigns" in part.lower()
    grace = flat(render(run_until("inactivity", "inactivity-grace-started")).text)
    assert "If you still need data, export it before 14 February 2026" in grace
    assert "you do not need to do anything" in grace


def test_sales_contact_comes_from_the_deployment_links() -> None:
    s = run_until("inactivity", "inactivity-grace-started")
    renderer = TemplateRenderer(product="Flexmail", links={"sales_contact": "sales@flexmail.be"})
    rendered = render(s, renderer)
    assert "contact sales@flexmail.be, or take out a subscription" in flat(rendered.text)
    assert '<a href="mailto:sales@flexmail.be">sales@flexmail.be</a>' in rendered.html


def test_expiry_notices_follow_the_seed() -> None:
    grace = render(run_until("expiry", "expiry-grace-started"))
    text = flat(grace.text)
    assert 'click the green "Renew your subscription" button' in text
    assert "sending mail is disabled" in text
    assert "IMAP connections are disabled" in text
    assert "read the mail in your inbox" in text
    assert "From 24 August 2025 on, the account may be permanently deleted" in text
    assert "cannot be used again" in text
    assert "new account with a new address" in text
    assert "Renew your subscription" in visible(grace)

    locked = flat(render(run_until("expiry", "expiry-locked")).text)
    assert "Inbox access is disabled" in locked
    assert "you can log in and renew, but no other account actions are possible" in locked
    assert "Renew your subscription" in locked

    final = flat(render(run_until("expiry", "expiry-final-warning")).text)
    assert "eligible for permanent deletion" in final
    assert "In 14 days, on 24 August 2025" in final


RESOLUTIONS = {
    "payment-lock": "Update your payment method or retry the payment in your billing settings.",
    "contact-limit-lock": "remove inactive contacts to get back within your current plan's limit",
    "bounce-rate-lock": "remove invalid email addresses",
}


@pytest.mark.parametrize("flow", sorted(RESOLUTIONS))
def test_lock_notices_name_the_reason_and_how_to_resolve_it(flow: str) -> None:
    for template in ("lock-started", "lock-retention-warning"):
        s = run_until(flow, template)
        rendered = render(s)
        for part in (flat(rendered.text), visible(rendered)):
            assert f"locked: {s.effect.reason}" in part
            assert RESOLUTIONS[flow] in part
            for other, advice in RESOLUTIONS.items():
                if other != flow:
                    assert advice not in part
            assert "campaign timelines, reports and contact actions may be lost" in part
    started = flat(render(run_until(flow, "lock-started")).text)
    assert "read-only" in started
    assert "export your data" in started
    assert "send emails" in started
    assert "Emails already in the sending queue".lower() in started.lower()
    assert "Your data is fully preserved until 24 August 2025" in started
    warning = flat(render(run_until(flow, "lock-retention-warning")).text)
    assert "Exports are disabled while the account is locked" in warning


def test_lock_notice_for_an_unknown_lock_gives_generic_advice() -> None:
    s = run_until("payment-lock", "lock-started")
    rendered = render(s, flow="custom-lock")
    assert "the lock is lifted as soon as it is resolved" in rendered.text
    assert RESOLUTIONS["payment-lock"] not in rendered.text


def test_trial_notices_follow_the_seed() -> None:
    expired = flat(render(run_until("trial-expiry", "trial-expired")).text)
    assert expired.startswith("Hello, Your free trial has expired.")
    assert (
        "forms and landing pages stay in your account but stop working until you upgrade" in expired
    )
    assert "templates, domain authentication and images are fully restored" in expired
    assert "upgrade or export your data before 24 August 2025" in expired
    warning = flat(render(run_until("trial-expiry", "trial-retention-warning")).text)
    assert "export the data you want to keep" in warning
    assert "we keep your Acme data only until 24 August 2025" in warning


def test_html_escapes_what_comes_from_outside_and_text_does_not() -> None:
    s = run_until("payment-lock", "lock-started")
    evil = "<script>alert('x')</script> & co"
    rendered = render(s, reason=evil, account_id="<b>acme</b>")
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in rendered.html
    assert "&lt;b&gt;acme&lt;/b&gt;" in rendered.html
    assert evil in rendered.text  # plain text is not HTML: no entities in it
    assert evil in rendered.subject


def test_override_directory_comes_first_part_by_part(tmp_path: Path) -> None:
    (tmp_path / "lock-started.subject.txt.j2").write_text("Locked ({{ flow_title }})")
    s = run_until("payment-lock", "lock-started")
    rendered = render(s, TemplateRenderer(tmp_path, product="Acme"))
    assert rendered.subject == "Locked (Payment lock)"
    assert "HOW TO RESOLVE IT" in rendered.text  # the other parts still come from the package


def test_overriding_the_layout_rebrands_every_notice(tmp_path: Path) -> None:
    (tmp_path / "_layout.html.j2").write_text(
        "<html><h1>ACME BRAND</h1>{% block body %}{% endblock %}</html>"
    )
    renderer = TemplateRenderer(tmp_path, product="Acme")
    for flow, template in (
        ("inactivity", "inactivity-grace-started"),
        ("trial-expiry", "trial-expired"),
    ):
        rendered = render(run_until(flow, template), renderer)
        assert rendered.html.startswith("<html><h1>ACME BRAND</h1>")


def test_override_may_add_new_templates(tmp_path: Path) -> None:
    for suffix, body in (
        (".subject.txt.j2", "Hi {{ recipient }}"),
        (".txt.j2", "{{ reason }}"),
        (".html.j2", "<p>{{ reason }}</p>"),
    ):
        (tmp_path / f"custom{suffix}").write_text(body)
    renderer = TemplateRenderer(tmp_path)
    s = run_until("payment-lock", "lock-started")
    rendered = renderer.render("custom", context(s))
    assert rendered == RenderedNotice(
        subject=f"Hi {ADMIN}", text=s.effect.reason + "\n", html=f"<p>{s.effect.reason}</p>"
    )


def test_missing_lists_names_with_any_part_missing(tmp_path: Path) -> None:
    (tmp_path / "half.subject.txt.j2").write_text("x")
    (tmp_path / "half.txt.j2").write_text("x")
    renderer = TemplateRenderer(tmp_path)
    assert renderer.missing(["lock-started", "nope", "half", "nope", "../etc/passwd"]) == [
        "../etc/passwd",
        "half",
        "nope",
    ]


def test_rendering_a_missing_template_fails_loudly(tmp_path: Path) -> None:
    s = run_until("payment-lock", "lock-started")
    with pytest.raises(
        NoticeTemplateError, match=r"no template file 'nope.subject.txt.j2'"
    ) as info:
        TemplateRenderer(tmp_path).render("nope", context(s))
    assert str(tmp_path) in str(info.value)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(NoticeTemplateError, match="invalid template name"):
        TemplateRenderer().render("../secrets", context(s))


def test_a_typo_in_a_template_fails_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "lock-started.txt.j2").write_text("Hello\n\nYour deadline: {{ deadlin_date }}\n")
    s = run_until("payment-lock", "lock-started")
    with pytest.raises(
        NoticeTemplateError, match=r"lock-started\.txt\.j2:3: 'deadlin_date' is undefined"
    ):
        render(s, TemplateRenderer(tmp_path))


def test_a_missing_context_key_fails_instead_of_leaving_a_hole() -> None:
    s = run_until("payment-lock", "lock-started")
    ctx = context(s)
    del ctx["deadline_date"]
    with pytest.raises(NoticeTemplateError, match="'deadline_date' is undefined"):
        TemplateRenderer().render("lock-started", ctx)


def test_syntax_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "lock-started.html.j2").write_text("<p>\n{% if %}\n</p>")
    with pytest.raises(NoticeTemplateError, match=r"lock-started\.html\.j2:2"):
        render(run_until("payment-lock", "lock-started"), TemplateRenderer(tmp_path))


def test_templates_run_in_a_sandbox(tmp_path: Path) -> None:
    (tmp_path / "lock-started.subject.txt.j2").write_text("{{ reason.__class__.__mro__ }}")
    with pytest.raises(NoticeTemplateError, match=r"unsafe|__class__|__mro__"):
        render(run_until("payment-lock", "lock-started"), TemplateRenderer(tmp_path))


def test_an_empty_subject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lock-started.subject.txt.j2").write_text("{% if false %}x{% endif %}\n")
    with pytest.raises(NoticeTemplateError, match="empty subject"):
        render(run_until("payment-lock", "lock-started"), TemplateRenderer(tmp_path))


def test_problems_reports_missing_and_broken_overrides(tmp_path: Path) -> None:
    (tmp_path / "lock-started.txt.j2").write_text("{{ nonsense }}")
    policy = load_preset("account-locks")
    problems = TemplateRenderer(tmp_path).problems(policy)
    # the three lock flows share the template: one problem line per notice rule using it
    assert len(problems) == 3
    assert all("'nonsense' is undefined" in p for p in problems)
    assert problems[0].startswith("payment-lock.locked notice 'locked/lock-started'")

    broken = replace(policy, flows={"payment-lock": policy.flows["payment-lock"]})
    for name in ("lock-started", "lock-retention-warning"):
        for suffix in (".subject.txt.j2", ".txt.j2", ".html.j2"):
            (tmp_path / f"{name}{suffix}").unlink(missing_ok=True)
    assert TemplateRenderer(tmp_path).problems(broken) == []


def test_renderer_configuration_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        TemplateRenderer(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unknown template link"):
        TemplateRenderer(links={"homepage": "https://acme.example"})


def test_login_and_support_links_appear_when_configured() -> None:
    s = run_until("trial-expiry", "trial-expired")
    plain = render(s)
    assert "Log in:" not in plain.text
    renderer = TemplateRenderer(
        product="Acme",
        links={
            "login_url": "https://app.acme.example/login",
            "support_contact": "https://acme.example/help",
            "billing_url": "https://app.acme.example/billing",
        },
    )
    rendered = render(s, renderer)
    assert "Log in: https://app.acme.example/login" in rendered.text
    assert "Questions? Contact https://acme.example/help." in rendered.text
    assert "Upgrade to a paid plan (https://app.acme.example/billing)" in rendered.text
    assert '<a href="https://acme.example/help">' in rendered.html
    assert '<a href="https://app.acme.example/billing">Upgrade to a paid plan</a>' in rendered.html


def test_filters() -> None:
    assert join_words([]) == ""
    assert join_words(["a"]) == "a"
    assert join_words(["a", "b"]) == "a and b"
    assert join_words(["a", "b", "c"]) == "a, b and c"
    assert sentence("your API keys") == "Your API keys"
    assert sentence("") == ""


def test_problems_names_each_missing_part_of_a_template_the_policy_uses() -> None:
    text = resources.files("lapse.policy.presets").joinpath("inactivity-cleanup.yaml").read_text()
    policy = load_policy(text.replace("template: inactivity-final-warning", "template: farewell"))
    problems = TemplateRenderer().problems(policy)
    assert problems == [
        f"template 'farewell': no farewell{suffix} in the templates shipped with lapse"
        for suffix in (".subject.txt.j2", ".txt.j2", ".html.j2")
    ]


def _carrying(preset: str, templates: str) -> Policy:
    """The preset's document with a `templates:` section appended, loaded."""
    text = resources.files("lapse.policy.presets").joinpath(f"{preset}.yaml").read_text()
    return load_policy(text + "\ntemplates:\n" + templates, f"{preset}-custom.yaml")


def test_a_policy_carries_templates_that_win_over_the_deployment_and_the_shipped_ones(
    tmp_path: Path,
) -> None:
    policy = _carrying(
        "account-locks",
        """  lock-started:
    subject: "Locked: {{ account_id }}"
    text: "{{ reason }} (from the policy)"
    html: |
      {% extends "_layout.html.j2" %}
      {% block body %}<p>{{ reason }} &amp; more</p>{% endblock %}
""",
    )
    # the deployment overrides the same template and the layout: the policy's template wins,
    # and what it extends still comes from the deployment
    for suffix, body in (
        (".subject.txt.j2", "deployment subject"),
        (".txt.j2", "deployment text"),
        (".html.j2", "<p>deployment</p>"),
    ):
        (tmp_path / f"lock-started{suffix}").write_text(body)
    (tmp_path / "_layout.html.j2").write_text("<main>{% block body %}{% endblock %}</main>")
    renderer = TemplateRenderer(tmp_path, product="Acme")
    s = run_until("payment-lock", "lock-started")
    ctx = context(s)
    rendered = renderer.render("lock-started", ctx, policy)
    assert rendered.subject == f"Locked: {s.account.id}"
    assert rendered.text == f"{s.effect.reason} (from the policy)\n"
    assert rendered.html.strip() == f"<main><p>{html.escape(s.effect.reason)} &amp; more</p></main>"
    # without the policy (or with one that carries nothing) the deployment's file is used
    assert renderer.render("lock-started", ctx).subject == "deployment subject"
    assert renderer.render("lock-started", ctx, load_preset("account-locks")).text == (
        "deployment text\n"
    )
    # other templates of the policy come from the deployment or lapse as before
    assert renderer.problems(policy) == []


def test_a_broken_policy_template_is_reported_with_the_policy_named() -> None:
    policy = _carrying(
        "inactivity-cleanup",
        """  inactivity-final-warning:
    subject: "Last call {{ nope }}"
    text: "{% if %}"
    html: "<p>ok</p>"
""",
    )
    assert TemplateRenderer().problems(policy) == [
        "inactivity.grace notice 'grace/inactivity-final-warning': "
        "inactivity-final-warning.subject.txt.j2: 'nope' is undefined"
    ]
    s = run_until("inactivity", "inactivity-final-warning")
    with pytest.raises(NoticeTemplateError, match="'nope' is undefined"):
        TemplateRenderer().render("inactivity-final-warning", context(s), policy)
