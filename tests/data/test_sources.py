import pytest

from lightningllm.data.sources import (
    CleaningReport,
    DataError,
    clean_documents,
    read_documents,
    resolve_sources,
    split_of_document,
)


def read_all(paths, field="text"):
    report = CleaningReport()
    docs = list(clean_documents(read_documents(resolve_sources([str(p) for p in paths]), field, report), report))
    return docs, report


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


def test_split_is_deterministic_and_roughly_the_fraction():
    docs = [f"document number {i}" for i in range(2000)]
    splits = [split_of_document(d, 0.1) for d in docs]
    assert splits == [split_of_document(d, 0.1) for d in docs]
    assert 150 < splits.count("val") < 250
