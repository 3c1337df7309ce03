"""The one configuration resource. Bad values fail when the config is loaded, with the field named."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from pipeline.langid import DEFAULT_THRESHOLD
from pipeline.minhash import MinHashConfig
from pipeline.remote import FetchPolicy
from pipeline.sources import COMMON_CRAWL_HTTPS, CrawlRegistry
from pipeline.storage import Store
from pipeline.url_lists import DEFAULT_CATEGORIES as DEFAULT_URL_CATEGORIES
from pipeline.url_lists import UT1_CATEGORIES
from pipeline.warc import DEFAULT_MAX_RECORD_BYTES

# Fraction of rows a stage may remove before its check warns: outside the band, something upstream changed
# (a new extractor, a crawl in another language) and a person should look.
DEFAULT_REMOVAL_BANDS = {
    "warc_records": (0.0, 0.5),
    "url_filtered": (0.0, 0.2),
    "extracted_text": (0.0, 0.3),
    "language_filtered": (0.0, 0.8),
    "quality_filtered": (0.0, 0.8),
    "deduplicated": (0.0, 0.5),
    "clean_documents": (0.0, 0.0),  # PII removal rewrites text; it never drops a document
}


class PipelineConfig(dg.ConfigurableResource):
    """Where data lives and how each data stage behaves."""

    data_root: str = Field(default="data", description="Local folder or s3://bucket/prefix for every output.")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, a test server).")
    aws_access_key_id: str | None = Field(default=None, description="Set as dg.EnvVar('AWS_ACCESS_KEY_ID').")
    aws_secret_access_key: str | None = Field(default=None, description="Set as dg.EnvVar('AWS_SECRET_ACCESS_KEY').")
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, gt=0)
    extractor: Literal["resiliparse_pruned", "resiliparse", "trafilatura"] = Field(
        default="resiliparse_pruned",
        description="resiliparse_pruned: resiliparse's main content with boilerplate cut (pipeline/boilerplate.py); "
        "resiliparse: its main-content mode alone (faster, more boilerplate); trafilatura: the optional extra.",
    )
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    language_threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    soft_word_threshold: int = Field(default=2, ge=1, description="Soft-banned URL words needed to drop a page.")
    url_categories: list[str] = Field(
        default_factory=lambda: list(DEFAULT_URL_CATEGORIES),
        description="URL filter categories, in the order their reasons win: adult (FineWeb's: UT1 + its word lists, "
        "from datatrove's wheel), gambling, malware, phishing (shipped word lists), or any UT1 category in url_lists.",
    )
    url_lists: str | None = Field(
        default=None,
        description="Folder or s3:// prefix of UT1-format lists ({category}/domains, {category}/urls) added to the "
        "categories' shipped ones.",
    )
    gopher_alpha_ratio_counts_punctuation: bool = Field(
        default=False,
        description="Gopher's alphabetic-word ratio over all tokens, punctuation included, as datatrove and FineWeb "
        "compute it (their exact decisions); False: over words, as the Gopher paper defines it, which keeps "
        "technical prose (bench/bench_filter_agreement.py).",
    )
    minhash_ngrams: int = Field(default=5, ge=1, description="Word n-gram size of the shingles (FineWeb: 5).")
    minhash_bands: int = Field(default=14, ge=1, description="LSH bands (FineWeb: 14).")
    minhash_rows: int = Field(default=8, ge=1, description="Rows a band (FineWeb: 8); permutations = bands x rows.")
    minhash_seed: int = 1
    dedup_memory_mb: int = Field(
        default=1024, ge=16, description="Memory budget of one duplicate_pairs step (a range of band hashes is read "
        "in spans whose rows fit it, ~64 bytes a row of a band) and of duplicate_clusters' join (edge files on local "
        "disk that each fit it, ~112 bytes an edge)."
    )
    pii_spacy_model: str | None = Field(default=None, description="An installed spaCy model for PERSON/LOCATION.")
    pii_score_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Presidio findings below it are kept.")
    tokenizer_vocab_size: int = Field(
        default=4096, ge=512, le=1 << 20, description="BPE vocabulary, special tokens included (32k-100k for real data)."
    )
    tokenizer_train_bytes: int = Field(default=2_000_000_000, ge=1, description="Clean text the tokenizer trains on.")
    tokenizer_crawls: list[str] | None = Field(
        default=None, description="Crawls whose clean text trains the tokenizer; all registered crawls if unset."
    )
    removal_bands: dict[str, list[float]] = Field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_REMOVAL_BANDS.items()})
    commoncrawl_base_url: str = Field(
        default=COMMON_CRAWL_HTTPS,
        description="Where Common Crawl dumps are read: https://data.commoncrawl.org/, s3://commoncrawl/ (signed with "
        "the AWS credentials; inside AWS) or a mirror's URL or folder. Recorded per crawl when it is added.",
    )
    fetch_attempts: int = Field(default=8, ge=1, description="Tries of a remote read before its file is recorded as failed.")
    fetch_max_seconds: float = Field(default=600.0, gt=0, description="Time one remote read may take, retries included.")
    fetch_backoff_seconds: float = Field(
        default=1.0, ge=0, description="First retry waits up to this, doubling each retry (full jitter, 60 s at most)."
    )

    @field_validator("languages")
    @classmethod
    def _languages_are_codes(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not v.isalpha() or not 2 <= len(v) <= 3]
        if bad:
            raise ValueError(f"languages must be ISO 639 codes like 'en', got {bad}")
        return value

    @field_validator("url_categories")
    @classmethod
    def _url_categories_are_known(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in UT1_CATEGORIES]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(
                f"url_categories must be distinct UT1 category names (e.g. adult, gambling, malware, phishing), got {value}"
            )
        return value

    @field_validator("removal_bands")
    @classmethod
    def _bands_are_ranges(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for stage, band in value.items():
            if len(band) != 2 or not 0.0 <= band[0] <= band[1] <= 1.0:
                raise ValueError(f"removal_bands[{stage!r}] must be [low, high] with 0 <= low <= high <= 1, got {band}")
        return value

    def storage_options(self, uri: str) -> dict:
        """fsspec options for a URI: this config's endpoint and credentials for S3 (signed requests; Common Crawl's
        bucket refuses anonymous ones), none for other URIs."""
        if not uri.startswith("s3://"):
            return {}
        options = {}
        if self.s3_endpoint_url:
            options["endpoint_url"] = self.s3_endpoint_url
        if self.aws_access_key_id:
            options["key"] = self.aws_access_key_id
            options["secret"] = self.aws_secret_access_key
        return options

    def store(self) -> Store:
        return Store(self.data_root, self.storage_options(self.data_root))

    def registry(self) -> CrawlRegistry:
        return CrawlRegistry(self.store(), self.storage_options, self.commoncrawl_base_url, self.fetch_policy())

    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(
            attempts=self.fetch_attempts, max_seconds=self.fetch_max_seconds, base_delay=self.fetch_backoff_seconds
        )

    def minhash_config(self) -> MinHashConfig:
        return MinHashConfig(
            n_grams=self.minhash_ngrams, bands=self.minhash_bands, rows=self.minhash_rows, seed=self.minhash_seed
        )

    def clean_sources(self, names: list[str] | None = None) -> tuple[dict[str, list[str]], list[str]]:
        """(crawl -> shard keys of clean text to read, crawls skipped as not yet cleaned).

        Named crawls (e.g. `tokenizer_crawls`) must be registered (KeyError naming one that is not) and are taken as
        they are; with no names, every registered crawl whose shards all have clean_documents takes part.
        """
        registry, store = self.registry(), self.store()
        sources, skipped = {}, []
        for name in names if names is not None else registry.names():
            keys = registry.get(name).shard_keys
            if names is None and not all(store.committed("clean_documents", name, k) for k in keys):
                skipped.append(name)
                continue
            sources[name] = keys
        return sources, skipped

    def band(self, stage: str) -> tuple[float, float]:
        low, high = self.removal_bands.get(stage, DEFAULT_REMOVAL_BANDS.get(stage, (0.0, 1.0)))
        return low, high
