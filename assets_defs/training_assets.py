"""base_model: pretraining launched through Dagster Pipes; every checkpoint it writes is recorded as a
materialization. The training loop lives in training/pretrain.py and never imports dagster."""

import base64
import io
import math
import sys

import dagster as dg
from pydantic import Field, field_validator

from assets_defs.launchers import torchrun
from assets_defs.resources import PipelineConfig
from training.checkpoint import checkpoint_root


class TrainingJob(dg.ConfigurableResource):
    """What every training stage's settings share: how many processes, and where they run when the launcher is a
    pod."""

    nproc: int = Field(default=1, ge=1, description="Processes (torchrun): GPUs on a GPU node, 1 on a laptop.")
    nnodes: int = Field(default=1, ge=1, description=(
        "Pods of nproc GPUs each; above 1, torchrun across pods (CRAWL2CHAT_PIPES=k8s and an image)."))
    image: str | None = Field(default=None, description="Container image, for a pod launcher (CRAWL2CHAT_PIPES=k8s).")
    env_secrets: list[str] = Field(default=["crawl2chat-aws"], description=(
        "Kubernetes secrets the pods take their environment from: the S3 credentials (infra/helm/values.yaml)."))

    def script(self, module: str, data_root: str, flags: dict) -> list[str]:
        """`python -m module --data data_root --flag value ...`, the way every training script is started (a True
        flag stands alone, a False one is left out); under torchrun when nproc or nnodes > 1."""
        launcher = [sys.executable] if self.nproc == self.nnodes == 1 else torchrun(self.nproc, self.nnodes)
        args = [x for k, v in flags.items() if v is not False for x in ((f"--{k}",) if v is True else (f"--{k}", str(v)))]
        return [*launcher, "-m", module, "--data", data_root, *args]

    def pod_options(self, command: list[str]) -> dict:
        """Keyword arguments of the Pipes client's run(): the command, plus for a pod its image, nproc GPUs and
        secrets, and nnodes when there are several (PipesK8sNodesClient, assets_defs/k8s.py)."""
        options: dict = {"command": command}
        if self.nnodes > 1 and not self.image:
            raise ValueError(f"nnodes={self.nnodes} runs on Kubernetes pods: set image (and CRAWL2CHAT_PIPES=k8s)")
        if self.image:
            options.update(image=self.image, base_pod_spec={"containers": [
                {"name": "train", "resources": {"limits": {"nvidia.com/gpu": self.nproc}},
                 "envFrom": [{"secretRef": {"name": secret}} for secret in self.env_secrets]}]})
        if self.nnodes > 1:
            options["nnodes"] = self.nnodes
        return options


