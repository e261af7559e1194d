"""Webhook bodies: the generic object as documented, Slack and Discord within their limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from workerfleet.operator.notifications import payloads, target, webhook
from workerfleet.operator.notifications.payloads import Notification

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def notification(
    message: str = "12 jobs ready to run, 0 workers online", **extra: Any
) -> Notification:
    fields: dict[str, Any] = {
        "namespace": "mail",
        "monitor": "mail-alerts",
        "rule": "noWorkersWithPending",
        "pool": "emails",
        "state": "firing",
        "since": T0,
        "fired_at": T0,
        "message": message,
    }
    fields.update(extra)
    return Notification(**fields)


def test_generic_body_has_the_documented_fields() -> None:
    body = payloads.generic(notification())
    assert body == {
        "version": "workerfleet.dev/v1alpha1",
        "rule": "noWorkersWithPending",
        "pool": "emails",
        "namespace": "mail",
        "monitor": "mail-alerts",
        "state": "firing",
        "repeat": False,
        "since": "2026-03-01T12:00:00Z",
        "firedAt": "2026-03-01T12:00:00Z",
        "resolvedAt": None,
        "message": "12 jobs ready to run, 0 workers online",
        "summary": "[FIRING] noWorkersWithPending on mail/emails: "
        "12 jobs ready to run, 0 workers online",
        "describe": "kubectl describe workerpool emails -n mail",
    }
    json.dumps(body)  # serialisable as is


def _slack_texts(body: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(where, text, limit) of every text Slack limits."""
    found = [("text", body["text"], payloads.SLACK_TEXT_MAX)]
    for block in body["blocks"]:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            found.append(("header", block["text"]["text"], payloads.SLACK_HEADER_MAX))
        elif block["type"] == "section":
            found.append(("section", block["text"]["text"], payloads.SLACK_SECTION_TEXT_MAX))
            assert len(block["fields"]) <= payloads.SLACK_FIELDS_MAX
            found += [("field", f["text"], payloads.SLACK_FIELD_TEXT_MAX) for f in block["fields"]]
        elif block["type"] == "context":
            assert len(block["elements"]) <= 10
            found += [("context", e["text"], 3000) for e in block["elements"]]
        else:
            pytest.fail(f"unexpected block {block['type']}")
    return found


@pytest.mark.parametrize("length", [10, 5_000, 50_000])
def test_slack_body_is_what_an_incoming_webhook_accepts(length: int) -> None:
    body = payloads.slack(notification("x" * length, pool="p" * 200))
    assert set(body) == {"text", "blocks"}
    assert 1 <= len(body["blocks"]) <= 50
    for where, text, limit in _slack_texts(body):
        assert text, where
        assert len(text) <= limit, (where, len(text))
    assert "[FIRING]" in body["blocks"][0]["text"]["text"]


def test_slack_text_escapes_markup() -> None:
    body = payloads.slack(notification("a <!channel> & b"))
    assert "<!channel>" not in json.dumps(body)
    assert "&lt;!channel&gt; &amp; b" in body["blocks"][1]["text"]["text"]


def _discord_limits(body: dict[str, Any]) -> None:
    assert len(body["content"]) <= payloads.DISCORD_CONTENT_MAX
    assert body["allowed_mentions"] == {"parse": []}
    assert 1 <= len(body["embeds"]) <= 10
    total = 0
    for embed in body["embeds"]:
        assert len(embed["title"]) <= payloads.DISCORD_TITLE_MAX
        assert len(embed["description"]) <= payloads.DISCORD_DESCRIPTION_MAX
        assert len(embed["fields"]) <= payloads.DISCORD_FIELDS_MAX
        for f in embed["fields"]:
            assert 1 <= len(f["name"]) <= payloads.DISCORD_FIELD_NAME_MAX
            assert 1 <= len(f["value"]) <= payloads.DISCORD_FIELD_VALUE_MAX
        assert len(embed["footer"]["text"]) <= payloads.DISCORD_FOOTER_MAX
        assert 0 <= embed["color"] <= 0xFFFFFF
        datetime.fromisoformat(embed["timestamp"].replace("Z", "+00:00"))
        total += payloads.discord_embed_length(embed)
    assert total <= payloads.DISCORD_EMBED_TOTAL_MAX


@pytest.mark.parametrize("length", [10, 3_000, 10_000])
def test_discord_body_is_within_the_documented_limits(length: int) -> None:
    body = payloads.discord(notification("y" * length, pool="q" * 300))
    _discord_limits(body)
    embed = body["embeds"][0]
    assert embed["description"].startswith("y")


def test_discord_colour_follows_the_state() -> None:
    firing = payloads.discord(notification())["embeds"][0]["color"]
    resolved = payloads.discord(notification(state="resolved", resolved_at=T0))["embeds"][0]
    repeat = payloads.discord(notification(repeat=True))["embeds"][0]["color"]
    assert len({firing, resolved["color"], repeat}) == 3
    assert firing == payloads.DISCORD_FIRING_COLOUR
    assert resolved["color"] == payloads.DISCORD_RESOLVED_COLOUR
    assert {"name": "Resolved", "value": "2026-03-01T12:00:00Z", "inline": True} in resolved[
        "fields"
    ]


def test_clip_marks_what_it_cut() -> None:
    assert payloads.clip("abc", 3) == "abc"
    assert payloads.clip("abcd", 3) == "ab…"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_dates(header: str | None, expected: float | None) -> None:
    assert webhook.retry_after_seconds(header, T0) == expected


def test_attempt_outcomes() -> None:
    assert webhook.Attempt(204).delivered
    assert not webhook.Attempt(404).retryable
    assert webhook.Attempt(429, retry_after_seconds=3).retryable
    assert webhook.Attempt(503).retryable
    assert webhook.Attempt(None, "timed out after 2s").status_class == "timeout"
    assert webhook.Attempt(None, "cannot connect").status_class == "error"
    assert webhook.Attempt(502).status_class == "5xx"
    assert webhook.Attempt(500).describe() == "HTTP 500 from the webhook"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.slack.com/services/T0/B0/x", None),
        ("http://127.0.0.1:8080/hook", None),
        ("ftp://example.com/x", "is not an http(s) URL"),
        ("hooks.slack.com/services/x", "is not an http(s) URL"),
        ("https:///path-only", "has no host"),
        ("", "is not an http(s) URL"),
    ],
)
def test_webhook_urls_must_be_http(url: str, problem: str | None) -> None:
    assert target.url_problem(url) == problem
