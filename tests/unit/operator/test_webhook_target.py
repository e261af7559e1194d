"""The webhook URL from its Secret: errors that name the Secret and key, never the value."""

from __future__ import annotations

import base64

import pytest

from workerfleet.operator import models, reasons
from workerfleet.operator.notifications import target
from workerfleet.operator.notifications.target import WebhookConfigError
from workerfleet.operator.secrets import SecretReader

WEBHOOK = models.Webhook.model_validate(
    {"secretRef": {"name": "alerts"}, "format": "discord", "timeout": "3s"}
)


def reader(data: dict[str, str] | None) -> SecretReader:
    encoded = (
        None
        if data is None
        else {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    )
    return SecretReader(lambda namespace, name: encoded if name == "alerts" else None)


async def test_a_good_url_becomes_the_target() -> None:
    found = await target.resolve(
        reader({"url": "https://discord.com/api/webhooks/1/tok"}), "ns", WEBHOOK
    )
    assert (found.url, found.format, found.timeout_seconds) == (
        "https://discord.com/api/webhooks/1/tok",
        "discord",
        3.0,
    )


@pytest.mark.parametrize(
    ("data", "reason", "says"),
    [
        (None, reasons.WEBHOOK_SECRET_NOT_FOUND, "Secret ns/alerts not found"),
        (
            {"dsn": "x"},
            reasons.WEBHOOK_SECRET_KEY_MISSING,
            "Secret ns/alerts has no key 'url' (its keys: dsn)",
        ),
        (
            {"url": "ftp://files.example.com/s3cr3t"},
            reasons.WEBHOOK_URL_INVALID,
            "the value of key 'url' of Secret ns/alerts (spec.alerts.webhook.secretRef) "
            "is not an http(s) URL",
        ),
    ],
)
async def test_unusable_webhooks_name_the_secret_and_key(
    data: dict[str, str] | None, reason: str, says: str
) -> None:
    with pytest.raises(WebhookConfigError) as caught:
        await target.resolve(reader(data), "ns", WEBHOOK)
    assert caught.value.reason == reason
    assert says in caught.value.message
    assert "s3cr3t" not in caught.value.message
