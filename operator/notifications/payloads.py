"""What a webhook receives about an incident, per format; pure.

``generic`` is workerfleet's own JSON object (documented in the README):

    {"version": "workerfleet.dev/v1alpha1", "rule": "noWorkersWithPending",
     "pool": "emails", "namespace": "mail", "monitor": "mail", "state": "firing",
     "repeat": false, "since": "2026-01-01T12:00:00Z", "firedAt": "...",
     "resolvedAt": null, "message": "12 jobs ready to run, 0 workers online",
     "summary": "[FIRING] ...", "describe": "kubectl describe workerpool emails -n mail"}

``slack`` is an incoming webhook's message (``text`` plus Block Kit
``blocks``), ``discord`` a webhook message with one embed coloured by state.
Each stays within its service's documented limits, clipping the message
rather than having the service refuse the whole notification.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from workerfleet.operator import models
from workerfleet.operator.conditions import rfc3339

Format = Literal["generic", "slack", "discord"]
State = Literal["firing", "resolved"]

GENERIC_VERSION = models.API_VERSION

# Slack Block Kit limits (api.slack.com/reference/block-kit): a header's plain_text
# 150 characters, a section's text 3,000, a section's fields 10 of 2,000 each, a
# context's elements 10; the top-level text is the notification fallback (Slack
# truncates past 40,000 characters; we keep it to a section's size).
SLACK_HEADER_MAX = 150
SLACK_SECTION_TEXT_MAX = 3000
SLACK_FIELD_TEXT_MAX = 2000
SLACK_FIELDS_MAX = 10
SLACK_TEXT_MAX = 3000
# Discord limits (discord.com/developers/docs/resources/message#embed-object-embed-limits):
# content 2,000 characters; an embed's title 256, description 4,096, 25 fields of
# name 256 / value 1,024, footer text 2,048; all embeds' text together 6,000.
DISCORD_CONTENT_MAX = 2000
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096
DISCORD_FIELD_NAME_MAX = 256
DISCORD_FIELD_VALUE_MAX = 1024
DISCORD_FIELDS_MAX = 25
DISCORD_FOOTER_MAX = 2048
DISCORD_EMBED_TOTAL_MAX = 6000
DISCORD_FIRING_COLOUR = 0xD9372B
DISCORD_RESOLVED_COLOUR = 0x2EB67D
DISCORD_REPEAT_COLOUR = 0xE8912D
ELLIPSIS = "…"


@dataclass(frozen=True)
class Notification:
    """One thing to tell about one incident."""

    namespace: str
    monitor: str
    rule: str
    pool: str
    state: State
    since: datetime
    message: str
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    repeat: bool = False
    """A reminder that it is still firing (alerts.repeatInterval)."""

    @property
    def describe_command(self) -> str:
        return f"kubectl describe workerpool {self.pool} -n {self.namespace}"

    @property
    def headline(self) -> str:
        word = "STILL FIRING" if self.repeat else self.state.upper()
        return f"[{word}] {self.rule} on {self.namespace}/{self.pool}"

    @property
    def summary(self) -> str:
        return f"{self.headline}: {self.message}"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _stamp(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def generic(n: Notification) -> dict[str, Any]:
    return {
        "version": GENERIC_VERSION,
        "rule": n.rule,
        "pool": n.pool,
        "namespace": n.namespace,
        "monitor": n.monitor,
        "state": n.state,
        "repeat": n.repeat,
        "since": rfc3339(n.since),
        "firedAt": _stamp(n.fired_at),
        "resolvedAt": _stamp(n.resolved_at),
        "message": n.message,
        "summary": n.summary,
        "describe": n.describe_command,
    }


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn reads &, < and > as markup (links, mentions): escape them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _facts(n: Notification) -> list[tuple[str, str]]:
    facts = [
        ("Rule", n.rule),
        ("WorkerPool", f"{n.namespace}/{n.pool}"),
        ("State", "still firing" if n.repeat else n.state),
        ("Since", rfc3339(n.since)),
    ]
    if n.resolved_at is not None:
        facts.append(("Resolved", rfc3339(n.resolved_at)))
    facts.append(("Monitor", f"{n.namespace}/{n.monitor}"))
    return facts


def slack(n: Notification) -> dict[str, Any]:
    fields = [
        {"type": "mrkdwn", "text": clip(f"*{name}*\n{_slack_escape(value)}", SLACK_FIELD_TEXT_MAX)}
        for name, value in _facts(n)[:SLACK_FIELDS_MAX]
    ]
    return {
        "text": clip(_slack_escape(n.summary), SLACK_TEXT_MAX),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": clip(n.headline, SLACK_HEADER_MAX)},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": clip(_slack_escape(n.message) or "-", SLACK_SECTION_TEXT_MAX),
                },
                "fields": fields,
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": clip(f"`{n.describe_command}`", SLACK_SECTION_TEXT_MAX),
                    }
                ],
            },
        ],
    }


def _colour(n: Notification) -> int:
    if n.state == "resolved":
        return DISCORD_RESOLVED_COLOUR
    return DISCORD_REPEAT_COLOUR if n.repeat else DISCORD_FIRING_COLOUR


def discord_embed_length(embed: Mapping[str, Any]) -> int:
    """The characters Discord counts against its 6,000 total for one embed."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", ()))
    total += len((embed.get("footer") or {}).get("text", ""))
    total += len((embed.get("author") or {}).get("name", ""))
    return total


def discord(n: Notification) -> dict[str, Any]:
    fields = [
        {
            "name": clip(name, DISCORD_FIELD_NAME_MAX),
            "value": clip(value, DISCORD_FIELD_VALUE_MAX),
            "inline": True,
        }
        for name, value in _facts(n)
    ]
    fields.append(
        {
            "name": "Details",
            "value": clip(f"`{n.describe_command}`", DISCORD_FIELD_VALUE_MAX),
            "inline": False,
        }
    )
    embed: dict[str, Any] = {
        "title": clip(n.headline, DISCORD_TITLE_MAX),
        "description": "",
        "color": _colour(n),
        "timestamp": rfc3339(n.resolved_at or n.fired_at or n.since),
        "fields": fields[:DISCORD_FIELDS_MAX],
        "footer": {
            "text": clip(f"workerfleet Monitor {n.namespace}/{n.monitor}", DISCORD_FOOTER_MAX)
        },
    }
    room = DISCORD_EMBED_TOTAL_MAX - discord_embed_length(embed)
    embed["description"] = clip(n.message or "-", min(DISCORD_DESCRIPTION_MAX, room))
    return {
        "content": clip(n.summary, DISCORD_CONTENT_MAX),
        # Nothing in a notification may ping @everyone or a role.
        "allowed_mentions": {"parse": []},
        "embeds": [embed],
    }


BUILDERS = {"generic": generic, "slack": slack, "discord": discord}


def body(format_: Format, n: Notification) -> dict[str, Any]:
    return BUILDERS[format_](n)
