"""crawl2chat's data library: pure functions and small classes over documents.

Nothing here imports dagster or torch; assets_defs/ wraps these functions as assets.
"""
