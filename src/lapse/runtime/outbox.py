"""Turning a step's effects into outbox rows: one row per notice, channel and recipient.

A notice counts as dispatched when every one of its rows is delivered. An email notice with no
recipient (no admin member, no address) still gets a row, addressed to nobody, which cannot be
delivered: the phase waits, and the status says why, instead of silently skipping the warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lapse.core.model import Effect, HostEffect, NoticeEffect
from lapse.store.base import Channel, OutboxDraft


def drafts(effects: Iterable[Effect], *, channels: frozenset[str]) -> list[OutboxDraft]:
    """Outbox rows for effects; notice channels not configured here fall back to email."""
    out: list[OutboxDraft] = []
    for effect in effects:
        if isinstance(effect, NoticeEffect):
            out.extend(_notice_drafts(effect, channels))
        elif isinstance(effect, HostEffect):
            out.append(
                OutboxDraft(
                    account_id=effect.account_id,
                    case_id=effect.case_id,
                    effect=effect,
                    channel="host",
                )
            )
        else:
            out.append(
                OutboxDraft(
                    account_id=effect.account_id,
                    case_id=effect.case_id,
                    effect=effect,
                    channel="data",
                )
            )
    return out


def _notice_drafts(effect: NoticeEffect, channels: frozenset[str]) -> Sequence[OutboxDraft]:
    wanted: list[Channel] = []
    for via in effect.via:
        channel: Channel = via if via in channels else "email"
        if channel not in wanted:
            wanted.append(channel)
    out = []
    for channel in wanted:
        recipients: Sequence[str | None] = (
            (effect.recipients or (None,)) if channel == "email" else (None,)
        )
        for recipient in recipients:
            out.append(
                OutboxDraft(
                    account_id=effect.account_id,
                    case_id=effect.case_id,
                    effect=effect,
                    channel=channel,
                    recipient=recipient,
                )
            )
    return out
