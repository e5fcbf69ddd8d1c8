"""The contract every layer shares: canonical tables, columns and dtypes, and small helpers."""
