"""The webhook a Monitor sends to, read from its Secret at each run.

A Secret that is missing, lacks the key, or holds something other than an
http(s) URL is a :class:`WebhookConfigError`: the Monitor shows it in its
NotificationsDelivered condition, naming the Secret and key (never the
value), keeps its notifications queued, and goes on recovering and
evaluating its rules.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

from workerfleet.operator import models, reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.notifications.outbox import Target
from workerfleet.operator.secrets import SecretReader

URL_SCHEMES = ("http", "https")


class WebhookConfigError(Exception):
    """The webhook cannot be used as configured; ``reason`` is a constant from ``reasons``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook (without repeating it), or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in URL_SCHEMES:
        return "is not an http(s) URL"
    if not parts.hostname:
        return "has no host"
    return None


async def resolve(secrets: SecretReader, namespace: str, webhook: models.Webhook) -> Target:
    """The target of ``webhook``; raises WebhookConfigError naming the Secret and key."""
    ref = webhook.secret_ref
    where = f"key {ref.key!r} of Secret {namespace}/{ref.name} (spec.alerts.webhook.secretRef)"
    try:
        data = await secrets.data(namespace, ref.name)
    except QueueAccessError as error:
        if error.reason == reasons.SECRET_NOT_FOUND:
            raise WebhookConfigError(
                reasons.WEBHOOK_SECRET_NOT_FOUND,
                f"Secret {namespace}/{ref.name} not found: create it with the webhook URL "
                f"under the key {ref.key!r} (spec.alerts.webhook.secretRef)",
            ) from None
        raise WebhookConfigError(reasons.WEBHOOK_SECRET_UNREADABLE, error.message) from None
    if ref.key not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise WebhookConfigError(
            reasons.WEBHOOK_SECRET_KEY_MISSING,
            f"Secret {namespace}/{ref.name} has no key {ref.key!r} (its keys: {keys}); "
            "set spec.alerts.webhook.secretRef.key",
        )
    try:
        url = base64.b64decode(data[ref.key], validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        url = ""
    problem = url_problem(url)
    if problem is not None:
        raise WebhookConfigError(
            reasons.WEBHOOK_URL_INVALID,
            f"the value of {where} {problem} (https://hooks.example.com/...)",
        )
    return Target(url=url, format=webhook.format, timeout_seconds=webhook.timeout_seconds)
