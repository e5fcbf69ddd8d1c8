"""The compiled KR engine: definitions to set-based SQL (SQLAlchemy Core) on DuckDB or PostgreSQL."""
