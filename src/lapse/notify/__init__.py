"""Notices and host effects leaving lapse: template rendering, SMTP email and signed webhooks.

Nothing here connects at import time; the runtime builds the transports from its settings and
calls them from the outbox dispatcher (outside any database transaction).
"""

from lapse.notify.context import notice_context
from lapse.notify.email import SmtpSettings, SmtpTransport
from lapse.notify.templates import (
    SHIPPED_TEMPLATES,
    NoticeTemplateError,
    RenderedNotice,
    TemplateRenderer,
    policy_templates,
)
from lapse.notify.webhooks import (
    NOTICE_EVENT,
    WebhookDeliveryError,
    WebhookSender,
    WebhookVerificationFailed,
    effect_event_type,
    effect_payload,
    generate_secret,
    notice_payload,
    verify_webhook,
)

__all__ = [
    "NOTICE_EVENT",
    "SHIPPED_TEMPLATES",
    "NoticeTemplateError",
    "RenderedNotice",
    "SmtpSettings",
    "SmtpTransport",
    "TemplateRenderer",
    "WebhookDeliveryError",
    "WebhookSender",
    "WebhookVerificationFailed",
    "effect_event_type",
    "effect_payload",
    "generate_secret",
    "notice_context",
    "notice_payload",
    "policy_templates",
    "verify_webhook",
]
