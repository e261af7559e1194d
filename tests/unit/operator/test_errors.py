from __future__ import annotations

from workerfleet.operator import errors

DSN = "postgresql://app:s3cr%40t@db.example:5432/queue?sslmode=disable"


def test_scrub_removes_dsn_and_password_in_every_spelling() -> None:
    text = f"could not connect to {DSN}; password s3cr@t rejected; raw s3cr%40t"
    scrubbed = errors.scrub(text, DSN)
    assert "s3cr" not in scrubbed
    assert DSN not in scrubbed
    assert "rejected" in scrubbed


def test_keyword_form_passwords() -> None:
    dsn = "host=db user=app password=hunter2 dbname=q"
    assert "hunter2" not in errors.scrub(f"bad dsn {dsn}", dsn)


def test_describe_uses_the_root_cause() -> None:
    try:
        try:
            raise OSError(f"connect to {DSN} refused")
        except OSError as inner:
            raise RuntimeError("wrapper") from inner
    except RuntimeError as outer:
        described = errors.describe(outer, DSN)
    assert described.startswith("connect to")
    assert "s3cr" not in described


def test_long_details_are_cut() -> None:
    assert len(errors.scrub("x" * 5000, DSN)) == errors.MAX_DETAIL_CHARS
