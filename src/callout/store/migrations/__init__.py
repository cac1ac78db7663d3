"""Alembic environment and versions of Callout's schema, shipped inside the package."""
