"""The asset graph in run order, as phases of assets that share a partitioning (crawl x shard, or crawl)."""

from dataclasses import dataclass

import dagster as dg

from assets_defs.data_assets import DATA_ASSETS


@dataclass(frozen=True)
class Phase:
    assets: list[dg.AssetsDefinition]
    per: str  # "shard": one run per crawl x shard partition; "crawl": one run per crawl


PHASES = [Phase(DATA_ASSETS, "shard")]
ALL_ASSETS = [a for phase in PHASES for a in phase.assets]
ASSET_ORDER = [a.key.to_user_string() for a in ALL_ASSETS]
