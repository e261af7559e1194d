"""Telling people about incidents: webhook bodies, delivery, and its outbox.

* ``payloads``: a :class:`~payloads.Notification` turned into the body each
  format expects (generic JSON, Slack, Discord), within their documented
  limits. Pure.
* ``webhook``: one POST and what came of it (an HTTP status or an error in
  words that never contain the URL), and ``Retry-After``.
* ``outbox``: a bounded queue per Monitor and the task draining it, with
  exponential backoff and jitter between attempts; a Monitor's run only puts
  notifications in and never waits for their delivery.
* ``target``: the webhook URL read from its Secret, with errors naming the
  Secret and key.
* ``notifier``: the outboxes of every Monitor and the one HTTP session.
"""
