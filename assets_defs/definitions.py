"""The Definitions `dagster dev` and `crawl2chat ui` load with no arguments ([tool.dagster] in pyproject.toml)."""

from __future__ import annotations

import dagster as dg

from assets_defs.automation import automation_sensor
from assets_defs.chat_assets import ProbeConfig, RLConfig, SFTConfig
from assets_defs.graph import ALL_ASSETS, JOBS
from assets_defs.launchers import executor, pipes_client
from assets_defs.resources import PipelineConfig
from assets_defs.rlhf_assets import PreferenceConfig, RewardConfig, RLHFConfig
from assets_defs.sensors import crawl_sensor, relist_crawls_job, relist_crawls_schedule
from assets_defs.training_assets import PretrainConfig

# S3 credentials and endpoint come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_ENDPOINT_URL), read by s3fs itself, so no secret passes through Dagster config or its logs.
defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[*JOBS.values(), relist_crawls_job],
    sensors=[crawl_sensor, automation_sensor],
    schedules=[relist_crawls_schedule],
    # per-step pods on Kubernetes with CRAWL2CHAT_EXECUTOR=k8s (infra/helm/values.yaml); locally one process a step
    executor=executor(dg.EnvVar("CRAWL2CHAT_EXECUTOR").get_value("multiprocess")),
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
