"""The seeds' last stage as assets: people's (and a program's) preferences between answers, and the reward model
that learns them.

Thin, like every asset module: the rankings are training/preferences.py and training/synthetic_preferences.py, the
reward model training/reward_model.py (launched through Pipes like every training script).
"""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field, field_validator

from assets_defs.resources import PipelineConfig
from assets_defs.training_assets import TrainingJob, checkpoint_metadata, run_training
from training import preferences as prefs
from training.checkpoint import checkpoint_root
from training.sft_data import HELD_OUT, TRAIN
from training.synthetic_preferences import synthetic_set


class PreferenceConfig(dg.ConfigurableResource):
    """Where preference_rankings come from. Defaults: the synthetic set and whatever the labeling page stored."""

    synthetic: int = Field(default=200, ge=0, description="Train pairs of each synthetic kind (a program knows the "
                           "better answer: training/synthetic_preferences.py).")
    synthetic_held_out: int = Field(default=30, ge=0, description="Held-out pairs of each synthetic kind.")
    imports: list[str] = Field(default_factory=list, description=(
        "Pairwise preference files, local or s3://: .jsonl, .jsonl.gz or .parquet of {prompt, chosen, rejected} "
        "as HH-RLHF and UltraFeedback ship them. Bad records are skipped and counted in the asset's metadata."))
    labels: str | None = Field(default=None, description="The labeling page's SQLite file (`crawl2chat label`); "
                               "default {data_root}/labels/rankings.sqlite when the data root is local.")
    labels_env: str = Field(default="CRAWL2CHAT_LABELS_DB", description="An environment variable that, when set, "
                            "names where the rankings are instead: a postgresql:// URL (its password stays out of "
                            "config and logs) or a SQLite path.")
    seed: int = 0

    @field_validator("imports")
    @classmethod
    def _importable(cls, imports: list[str]) -> list[str]:
        for uri in imports:
            if not uri.endswith((".jsonl", ".jsonl.gz", ".parquet")):
                raise ValueError(f"{uri}: a pairwise file is .jsonl, .jsonl.gz or .parquet")
        return imports

    def labels_location(self, data_root: str) -> str | None:
        """The environment's location, else `labels`, else the default file (None for a remote data root)."""
        if os.environ.get(self.labels_env):
            return os.environ[self.labels_env]
        if self.labels:
            return self.labels
        return None if "://" in data_root else str(Path(data_root) / "labels" / "rankings.sqlite")


class RewardConfig(TrainingJob):
    """The reward model's run (training/reward_model.py). Defaults: ~30 s on the sample's toy chat model."""

    batch_size: int = Field(default=16, ge=1, description="pairs a step")
    max_steps: int = Field(default=60, ge=1)
    lr: float = Field(default=1e-4, gt=0)
    seq_len: int = Field(default=384, ge=16)
    eval_every: int = Field(default=30, ge=1)
    checkpoint_every: int = Field(default=30, ge=1)
    seed: int = 1337
    device: str = Field(default="auto", pattern="^(auto|cpu|cuda)$")

    def command(self, data_root: str) -> list[str]:
        return self.script("training.reward_model", data_root, {
            "batch-size": self.batch_size, "max-steps": self.max_steps, "lr": self.lr, "seq-len": self.seq_len,
            "eval-every": self.eval_every, "checkpoint-every": self.checkpoint_every, "seed": self.seed,
            "device": self.device})


@dg.asset(deps=["sft_model"], group_name="rlhf", kinds={"polars", "sqlite"},
          description="Rankings of answers, best first: a synthetic set where a program knows the better answer, "
          "people's rankings from the labeling page (`crawl2chat label`, of the chat model's answers), and "
          "imported pairwise files; every pair a ranking implies is a reward model's example.")
def preference_rankings(settings: PipelineConfig, preferences: PreferenceConfig) -> dg.MaterializeResult:
    rows = [{"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"]], "labeler": "program",
             "ranked_at": "", "source": "synthetic", "kind": p["kind"], "split": p["split"]}
            for p in synthetic_set(preferences.seed, preferences.synthetic, preferences.synthetic_held_out)]
    labels = preferences.labels_location(settings.data_root)
    human: list[prefs.Ranking] = []
    if labels is not None and (labels.startswith(prefs.POSTGRES) or Path(labels).exists()):
        store = prefs.open_rankings(labels)
        try:
            human = store.rankings()
        finally:
            store.close()
        rows += prefs.ranking_rows(human, "human")
    imports = {}
    for uri in preferences.imports:
        imported, report = prefs.read_pairwise(uri, settings.storage_options(uri))
        rows += prefs.ranking_rows(imported, "import")
        imports[uri] = report.as_dict()
    by_kind: dict[str, dict[str, int]] = {}
    for pair in prefs.pair_rows(rows):
        counts = by_kind.setdefault(pair["kind"], {TRAIN: 0, HELD_OUT: 0})
        counts[pair["split"]] += 1
    agreement = prefs.agreement(human)
    info = {"by_kind": by_kind, "labels": prefs.describe(labels) if labels else None, "imports": imports,
            "agreement": agreement}
    prefs.save_rankings(settings.store(), rows, info)
    examples = "\n".join(f"| {r['kind']} | {r['prompt'][:60]} | {r['responses'][0][:60]} | {r['responses'][-1][:60]} |"
                         for kind in by_kind for r in [next(r for r in rows if r["kind"] == kind)])
    return dg.MaterializeResult(metadata={
        "rankings": len(rows), "pairs": sum(sum(c.values()) for c in by_kind.values()),
        "held_out_pairs": sum(c[HELD_OUT] for c in by_kind.values()),
        "pairs_by_kind": dg.MetadataValue.json(by_kind),
        "human_rankings": len(human), "labelers": len({r.labeler for r in human}),
        "labels": prefs.describe(labels) if labels else "",
        "agreement": dg.MetadataValue.json(agreement), "imports": dg.MetadataValue.json(imports),
        "imported_skipped": sum(sum(r["skipped"].values()) for r in imports.values()),
        "examples": dg.MetadataValue.md("| kind | prompt | best | worst |\n|---|---|---|---|\n" + examples)})


