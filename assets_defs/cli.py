"""`crawl2chat`: run the asset graph in-process over a crawl, register crawls, open the UI.

Runs are recorded in DAGSTER_HOME (./.dagster_home when unset), so `crawl2chat ui` shows them with their lineage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

console = Console()
DEFAULT_DATA_ROOT = "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crawl2chat", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize the graph for every shard of a crawl and print the funnel")
    run.add_argument("--source", help="folder, s3:// prefix or warc.paths.gz listing (default: the bundled sample)")
    run.add_argument("--crawl", help="crawl name (default: 'sample', or the source's folder name)")
    _common(run)
    run.add_argument("--until", default=None, help="last asset to materialize (default: the last data asset)")
    run.add_argument("--files-per-shard", type=int, default=None)

    crawl = sub.add_parser("crawl", help="manage registered crawls")
    crawl_sub = crawl.add_subparsers(dest="crawl_command", required=True)
    add = crawl_sub.add_parser("add", help="register a crawl source and its shards")
    add.add_argument("name", help="crawl name; a Common Crawl dump id (CC-MAIN-2024-10) alone adds that dump")
    add.add_argument("source", nargs="?", help="folder, s3:// prefix, warc.paths.gz listing or CC-MAIN-YYYY-WW dump")
    add.add_argument("--files-per-shard", type=int, default=None)
    add.add_argument(
        "--base-url",
        default=None,
        help="where a dump's listing and WARC files are read: https://data.commoncrawl.org/ (default), "
        "s3://commoncrawl/ (signed with your AWS credentials) or a mirror; overrides commoncrawl_base_url",
    )
    _common(add)
    listing = crawl_sub.add_parser("list", help="list registered crawls")
    _common(listing)

    tok = sub.add_parser("tokenize", help="show how the trained tokenizer cuts a text: ids and byte pieces")
    tok.add_argument("text")
    _common(tok)

    trace = sub.add_parser("trace", help="a document's path back to its WARC record and each stage's decision, or a "
                           "checkpoint's back to the checkpoints, tokenizer, token shards and crawls it came from")
    trace.add_argument("target", help="a document id (<urn:uuid:...>) or a checkpoint folder (checkpoints/rl, or "
                       "checkpoints/rl/step-000020; relative to --data unless absolute or s3://)")
    trace.add_argument("--json", action="store_true", help="print the trace as JSON")
    _common(trace)

    from assets_defs import cli_models

    cli_models.add_parsers(sub, _common)

    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", default="3000")

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "crawl":
            return cmd_crawl(args)
        if args.command == "tokenize":
            return cmd_tokenize(args)
        if args.command == "trace":
            return cmd_trace(args)
        if args.command in ("generate", "chat", "serve", "label", "export"):
            from assets_defs import cli_models

            return getattr(cli_models, f"cmd_{args.command}")(args, load_config)
        return cmd_ui(args)
    except (ValidationError, FileNotFoundError, NotADirectoryError, KeyError, ValueError) as e:
        console.print(f"[red]error:[/red] {_message(e)}")
        return 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help=f"storage root, local or s3:// (default: {DEFAULT_DATA_ROOT})")
    p.add_argument("--config", default=None, help="YAML file of PipelineConfig fields")


def _message(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "bad config: " + "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


TRAINING_SECTIONS = ("pretrain", "probe", "sft", "rl", "preferences", "reward", "rlhf")  # sections of --config beside PipelineConfig's fields


def load_config(config_file: str | None, data: str | None):
    """PipelineConfig from a YAML file and flags; unknown or bad fields fail here, named."""
    from assets_defs.resources import PipelineConfig

    fields = {}
    if config_file:
        fields = yaml.safe_load(Path(config_file).read_text()) or {}
        if not isinstance(fields, dict):
            raise ValueError(f"{config_file}: expected a mapping of PipelineConfig fields")
        for section in TRAINING_SECTIONS:  # read by load_section
            fields.pop(section, None)
        unknown = sorted(set(fields) - set(PipelineConfig.model_fields))
        if unknown:
            raise ValueError(f"{config_file}: unknown config field(s) {unknown}")
    fields["data_root"] = data or fields.get("data_root") or os.environ.get("CRAWL2CHAT_DATA_ROOT", DEFAULT_DATA_ROOT)
    os.environ["CRAWL2CHAT_DATA_ROOT"] = fields["data_root"]  # so the UI, started from here, finds the same data
    return PipelineConfig(**fields)


def _instance():
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():  # a new home: keep everything local and say nothing to the network
        settings.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


def load_section(config_file: str | None, section: str):
    """The resource of a training section of the YAML file (TRAINING_SECTIONS: `pretrain:`, `sft:`, ...); defaults:
    the CPU toy."""
    from assets_defs.chat_assets import ProbeConfig, RLConfig, SFTConfig
    from assets_defs.rlhf_assets import PreferenceConfig, RewardConfig, RLHFConfig
    from assets_defs.training_assets import PretrainConfig

    fields = (yaml.safe_load(Path(config_file).read_text()) or {}).get(section, {}) if config_file else {}
    return {"pretrain": PretrainConfig, "probe": ProbeConfig, "sft": SFTConfig, "rl": RLConfig,
            "preferences": PreferenceConfig, "reward": RewardConfig, "rlhf": RLHFConfig}[section](**fields)


def cmd_run(args) -> int:
    from assets_defs.graph import ASSET_ORDER
    from assets_defs.partitions import register_partitions
    from pipeline.funnel import FUNNEL_STAGES, funnel
    from pipeline.sources import SAMPLE_CRAWL, SAMPLE_SOURCE

    config = load_config(args.config, args.data)
    sections = {s: load_section(args.config, s) for s in TRAINING_SECTIONS}  # checked before any work starts
    registry = config.registry()
    name = args.crawl or (Path(args.source.rstrip("/")).name.split(".")[0] if args.source else SAMPLE_CRAWL)
    if args.source or name == SAMPLE_CRAWL:
        crawl, _ = registry.add(name, args.source or SAMPLE_SOURCE, args.files_per_shard)
    else:
        registry.discover(name)
        crawl = registry.get(name)
    until = args.until or ASSET_ORDER[-1]
    if until not in ASSET_ORDER:
        raise ValueError(f"--until must be one of {ASSET_ORDER}, got {until!r}")
    instance = _instance()
    register_partitions(instance, crawl.name, crawl.shard_keys)
    from assets_defs.launchers import pipes_client

    resources = {"settings": config, **sections,
                 "pipes": pipes_client(os.environ.get("CRAWL2CHAT_PIPES", "subprocess"))}
    failed = materialize_crawl(instance, resources, crawl, ASSET_ORDER[: ASSET_ORDER.index(until) + 1])
    stages = [s for s in FUNNEL_STAGES if s in ASSET_ORDER[: ASSET_ORDER.index(until) + 1]]
    print_funnel(funnel(config.store(), crawl.name, crawl.shard_keys, tuple(stages)), crawl.name)
    print_training(config.store(), crawl, ASSET_ORDER[: ASSET_ORDER.index(until) + 1], resources["pretrain"])
    console.print(f"outputs in {config.store().uri()}; runs in DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed:[/red] {failed} (see the runs in the UI)")
        return 1
    return 0


def materialize_crawl(instance, resources: dict, crawl, names: list[str]) -> list[str]:
    """Runs each phase of the graph over the crawl, one in-process run per partition; returns the failed ones.

    A phase runs only if the one before it succeeded everywhere: a crawl-level step needs every shard.
    """
    import dagster as dg
    from tqdm import tqdm

    from assets_defs.graph import PHASES
    from assets_defs.partitions import partition_key, range_key
    from pipeline.dedup_io import range_keys

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for phase in PHASES:
        assets = [a for a in phase.assets if a.key.to_user_string() in names]
        if not assets:
            break
        if phase.per == "shard":
            keys = [(shard, partition_key(crawl.name, shard)) for shard in crawl.shard_keys]
        elif phase.per == "range":
            keys = [(r, range_key(crawl.name, r)) for r in range_keys()]
        else:
            keys = [(crawl.name, crawl.name)] if phase.per == "crawl" else [("dataset", None)]
        failed = []
        asset_names = [a.key.to_user_string() for a in assets]
        label = f"{crawl.name}: {asset_names[0]}" + (f"..{asset_names[-1]}" if len(asset_names) > 1 else "")
        for label_key, key in tqdm(keys, desc=label, unit=phase.per):
            result = dg.materialize(  # earlier phases' assets are upstream sources here, already materialized
                assets,
                partition_key=key,
                instance=instance,
                resources=resources,
                run_config=quiet,
                raise_on_error=False,
            )
            if not result.success:
                failed.append(label_key)
        if failed:
            return failed
    return []


def print_funnel(rows, crawl: str) -> None:
    table = Table(title=f"crawl {crawl}: documents surviving each stage")
    for col in ("stage", "docs in", "docs out", "kept", "MB out"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    drops = Table(title="dropped, by stage and reason")
    for col in ("stage", "reason", "docs"):
        drops.add_column(col, justify="right" if col == "docs" else "left")
    for r in rows:
        kept = f"{r.rows_out / r.rows_in:.0%}" if r.rows_in else "-"
        table.add_row(r.stage, str(r.rows_in), str(r.rows_out), kept, f"{r.bytes_out / 1e6:.2f}")
        for reason, count in r.drops.most_common():
            drops.add_row(r.stage, reason, str(count))
    console.print(table)
    console.print(drops)


def print_training(store, crawl, names: list[str], pretrain) -> None:
    """One line each for the tokens and the latest checkpoint, when the run went that far."""
    from pipeline.storage import PartitionMissing
    from pipeline.token_io import ALL, TOKENIZER, TOKENS
    from training.checkpoint import checkpoint_root, read_config

    try:
        if "token_shards" in names:
            tokenizer = store.manifest(TOKENIZER, ALL, ALL)["stats"]
            stats = [store.manifest(TOKENS, crawl.name, s)["stats"] for s in crawl.shard_keys]
            tokens, nbytes = sum(s["tokens"] for s in stats), sum(s["bytes"] for s in stats)
            console.print(f"token_shards: {tokens:,} tokens, {nbytes / max(tokens, 1):.2f} bytes/token "
                          f"(tokenizer: {tokenizer['vocab_size']:,} ids)")
        if "base_model" in names:
            root = pretrain.checkpoint_root or checkpoint_root(store.root)
            info = read_config(root, storage_options=store.storage_options)
            console.print(f"base_model: step {info['step']}, {info['tokens_seen']:,} tokens seen, val loss "
                          f"{info['val_loss']:.3f} (unigram {info['unigram_loss']:.3f}), val bpb {info['val_bpb']:.3f}; "
                          f"try `crawl2chat generate --prompt \"...\"`")
        if "knowledge_probe" in names:
            from training.knowledge_probe import KNOWLEDGE_PROBE

            rates = store.manifest(KNOWLEDGE_PROBE, ALL, ALL)["rates"]
            console.print(f"knowledge_probe: {rates['questions']} questions from the documents' definitions; the "
                          f"base model knows {rates['known']}, not {rates['unknown']} (uncertain {rates['uncertain']}); "
                          "the unknown ones become \"I don't know\" conversations")
        if "sft_model" in names:
            info = read_config(checkpoint_root(store.root, "sft"), storage_options=store.storage_options)
            accuracy = ", ".join(f"{k} {v:.0%}" for k, v in info["accuracy"].items())
            console.print(f"sft_model: step {info['step']}, held-out accuracy: {accuracy}; try `crawl2chat chat`")
        if "rl_model" in names:
            info = read_config(checkpoint_root(store.root, "rl"), storage_options=store.storage_options)
            accuracy = ", ".join(f"{k} {info['start_accuracy'][k]:.0%} -> {v:.0%}" for k, v in info["accuracy"].items())
            console.print(f"rl_model: step {info['step']}, reward {info['reward']:.2f}, held-out accuracy (SFT -> RL): "
                          f"{accuracy}; try `crawl2chat chat`")
        if "reward_model" in names:
            info = read_config(checkpoint_root(store.root, "reward"), storage_options=store.storage_options)
            by_kind = ", ".join(f"{k} {v:.0%}" for k, v in info["accuracy_by_kind"].items())
            console.print(f"reward_model: step {info['step']}, held-out pairs ordered right "
                          f"{info['pairwise_accuracy']:.0%} ({by_kind})")
        if "rlhf_model" in names:
            info = read_config(checkpoint_root(store.root, "rlhf"), storage_options=store.storage_options)
            accuracy = ", ".join(f"{k} {info['start_accuracy'][k]:.0%} -> {v:.0%}" for k, v in info["accuracy"].items())
            guard = info["guard"]
            verdict = (f"the guard stopped it: {guard['reason']} (kept step {guard['restored_step']})"
                       if guard["fired"] else "the guard stayed quiet")
            console.print(f"rlhf_model: step {info['step']}, reward {info['reward']:.2f}, held-out accuracy "
                          f"(SFT -> RLHF): {accuracy}; {verdict}")
    except (PartitionMissing, FileNotFoundError, KeyError, TypeError):
        return  # a failed run: its failure is reported below


def cmd_trace(args) -> int:
    from pipeline.trace import as_json, trace_document

    config = load_config(args.config, args.data)
    store = config.store()
    target = args.target
    if target.startswith("<urn:") or not ("checkpoints" in target or target.rstrip("/").split("/")[-1].startswith(
            "step-")):
        registry = config.registry()
        crawls = {name: registry.get(name).shard_keys for name in registry.names()}
        trace = trace_document(store, crawls, target)
        if args.json:
            print(as_json(trace))
            return 0
        record = trace["record"]
        console.print(f"{trace['id']}\n  {record['url']} ({record['date']})\n  WARC {record['file_path']} at byte "
                      f"{record['offset']} (crawl {trace['crawl']}, shard {trace['shard']})", highlight=False)
        for s in trace["stages"]:
            why = f": {s['reason']}" + (f" ({s['detail']})" if s.get("detail") else "") if s.get("reason") else ""
            pii = (", PII redacted: " + (", ".join(f"{k} x{n}" for k, n in s["pii_redacted"].items()) or "none")
                   if "pii_redacted" in s else "")
            console.print(f"  {s['stage']:<18} {s['decision']}{why}{pii}", highlight=False)
        return 0
    from training.lineage import trace_checkpoint

    root = target if target.startswith(("/", "s3://")) or os.path.exists(target) else f"{config.data_root}/{target}"
    name = root.rstrip("/").split("/")[-1]
    step = int(name.removeprefix("step-")) if name.startswith("step-") else None
    root = root.rstrip("/").rsplit("/", 1)[0] if step is not None else root
    chain = trace_checkpoint(root, step, config.storage_options(root), config.data_root)
    if args.json:
        print(as_json(chain))
        return 0
    for depth, c in enumerate(chain):
        console.print(f"{'  ' * depth}{c['stage']} step {c['step']}: {c['checkpoint']}", highlight=False)
        if c.get("reward_checkpoint"):
            console.print(f"{'  ' * depth}  scored by the reward model {c['reward_checkpoint']}", highlight=False)
        if c.get("token_shards"):
            console.print(f"{'  ' * depth}  trained on {len(c['token_shards'])} token shard(s) of crawl(s) "
                          f"{', '.join(c['crawls'])}: {', '.join(c['token_shards'])}", highlight=False)
        tok = c.get("tokenizer")
        console.print(f"{'  ' * depth}  tokenizer sha256 {str(c['tokenizer_sha256'])[:16]}"
                      + (f" = {tok['uri']} ({tok.get('vocab_size', '?')} ids)" if tok else ""), highlight=False)
    return 0


def cmd_crawl(args) -> int:
    from assets_defs.partitions import register_partitions
    from pipeline.remote import FetchFailed
    from pipeline.sources import is_common_crawl_dump

    config = load_config(args.config, args.data)
    for section in TRAINING_SECTIONS:  # checked before any work starts
        load_section(args.config, section)
    registry = config.registry()
    if args.crawl_command == "add":
        source = args.source or (args.name if is_common_crawl_dump(args.name) else None)
        if source is None:
            raise ValueError(f"crawl {args.name!r} needs a source (only a CC-MAIN-YYYY-WW dump id can stand alone)")
        try:
            crawl, new = registry.add(args.name, source, args.files_per_shard, base=args.base_url)
        except FetchFailed as e:  # the listing could not be fetched, retries included
            console.print(f"[red]error:[/red] {e}")
            return 2
        register_partitions(_instance(), crawl.name, crawl.shard_keys)
        where = f", read from {crawl.base}" if crawl.listed else ""
        console.print(f"crawl {crawl.name}: {len(crawl.shards)} shard(s), {len(new)} new, source {crawl.source}{where}")
        return 0
    for name in registry.names():
        crawl = registry.get(name)
        files = sum(len(s) for s in crawl.shards)
        where = f"\t{crawl.base}" if crawl.listed else ""
        print(f"{name}\t{len(crawl.shards)} shards\t{files} files\t{crawl.source}{where}")
    return 0


def cmd_tokenize(args) -> int:
    """The seeds' tokenizer viewer: the text with each token shaded apart, then each token's id and bytes."""
    from rich.text import Text

    from pipeline.storage import PartitionMissing
    from pipeline.token_io import load_tokenizer

    config = load_config(args.config, args.data)
    try:
        tok, sha = load_tokenizer(config.store())
    except PartitionMissing:
        raise ValueError(f"no tokenizer in {config.store().uri()}: run `crawl2chat run --until tokenizer` first") from None
    pieces = tok.pieces(args.text)
    shaded, pending, shade = Text(), b"", 0
    for _, piece in pieces:  # a character cut across tokens (an emoji in byte tokens) is shown once, whole
        pending += piece
        try:
            shaded.append(pending.decode("utf-8"), style="on grey23" if shade % 2 else "on dark_blue")
        except UnicodeDecodeError:
            continue
        pending, shade = b"", shade + 1
    shaded.append(pending.decode("utf-8", "replace"))
    console.print(shaded)
    console.print(f"{len(pieces)} tokens, {len(args.text.encode())} bytes (tokenizer {sha[:12]}, {tok.n_vocab} ids)")
    table = Table()
    for col in ("#", "id", "piece"):
        table.add_column(col, justify="left" if col == "piece" else "right")
    for i, (token_id, piece) in enumerate(pieces):
        table.add_row(str(i), str(token_id), repr(piece)[2:-1])
    console.print(table)
    return 0


WORKSPACE = """# written by `crawl2chat ui`: the project's Definitions as the code location `crawl2chat`
load_from:
  - python_module:
      module_name: assets_defs.definitions
      location_name: crawl2chat
"""


def cmd_ui(args) -> int:
    instance = _instance()
    workspace = Path(instance.root_directory) / "workspace.yaml"  # from any folder, the location keeps its name
    workspace.write_text(WORKSPACE)
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", args.port]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
