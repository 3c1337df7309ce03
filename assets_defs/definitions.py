"""The Definitions `dagster dev` and `crawl2chat ui` load with no arguments ([tool.dagster] in pyproject.toml)."""

from __future__ import annotations

import dagster as dg

from assets_defs.chat_assets import ProbeConfig, RLConfig, SFTConfig
from assets_defs.graph import ALL_ASSETS, JOBS
from assets_defs.launchers import pipes_client
from assets_defs.resources import PipelineConfig
from assets_defs.rlhf_assets import PreferenceConfig, RewardConfig, RLHFConfig
from assets_defs.sensors import crawl_sensor
from assets_defs.training_assets import PretrainConfig

# S3 credentials and endpoint come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_ENDPOINT_URL), read by s3fs itself, so no secret passes through Dagster config or its logs.
defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=list(JOBS.values()),
    sensors=[crawl_sensor],
    resources={
        "settings": PipelineConfig(data_root=dg.EnvVar("CRAWL2CHAT_DATA_ROOT").get_value("data")),
        "pretrain": PretrainConfig(),
        "probe": ProbeConfig(),
        "sft": SFTConfig(),
        "rl": RLConfig(),
        "preferences": PreferenceConfig(),
        "reward": RewardConfig(),
        "rlhf": RLHFConfig(),
        "pipes": pipes_client(dg.EnvVar("CRAWL2CHAT_PIPES").get_value("subprocess")),
    },
)
