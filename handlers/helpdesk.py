"""Bridge to a help desk the team already runs (Chatwoot, Zendesk, …): a thin layer over the
hand-off service (``handlers.handoff_service``), never a second store or lifecycle.

- What a help desk may see of a hand-off: ``public_handoff`` / ``public_message`` — the
  service's staff view without the channel address or session key, every user line masked
  again (ID numbers, phones, digit runs, link tokens), so nothing personal leaves in clear.
- ``HandoffWebhook``: a listener on the service (``service.listeners``) that turns its lifecycle
  events into webhook events: ``created`` → ``handoff.created``, a *user* ``message`` →
  ``handoff.message``, a *system* one (the bot answered the queued user from the FAQ; a reply did
  not reach the user) → ``handoff.note``, ``closed`` (closed or abandoned) → ``handoff.closed``.
  Agents' messages are not sent back (the help desk wrote them).
- ``attach(service, cfg)`` wires the webhook when ``handoff.webhook_url`` is set.

The inbound side (the help desk answering through our API) is ``channels/handoff_api.py``.
"""
from __future__ import annotations

import atexit
import logging
from typing import Any, Mapping

from .handoff_service import HandoffService
from .handoffs import Handoff, HandoffMessage
from .privacy import mask_secrets
from .webhook import SqlOutbox, WebhookSender
from settings import WebhookConfig

log = logging.getLogger(__name__)

EVENT_TYPES = {"created": "handoff.created", "closed": "handoff.closed"}
MESSAGE_EVENTS = {"user": "handoff.message", "system": "handoff.note"}   # a "message" by its kind (an agent's: none)


def public_handoff(h: Handoff, *, transcript: bool = True) -> dict[str, Any]:
    """A hand-off as a help desk sees it: ids, channel, reason, flow/step, masked transcript, times."""
    d = h.to_dict()   # the staff view: no address, no session key
    if transcript:
        d["transcript"] = [[str(who), mask_secrets(str(text))] for who, text in h.transcript]
    else:
        d.pop("transcript", None)
    return d


def public_message(m: HandoffMessage) -> dict[str, Any]:
    """One hand-off message; the user's text (masked when stored) and a system line masked again."""
    d = m.to_dict()
    if m.kind != "agent":
        d["text"] = mask_secrets(m.text)
    return d


class HandoffWebhook:
    """A hand-off service listener that posts lifecycle events to the configured webhook."""

    def __init__(self, sender: WebhookSender) -> None:
        self.sender = sender

    def __call__(self, kind: str, h: Handoff, message: HandoffMessage | None = None) -> None:
        event = MESSAGE_EVENTS.get(message.kind) if kind == "message" and message else EVENT_TYPES.get(kind)
        if event is None:
            return
        data: dict[str, Any] = {"handoff": public_handoff(h, transcript=kind != "message")}
        if message is not None:
            data["message"] = public_message(message)
        self.sender.emit(event, data)

    def close(self, timeout: float = 5.0) -> None:
        self.sender.close(timeout)


def attach(service: HandoffService, cfg: Mapping[str, Any]) -> HandoffWebhook | None:
    """Subscribe a webhook to ``service`` when ``handoff.webhook_url`` is set (``settings.ConfigError`` naming
    the key if the settings cannot work); None when it is off."""
    conf = WebhookConfig.of(cfg)
    if not conf.enabled:
        return None
    db = getattr(service.store, "db", None)   # the hand-off database: a durable outbox shared by every instance
    hook = HandoffWebhook(WebhookSender(conf, outbox=SqlOutbox(db) if db is not None else None))
    hook.sender.start()                        # events a stopped instance left behind go out now
    service.listeners.append(hook)
    atexit.register(hook.close, 2.0)   # on a normal exit, send what is queued (briefly)
    log.info("hand-off events go to a webhook (%s)", conf.url.split("://", 1)[0])
    return hook