@dg.asset(deps=["sft_model", "preference_rankings"], group_name="rlhf", kinds={"pytorch"},
          description="The chat model with a scalar head, trained on every pair the rankings imply with the "
          "Bradley-Terry loss (training/reward_model.py through Pipes); each checkpoint a materialization with its "
          "held-out pairwise accuracy by kind.",
          check_specs=[dg.AssetCheckSpec("orders_held_out_pairs", asset="reward_model",
                                         description="held-out pairwise accuracy >= 0.75 (chance: 0.5)",
                                         blocking=True)])
def reward_model(context: dg.AssetExecutionContext, settings: PipelineConfig, reward: RewardConfig,
                 pipes: dg.ResourceParam[dg.PipesClient]):
    last = run_training(context, pipes, checkpoint_root(settings.data_root, "reward"),
                        **reward.pod_options(reward.command(settings.data_root)))
    accuracy = last.get("pairwise_accuracy")
    yield dg.MaterializeResult(metadata=checkpoint_metadata(last), check_results=[dg.AssetCheckResult(
        check_name="orders_held_out_pairs", passed=accuracy is not None and accuracy >= 0.75,
        metadata={"pairwise_accuracy": dg.MetadataValue.float(accuracy or 0.0),
                  "accuracy_by_kind": dg.MetadataValue.json(last.get("accuracy_by_kind") or {})})])


class RLHFConfig(TrainingJob):
    """RLHF against the reward model, with its guard (training/rlhf.py). Defaults: ~1 minute on the sample's toy."""

    prompts: int = Field(default=4, ge=1, description="prompts a step")
    samples: int = Field(default=4, ge=2, description="replies sampled a prompt")
    temperature: float = Field(default=1.0, gt=0)
    max_new_tokens: int = Field(default=64, ge=1)
    max_steps: int = Field(default=20, ge=1)
    lr: float = Field(default=1e-5, gt=0)
    kl: float = Field(default=0.05, ge=0, description="weight of the KL penalty to the starting model")
    clip: float = Field(default=5.0, gt=0, description="the reward model's score is clipped to +-clip")
    length: float = Field(default=0.0, ge=0, description="a cost a reply token")
    eval_every: int = Field(default=10, ge=1)
    eval_items: int = Field(default=10, ge=1, description="held-out questions of each kind the guard asks")
    checkpoint_every: int = Field(default=10, ge=1)
    max_accuracy_drop: float = Field(default=0.15, ge=0)
    max_degenerate: float = Field(default=0.3, ge=0)
    max_length_growth: float = Field(default=2.0, gt=0)
    seed: int = 7
    device: str = Field(default="auto", pattern="^(auto|cpu|cuda)$")

    def command(self, data_root: str) -> list[str]:
        flags = ("prompts", "samples", "temperature", "max_new_tokens", "max_steps", "lr", "kl", "clip", "length",
                 "eval_every", "eval_items", "checkpoint_every", "max_accuracy_drop", "max_degenerate",
                 "max_length_growth", "seed", "device")
        return self.script("training.rlhf", data_root, {f.replace("_", "-"): getattr(self, f) for f in flags})


@dg.asset(deps=["sft_model", "reward_model"], group_name="rlhf", kinds={"pytorch"},
          description="The chat model after RLHF against the reward model (training/rlhf.py through Pipes): "
          "bounded steps, a KL penalty to the SFT model, the reward clipped; its guard stops the run and keeps the "
          "last good weights once the reward rises while held-out accuracy falls, or replies degenerate.",
          check_specs=[dg.AssetCheckSpec("guard_quiet", asset="rlhf_model", description="the guard did not stop "
                                         "the run (it stops one that games the reward model)")])
def rlhf_model(context: dg.AssetExecutionContext, settings: PipelineConfig, rlhf: RLHFConfig,
               pipes: dg.ResourceParam[dg.PipesClient]):
    last = run_training(context, pipes, checkpoint_root(settings.data_root, "rlhf"),
                        **rlhf.pod_options(rlhf.command(settings.data_root)))
    guard = last.get("guard") or {}
    metadata = {**checkpoint_metadata(last), "guard": dg.MetadataValue.json(guard),
                "reward_checkpoint": last.get("reward_checkpoint") or ""}
    yield dg.MaterializeResult(metadata=metadata, check_results=[dg.AssetCheckResult(
        check_name="guard_quiet", passed=not guard.get("fired"),
        metadata={"reason": guard.get("reason") or "", "restored_step": guard.get("restored_step") or 0})])


RLHF_ASSETS = [preference_rankings, reward_model, rlhf_model]