class PretrainConfig(TrainingJob):
    """The pretraining run's shape. Defaults: a CPU toy (depth 4, 5M parameters) that takes ~20 s on the sample."""

    depth: int = Field(default=4, ge=1, le=64, description="The one size dial: width = 64 x depth.")
    seq_len: int = Field(default=128, ge=8)
    batch_size: int = Field(default=8, ge=1, description="Sequences a micro-batch, per process.")
    grad_accum: int = Field(default=1, ge=1)
    max_steps: int = Field(default=200, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    optimizer: str = Field(default="adamw", pattern="^(adamw|muon)$", description="muon: Muon on the blocks' matrices.")
    tie_embeddings: bool = Field(default=False, description=(
        "The output head shares the input embedding: small models learn to copy from their context far sooner."))
    smear_keys: bool = Field(default=False, description=(
        "Each attention head mixes the previous token's key into each key: a small model learns to copy from its "
        "context (icl_gain) in hundreds of steps."))
    qk_conv: int = Field(default=0, ge=0, le=8, description=(
        "Taps of a causal depthwise convolution over time on attention's queries and keys (Primer's), 0 = none: "
        "with 3, one layer matches two tokens of context, so copies from the context jump less."))
    repeat_frac: float = Field(default=0.0, ge=0.0, le=1.0, description=(
        "Share of training rows that show a stretch of themselves again further on: copying pays from the first "
        "steps, so a small model learns to copy from its context (icl_gain) on a CPU budget."))
    eval_every: int = Field(default=50, ge=1)
    checkpoint_every: int = Field(default=100, ge=1)
    device: str = Field(default="auto", pattern="^(auto|cpu|cuda)$")
    checkpoint_root: str | None = Field(default=None, description="Default: {data_root}/checkpoints/base.")

    @field_validator("qk_conv")
    @classmethod
    def _taps(cls, value: int) -> int:
        if value == 1:
            raise ValueError("qk_conv is 0 (none) or 2 or more taps: 1 tap mixes nothing")
        return value

    def command(self, data_root: str, out: str) -> list[str]:
        return self.script("training.pretrain", data_root, {
            "out": out, "depth": self.depth, "seq-len": self.seq_len, "batch-size": self.batch_size,
            "grad-accum": self.grad_accum, "max-steps": self.max_steps, "lr": self.lr,
            "warmup-steps": self.warmup_steps, "optimizer": self.optimizer, "repeat-frac": self.repeat_frac,
            "eval-every": self.eval_every, "tie-embeddings": self.tie_embeddings, "smear-keys": self.smear_keys,
            "qk-conv": self.qk_conv, "checkpoint-every": self.checkpoint_every, "device": self.device})

    def launch_options(self, data_root: str, out: str) -> dict:
        return self.pod_options(self.command(data_root, out))


@dg.asset(
    deps=["token_shards"],
    group_name="training",
    kinds={"pytorch"},
    description="GPT pretraining on the token shards (torchrun through Dagster Pipes); each checkpoint is a "
    "materialization with its step, tokens seen, losses, samples and loss curve.",
    check_specs=[
        dg.AssetCheckSpec("loss_finite", asset="base_model", blocking=True),
        dg.AssetCheckSpec("beats_unigram", asset="base_model", description="val loss below the data's unigram entropy",
                          blocking=True),
        dg.AssetCheckSpec("still_improving", asset="base_model",
                          description="the last evaluation's val loss is below the one before it"),
    ],
)
def base_model(
    context: dg.AssetExecutionContext, settings: PipelineConfig, pretrain: PretrainConfig,
    pipes: dg.ResourceParam[dg.PipesClient],
):
    out = pretrain.checkpoint_root or checkpoint_root(settings.data_root)
    last = run_training(context, pipes, out, **pretrain.launch_options(settings.data_root, out))
    val, unigram = last.get("val_loss"), last.get("unigram_loss")
    yield dg.MaterializeResult(
        metadata=checkpoint_metadata(last),
        check_results=[
            dg.AssetCheckResult(check_name="loss_finite", passed=all(
                math.isfinite(h["train_loss"]) for h in last.get("history", [])) and math.isfinite(last["train_loss"])),
            dg.AssetCheckResult(check_name="beats_unigram", passed=val is not None and unigram is not None and val < unigram,
                                metadata={"val_loss": val, "unigram_loss": unigram}),
            still_improving(last.get("history") or []),
        ],
    )


def still_improving(history: list[dict]) -> dg.AssetCheckResult:
    """Passes when the last val loss is below the previous evaluation's (or there is only one evaluation)."""
    evals = [(h["step"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if len(evals) < 2:
        return dg.AssetCheckResult(check_name="still_improving", passed=True,
                                   metadata={"evaluations": len(evals)})
    (before_step, before), (step, now) = evals[-2:]
    return dg.AssetCheckResult(check_name="still_improving", passed=now < before, metadata={
        "val_loss": now, "step": step, "previous_val_loss": before, "previous_step": before_step})


def run_training(context: dg.AssetExecutionContext, pipes: dg.PipesClient, out: str, **launch) -> dict:
    """Runs a training script through Pipes and records each checkpoint it reports but the last as a
    materialization of the asset; returns the last report, for the asset's own result and checks."""
    invocation = pipes.run(context=context, **launch)
    checkpoints = [m for m in invocation.get_custom_messages() if isinstance(m, dict) and "checkpoint" in m]
    if not checkpoints:
        raise dg.Failure(description=f"training reported no checkpoint under {out}")
    for report in checkpoints[:-1]:
        context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, metadata=checkpoint_metadata(report)))
    return checkpoints[-1]


def checkpoint_metadata(report: dict) -> dict:
    """A checkpoint report (pretraining's or a later stage's) as materialization metadata; absent keys are left out."""
    samples = "\n\n".join(f"> {s}" for s in report.get("samples") or []) or "none"
    metadata = {
        "checkpoint": dg.MetadataValue.path(report["checkpoint"]),
        "step": report["step"],
        "tokens_seen": report.get("tokens_seen"),
        "train_loss": report.get("train_loss"),
        "reward": report.get("reward"),  # RL: mean reward of the sampled replies since the last checkpoint
        "val_loss": report.get("val_loss"),
        "val_bpb": report.get("val_bpb"),
        "unigram_loss": report.get("unigram_loss"),
        "icl_gain": report.get("icl_gain"),  # nats/token better on a repeated sequence: few-shot readiness
        "finished": report.get("finished"),  # SFT: held-out replies that end their turn (the chat format)
        "base_checkpoint": report.get("base_checkpoint"),
        "conversations": report.get("conversations"),
        "pairwise_accuracy": report.get("pairwise_accuracy"),  # reward model: held-out pairs ordered right
        "margin": report.get("margin"),
        "samples": dg.MetadataValue.md(samples),
    }
    for key in ("accuracy", "start_accuracy", "pass_at_k", "sampled_pass_at_1", "accuracy_by_kind", "pairs",
                "token_shards"):  # token_shards: pretraining's data, crawl/shard (the lineage `crawl2chat trace` prints)
        if report.get(key):
            metadata[key] = dg.MetadataValue.json(report[key])
    history = report.get("history") or []
    evaluated = [h for h in history if "eval_reply_tokens" in h]
    if evaluated:  # RL: the held-out figures of the last evaluation and the first (the SFT start)
        metadata["eval_reply_tokens"] = evaluated[-1]["eval_reply_tokens"]
        metadata["pass_k"] = evaluated[-1].get("pass_k")  # RL; RLHF samples no pass@k
        metadata["pass_at_1_mean"] = evaluated[-1]["pass_at_1"]
        metadata["start_pass_at_1_mean"] = evaluated[0]["pass_at_1"]
        metadata["sampled_pass_at_1_mean"] = evaluated[-1].get("sampled_pass_at_1_mean")
        metadata["start_sampled_pass_at_1_mean"] = evaluated[0].get("sampled_pass_at_1_mean")
    for name, lines, ylabel in (("loss_curve", LOSS_LINES, "loss (nats/token)"), ("reward_curve", REWARD_LINES,
                                                                                  "reward"),
                                ("accuracy_curve", ACCURACY_LINES, "held-out share solved"),
                                ("pairwise_curve", PAIRWISE_LINES, "held-out pairs ordered right")):
        if any(h.get(lines[0][0]) is not None for h in history):
            png = base64.b64encode(curve_png(history, lines, ylabel)).decode()
            metadata[name] = dg.MetadataValue.md(f"![{name.split('_')[0]}](data:image/png;base64,{png})")
    return {k: v for k, v in metadata.items() if v is not None}


LOSS_LINES = (("train_loss", "train", "-"), ("val_loss", "val", "o-"))
REWARD_LINES = (("reward", "mean reward of the sampled replies", "-"),
                ("rm_reward", "RLHF: the reward model's score, before the KL and length terms", "-"))
PAIRWISE_LINES = (("pairwise_accuracy", "reward model: r(chosen) > r(rejected)", "o-"),
                  ("train_accuracy", "train batch", "-"))
ACCURACY_LINES = (("pass_at_1", "pass@1 (greedy), mean over tasks", "o-"),
                  ("sampled_pass_at_1_mean", "pass@1 (sampled), mean over tasks", "o-"),
                  ("pass_at_k_mean", "pass@k (sampled), mean over tasks", "o-"))


def curve_png(history: list[dict], lines: tuple[tuple[str, str, str], ...], ylabel: str) -> bytes:
    """A line a (history key, label, style), over the steps whose entries have that key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for key, label, style in lines:
        points = [h for h in history if h.get(key) is not None]
        if points:
            ax.plot([h["step"] for h in points], [h[key] for h in points], style, label=label, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


TRAINING_ASSETS = [base_model]
