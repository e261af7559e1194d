"""The worker runtime and the PostgreSQL queue contract."""
