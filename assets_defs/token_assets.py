"""The tokenizer (dataset-wide) and token_shards (crawl x shard). Thin: the work is in pipeline.token_io and
pipeline.tokenizer."""


import dagster as dg

from assets_defs.partitions import crawl_and_shard, crawl_shards
from assets_defs.resources import PipelineConfig
from pipeline import token_io
from pipeline.storage import PartitionMissing
from pipeline.tokenizer import SPECIAL_TOKENS, reference_encoding

REFERENCES = {"GPT-2 (r50k_base)": "r50k_base", "GPT-4 (cl100k_base)": "cl100k_base"}


@dg.asset(
    deps=["clean_documents"],
    group_name="tokens",
    kinds={"tiktoken"},
    description="Byte-level BPE (rustbpe) with GPT-4's split pattern and special tokens, trained on a sample of the "
    "clean text; saved for tiktoken and exported as a Hugging Face tokenizer.json.",
    check_specs=[dg.AssetCheckSpec("round_trip", asset="tokenizer", description="decode(encode(x)) == x on held-out docs.")],
)
def tokenizer(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    try:
        sources, skipped = settings.tokenizer_sources()
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
            )
        ],
    )


def _compression_table(tok, held_out: list[str]) -> str:
    """Bytes per token on the held-out documents: ours, and GPT-2's and GPT-4's when they load offline."""
    if not held_out:
        return "no held-out documents"
    total = sum(len(t.encode()) for t in held_out)
    rows = [f"| ours ({tok.n_vocab:,}) | {tok.compression(held_out):.3f} |"]
    for label, name in REFERENCES.items():
        enc = reference_encoding(name)
        if enc is None:
            rows.append(f"| {label} | not available offline (skipped) |")
        else:
            tokens = sum(len(x) for x in enc.encode_ordinary_batch(held_out))
            rows.append(f"| {label} ({enc.n_vocab:,}) | {total / tokens:.3f} |")
    return f"held-out: {len(held_out)} docs, {total:,} bytes\n\n| tokenizer | bytes/token |\n|---|---:|\n" + "\n".join(rows)


def _longest_tokens(tok, n: int = 10) -> str:
    ids = sorted(range(tok.n_vocab - len(SPECIAL_TOKENS)), key=lambda i: (-len(tok.token_bytes(i)), i))[:n]
    return "| id | token |\n|---:|---|\n" + "\n".join(f"| {i} | `{tok.token_bytes(i)!r}` |" for i in ids)


@dg.asset(
    deps=["tokenizer", "clean_documents"],
    partitions_def=crawl_shards,
    group_name="tokens",
    kinds={"tiktoken", "numpy"},
    description="Each clean document as <|endoftext|> + its tokens, in little-endian uint16 (uint32 above 65,536 "
    "tokens) .bin files with an index of offsets and token counts.",
    check_specs=[
        dg.AssetCheckSpec("token_counts_positive", asset="token_shards", description="Every document has tokens."),
        dg.AssetCheckSpec("decodes_back", asset="token_shards", description="Each part's first document decodes to its text."),
    ],
)
def token_shards(context: dg.AssetExecutionContext, settings: PipelineConfig) -> dg.MaterializeResult:
    crawl, shard = crawl_and_shard(context)
    store = settings.store()
    try:
        tok, sha = token_io.load_tokenizer(store)
        info = token_io.write_token_shard(store, crawl, shard, tok, sha)
    except PartitionMissing as e:
        raise dg.Failure(description=str(e)) from None
    stats = info["stats"]
    mismatches = _decode_mismatches(store, crawl, shard, tok)
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


def _decode_mismatches(store, crawl: str, shard: str, tok) -> list[str]:
    """Reads back what was committed: the first document of each part, decoded, must equal its clean text."""
    bad = []
    for part in store.parts(token_io.TOKENS, crawl, shard):
        index = store.read_part(token_io.TOKENS, crawl, shard, part)
        if not index.height:
            continue
        tokens = token_io.read_tokens(store, crawl, shard, part)
        offset, count, doc_id = index["offset"][0], index["token_count"][0], index["id"][0]
        clean = store.read_part("clean_documents", crawl, shard, part)
        text = clean.filter(clean["id"] == doc_id)["text"][0]
        if tokens[offset - 1] != tok.eot_id or tok.decode(tokens[offset : offset + count].tolist()) != text:
            bad.append(doc_id)
    return bad


DATASET_ASSETS = [tokenizer]
TOKEN_ASSETS = [token_shards]
