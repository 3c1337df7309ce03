"""crawl2chat's Dagster layer: thin assets over pipeline/ and training/."""
