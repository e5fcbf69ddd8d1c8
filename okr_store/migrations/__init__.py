"""Alembic migrations of every krpulse table (staging and OKR store); run via okr_store.schema."""
