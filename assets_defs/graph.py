"""The asset graph in run order, as phases of assets that share a partitioning (crawl x shard, or crawl).

Each phase is also a job, so the sensor and the UI can launch exactly one partition's worth of work.
"""

from dataclasses import dataclass

import dagster as dg

from assets_defs.chat_assets import CHAT_DATA_ASSETS, RL_ASSETS, SFT_ASSETS
from assets_defs.data_assets import DATA_ASSETS
from assets_defs.rlhf_assets import RLHF_ASSETS
from assets_defs.dedup_assets import CLEAN_ASSETS, CRAWL_ASSETS, DEDUP_SHARD_ASSETS, RANGE_ASSETS
from assets_defs.token_assets import DATASET_ASSETS, TOKEN_ASSETS
from assets_defs.training_assets import TRAINING_ASSETS


@dataclass(frozen=True)
class Phase:
    job_name: str
    assets: list[dg.AssetsDefinition]
    per: str  # "shard": one run per crawl x shard; "range": per crawl x hash range; "crawl": per crawl; "dataset": one
    description: str

    def job(self):
        return dg.define_asset_job(self.job_name, selection=self.assets, description=self.description)


PHASES = [
    Phase("ingest_job", [*DATA_ASSETS, *DEDUP_SHARD_ASSETS], "shard", "WARC to MinHash signatures for one shard."),
    Phase("pairs_job", RANGE_ASSETS, "range", "Candidate duplicates of one range of band hash values of a crawl."),
    Phase("cluster_job", CRAWL_ASSETS, "crawl", "Near-duplicate clusters of one crawl."),
    Phase("clean_job", CLEAN_ASSETS, "shard", "Dedup and PII removal for one shard."),
    Phase("tokenizer_job", DATASET_ASSETS, "dataset", "Trains the BPE tokenizer on the clean text of the crawls."),
    Phase("tokens_job", TOKEN_ASSETS, "shard", "Encodes one shard's clean documents into token shards."),
    Phase("pretrain_job", TRAINING_ASSETS, "dataset", "Pretrains the GPT on every token shard (torchrun via Pipes)."),
    Phase("chat_data_job", CHAT_DATA_ASSETS, "dataset", "The search index and the SFT conversations."),
    Phase("sft_job", SFT_ASSETS, "dataset", "Fine-tunes the latest base checkpoint on the conversations (Pipes)."),
    Phase("rl_job", RL_ASSETS, "dataset", "RL on verifiable answers from the latest SFT checkpoint (Pipes)."),
    Phase("rlhf_job", RLHF_ASSETS, "dataset", "Preference rankings, the reward model and RLHF against it (Pipes)."),
]
ALL_ASSETS = [a for phase in PHASES for a in phase.assets]
ASSET_ORDER = [a.key.to_user_string() for a in ALL_ASSETS]
JOBS = {phase.job_name: phase.job() for phase in PHASES}
