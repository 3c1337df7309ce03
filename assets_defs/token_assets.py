"""The tokenizer (dataset-wide) and token_shards (crawl x shard). Thin: the work is in pipeline.token_io and
pipeline.tokenizer."""

import dagster as dg

from assets_defs.automation import once_when_every_shard_ready, when_upstream_updated_and_checks_passed
from assets_defs.partitions import crawl_shards
from assets_defs.resources import PipelineConfig
from assets_defs.stage_asset import per_shard_asset
from pipeline import token_io
from pipeline.storage import PartitionMissing
from pipeline.tokenizer import SPECIAL_TOKENS


@dg.asset(
    deps=["clean_documents"],
    group_name="tokens",
    kinds={"tiktoken"},
    automation_condition=once_when_every_shard_ready,
    description="Byte-level BPE (rustbpe) with GPT-4's split pattern and special tokens, trained on a sample of the "
    "clean text; saved for tiktoken and exported as a Hugging Face tokenizer.json.",
    check_specs=[
        dg.AssetCheckSpec("round_trip", asset="tokenizer", description="decode(encode(x)) == x on held-out docs.",
                          blocking=True),
        dg.AssetCheckSpec("has_training_text", asset="tokenizer",
                          description="Warns when the crawls held no clean text: the tokenizer is then bytes only."),
    ],
)
def tokenizer(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    try:
        sources, skipped = settings.clean_sources(settings.tokenizer_crawls)
        stats = token_io.train_tokenizer(
            settings.store(), sources, settings.tokenizer_vocab_size, settings.tokenizer_train_bytes
        )
    except (KeyError, PartitionMissing, ValueError) as e:
        raise dg.Failure(description=str(e.args[0] if isinstance(e, KeyError) else e)) from None
    tok, held_out = stats["tokenizer"], stats["held_out"]
    context.log.info(f"tokenizer: {tok.n_vocab} tokens from {stats['training_bytes']:,} bytes in {stats['seconds']} s")
    failures = [i for i, text in enumerate(held_out) if tok.decode(tok.encode(text)) != text]
    return dg.MaterializeResult(
        metadata={
            "vocab_size": tok.n_vocab,
            "training_bytes": stats["training_bytes"],
            "training_docs": stats["training_docs"],
            "training_seconds": stats["seconds"],
            "crawls": dg.MetadataValue.json({"used": sorted(sources), "skipped_not_clean": skipped}),
            "sha256": stats["sha256"],
            "special_tokens": dg.MetadataValue.json({t: tok.encode_special(t) for t in SPECIAL_TOKENS}),
            "compression": dg.MetadataValue.md(_compression_table(tok, held_out)),
            "longest_tokens": dg.MetadataValue.md(_longest_tokens(tok)),
            "path": dg.MetadataValue.path(settings.store().uri(token_io.TOKENIZER, token_io.ALL, token_io.ALL)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="round_trip",
                passed=not failures,
                metadata={"held_out_docs": len(held_out), "failures": len(failures)},
            ),
            dg.AssetCheckResult(
                check_name="has_training_text",
                passed=stats["training_docs"] > 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"training_docs": stats["training_docs"], "vocab_size": tok.n_vocab},
            ),
        ],
    )


def _compression_table(tok, held_out: list[str]) -> str:
    if not held_out:
        return "no held-out documents"
    rows = [
        f"| {label} | not available offline (skipped) |" if ratio is None else f"| {label} ({n_vocab:,}) | {ratio:.3f} |"
        for label, n_vocab, ratio in token_io.compression_table(tok, held_out)
    ]
    total = sum(len(t.encode()) for t in held_out)
    return f"held-out: {len(held_out)} docs, {total:,} bytes\n\n| tokenizer | bytes/token |\n|---|---:|\n" + "\n".join(rows)


def _longest_tokens(tok, n: int = 10) -> str:
    ids = sorted(range(tok.n_vocab - len(SPECIAL_TOKENS)), key=lambda i: (-len(tok.token_bytes(i)), i))[:n]
    return "| id | token |\n|---:|---|\n" + "\n".join(f"| {i} | `{tok.token_bytes(i)!r}` |" for i in ids)


@per_shard_asset(
    "token_shards",
    deps=["tokenizer", "clean_documents"],
    group_name="tokens",
    kinds={"tiktoken", "numpy"},
    automation_condition=when_upstream_updated_and_checks_passed,
    description="Each clean document as <|endoftext|> + its tokens, in little-endian uint16 (uint32 above 65,536 "
    "tokens) .bin files with an index of offsets and token counts.",
    check_specs=[
        dg.AssetCheckSpec("token_counts_positive", asset="token_shards", description="Every document has tokens.",
                          blocking=True, partitions_def=crawl_shards),
        dg.AssetCheckSpec("decodes_back", asset="token_shards",
                          description="Each part's first document decodes to its text.",
                          blocking=True, partitions_def=crawl_shards),
    ],
)
def token_shards(context, settings: PipelineConfig, crawl: str, shard: str) -> dg.MaterializeResult:
    store = settings.store()
    try:
        tok, sha = token_io.load_tokenizer(store)
        info = token_io.write_token_shard(store, crawl, shard, tok, sha)
    except PartitionMissing as e:
        raise dg.Failure(description=str(e)) from None
    stats = info["stats"]
    mismatches = token_io.decode_mismatches(store, crawl, shard, tok)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stats["documents"],
            "tokens": stats["tokens"],
            "bytes_per_token": round(stats["bytes"] / stats["tokens"], 3) if stats["tokens"] else None,
            "dtype": info["dtype"],
            "tokenizer_sha256": sha,
            "path": dg.MetadataValue.path(store.uri(token_io.TOKENS, crawl, shard)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="token_counts_positive",
                passed=stats["empty_documents"] == 0 and (stats["tokens"] > 0 or stats["documents"] == 0),
                metadata={"empty_documents": stats["empty_documents"], "tokens": stats["tokens"]},
            ),
            dg.AssetCheckResult(check_name="decodes_back", passed=not mismatches, metadata={"mismatches": str(mismatches)}),
        ],
    )


DATASET_ASSETS = [tokenizer]
TOKEN_ASSETS = [token_shards]
