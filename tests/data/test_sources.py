import unicodedata

import pytest

from lightningllm.data import sources
from lightningllm.data.sources import (
    CleaningReport,
    DataError,
    iter_documents,
    resolve_sources,
    split_of_document,
)


def read_all(paths, field="text"):
    """Cleaned documents as plain strings (segments joined) and the cleaning report."""
    report = CleaningReport()
    docs = iter_documents(resolve_sources([str(p) for p in paths]), field, report)
    return ["".join(doc.text_chunks()) if doc.is_plain else doc.segments for doc in docs], report


def test_files_folders_and_globs_are_expanded(text_corpus):
    files = resolve_sources([str(text_corpus)])
    assert len(files) == 26 and any(f.suffix == ".md" for f in files)
    assert resolve_sources([str(text_corpus / "doc0*.txt")]) == sorted(text_corpus.glob("doc0*.txt"))


@pytest.mark.parametrize(
    "source, message",
    [("missing_dir", "does not exist"), ("*.nomatch", "matches no")],
)
def test_missing_paths_and_empty_globs_name_the_source(tmp_path, source, message):
    with pytest.raises(DataError, match=message):
        resolve_sources([str(tmp_path / source)])


def test_malformed_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"text": broken}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:3: malformed JSON"):
        read_all([bad])


def test_jsonl_record_without_the_field_names_the_field(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: record has no 'text' field"):
        read_all([bad])
    bad.write_text('{"text": "fine"}\n["a list"]\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: a record must be a JSON object"):
        read_all([bad])
    bad.write_text('{"text": 3}\n')
    with pytest.raises(DataError, match=r"x.jsonl:1: field 'text' is not a string"):
        read_all([bad])


def test_configurable_jsonl_field(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"body": "one"}\n{"body": "two"}\n')
    docs, _ = read_all([path], field="body")
    assert docs == ["one", "two"]


def test_binary_file_is_rejected(tmp_path):
    binary = tmp_path / "weights.txt"
    binary.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(DataError, match="binary"):
        read_all([binary])


def test_cleaning_replaces_undecodable_bytes_dedupes_and_drops_empty(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 ok \xff\xfe end")
    (tmp_path / "b.txt").write_text("same text")
    (tmp_path / "c.txt").write_text("same text")
    (tmp_path / "d.txt").write_text("  \n\t ")
    (tmp_path / "e.txt").write_text("cafe\u0301")  # decomposed é becomes NFC
    docs, report = read_all([tmp_path])
    assert docs == ["caf\ufffd ok \ufffd\ufffd end", "same text", "caf\u00e9"]
    assert report.undecodable_bytes_replaced == 3
    assert (report.documents_read, report.documents_kept) == (5, 3)
    assert (report.dropped_duplicate, report.dropped_empty) == (1, 1)
    assert "dropped 1 empty, 1 duplicate" in report.summary()


def test_split_is_deterministic_and_roughly_the_fractions():
    docs = [f"document number {i}" for i in range(2000)]
    splits = [split_of_document(d, 0.1, 0.05) for d in docs]
    assert splits == [split_of_document(d, 0.1, 0.05) for d in docs]
    assert 150 < splits.count("val") < 250 and 50 < splits.count("test") < 150
    two_way = [split_of_document(d, 0.1) for d in docs]  # no test fraction: the same validation documents
    assert "test" not in two_way and [s == "val" for s in two_way] == [s == "val" for s in splits]


def test_a_large_file_is_streamed_in_chunks_and_cleans_exactly_like_a_small_one(tmp_path, monkeypatch):
    # Decomposed accents, Hangul jamo, emoji and undecodable bytes straddle the chunk boundaries.
    unit = "cafe\u0301 \u1100\u1161\u11a8 na\u0308ive 😀 漢字 ".encode() + b"\xff" + b" end\n"
    (tmp_path / "big.txt").write_bytes(unit * 500)
    whole = unicodedata.normalize("NFC", (unit * 500).decode("utf-8", errors="replace"))
    monkeypatch.setattr(sources, "READ_CHUNK_BYTES", 7)  # tiny chunks: every kind of boundary is hit
    report = CleaningReport()
    (doc,) = iter_documents([tmp_path / "big.txt"], "text", report)
    assert doc.reread is not None and doc.segments == []  # not held in memory: re-read when written
    chunks = list(doc.text_chunks())
    assert len(chunks) > 100 and "".join(chunks) == whole
    assert report.undecodable_bytes_replaced == 500 and report.bytes_kept == len(whole.encode())
    monkeypatch.undo()
    (small,) = iter_documents([tmp_path / "big.txt"], "text", CleaningReport())
    assert small.reread is None and small.segments == [(whole, True)]  # one chunk: read once, kept


def test_duplicates_are_found_across_small_and_streamed_files(tmp_path):
    text = "the same words, again and again. " * 40
    (tmp_path / "a.txt").write_text(text)
    (tmp_path / "b.txt").write_text(unicodedata.normalize("NFD", text + "é"))
    (tmp_path / "c.txt").write_text(text + "é")
    docs, report = read_all([tmp_path])
    assert len(docs) == 2 and report.dropped_duplicate == 1  # NFD and NFC spellings are one document


def test_instruction_and_chat_records_become_context_and_trained_segments(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(
        '{"prompt": "Capital of France?", "response": "Paris."}\n'
        '{"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},'
        ' {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"},'
        ' {"role": "assistant", "content": "6"}]}\n'
        '{"text": "plain text sits beside them"}\n'
    )
    docs, report = read_all([path])
    assert docs[0] == [("<|user|>Capital of France?<|end|><|assistant|>", False), ("Paris.<|end|>", True)]
    assert docs[1] == [
        ("<|system|>Be terse.<|end|><|user|>2+2?<|end|><|assistant|>", False),
        ("4<|end|>", True),
        ("<|user|>3+3?<|end|><|assistant|>", False),
        ("6<|end|>", True),
    ]
    assert docs[2] == "plain text sits beside them" and report.documents_kept == 3


@pytest.mark.parametrize(
    "record, message",
    [
        ('{"messages": [{"role": "robot", "content": "hi"}]}', r"sft.jsonl:1: messages\[0\] must be"),
        ('{"messages": []}', "sft.jsonl:1: 'messages' must be a non-empty list"),
        ('{"prompt": "q", "response": 7}', "sft.jsonl:1: fields 'prompt' and 'response' must be strings"),
        ('{"prompt": "q"}', "sft.jsonl:1: record has no 'text' field"),
    ],
)
def test_malformed_instruction_records_name_file_line_and_field(tmp_path, record, message):
    (tmp_path / "sft.jsonl").write_text(record + "\n")
    with pytest.raises(DataError, match=message):
        read_all([tmp_path / "sft.jsonl"])


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffhello".encode())
    (tmp_path / "b.jsonl").write_bytes('\ufeff{"text": "world"}\n{"text": "again"}\n'.encode())
    docs, _ = read_all([tmp_path])
    assert docs == ["hello", "world", "again"]


def test_a_utf16_file_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Text an editor saved as UTF-16.\n", encoding="utf-16")  # NUL bytes in every ASCII character
    with pytest.raises(
        DataError, match=rf"^{path} is UTF-16 or UTF-32 text \(it starts with a byte-order mark\); save"
    ):
        read_all([path])
