"""TextDataModule: batches from text files, a clean train/val/test split, instruction data, clear errors."""

import functools
import json

import pytest
import torch

from lightningllm.data import DataError, TextDataModule, Tokenizer
from lightningllm.data.prepare import read_report
from lightningllm.data.shards import PieceWriter
from lightningllm.data.sources import CleaningReport
from lightningllm.model import IGNORE_INDEX


def make(text_corpus, tmp_path, **kw):
    args = {"sources": [str(text_corpus)], "vocab_size": 300, "block_size": 16, "batch_size": 4}
    args |= {"val_fraction": 0.2, "cache_dir": str(tmp_path / "cache"), "prepare_workers": 1}
    return TextDataModule(**(args | kw))


def decoded(dm, loader) -> str:
    """The text of every batch, whole windows (the inputs plus each window's last target), in order; the rows
    that pad an evaluation split's last batch (no target) left out."""
    rows = [(x, y) for inputs, targets in loader for x, y in zip(inputs, targets, strict=True) if (y != -100).any()]
    windows = [torch.cat([x, y[-1:]]).tolist() for x, y in rows]
    return "".join(dm.tokenizer.decode(w, skip_special=False) for w in windows)


def numbered_corpus(tmp_path, count=40):
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(count):
        (corpus / f"{i}.txt").write_text(f"unique document {i:03d} " + "x y z " * 30)
    return corpus


def lettered_corpus(tmp_path):
    """Ten files of 1,000 characters, each of its own letter, a to j in file order."""
    corpus = tmp_path / "letters"
    corpus.mkdir()
    for i in range(10):
        (corpus / f"{i}.txt").write_text(("abcdefghij"[i] * 99 + "\n") * 10)
    return corpus


def test_prepare_setup_and_batches(text_corpus, tmp_path):
    dm = make(text_corpus, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    assert inputs.shape == targets.shape == (4, 16)  # block_size + 1 tokens per sample, shifted by one
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert int(inputs.max()) < dm.tokenizer.vocab_size
    assert next(iter(dm.val_dataloader()))[0].shape[1] == 16
    assert inputs.dtype == targets.dtype == torch.int64
    assert dm.report["documents_kept"] == 27 and dm.bytes_per_token > 1.0


def test_the_hash_split_is_three_disjoint_parts_that_cover_the_corpus(tmp_path):
    dm = TextDataModule(
        sources=[str(numbered_corpus(tmp_path))], tokenizer_kind="char", block_size=8, batch_size=1,
        val_fraction=0.3, test_fraction=0.2, shuffle=False, cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    dm.setup("fit")
    texts = {
        "train": decoded(dm, dm.train_dataloader()),
        "val": decoded(dm, dm.val_dataloader()),
        "test": decoded(dm, dm.test_dataloader()),
    }
    ids = {split: {i for i in range(40) if f"document {i:03d}" in text} for split, text in texts.items()}
    assert all(ids.values()), ids
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert ids["train"] | ids["val"] | ids["test"] == set(range(40))


def test_a_document_keeps_its_validation_split_whatever_the_test_fraction(tmp_path):
    corpus = numbered_corpus(tmp_path)

    def val_ids(test_fraction):
        dm = TextDataModule(
            sources=[str(corpus)], tokenizer_kind="char", block_size=8, batch_size=1, val_fraction=0.3,
            test_fraction=test_fraction, shuffle=False, cache_dir=str(tmp_path / "cache"), prepare_workers=1,
        )  # fmt: skip
        dm.setup("fit")
        text = decoded(dm, dm.val_dataloader())
        return {i for i in range(40) if f"document {i:03d}" in text}

    assert val_ids(0.0) == val_ids(0.3)


def test_the_tail_split_without_a_test_fraction_holds_out_the_last_characters(tmp_path):
    corpus = lettered_corpus(tmp_path)
    dm = TextDataModule(
        sources=str(corpus), tokenizer_kind="char", block_size=16, val_fraction=0.15, test_fraction=0.0,
        split="tail", shuffle=False, cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    dm.setup("fit")
    # 8,500 characters (and 8 EOS, one per finished file) train; the last 1,500 validate: as the 2-way split did.
    assert dm.report["tokens"] == {"train": 8500 + 8, "val": 1500 + 2, "test": 0}
    text = "".join(path.read_text() for path in sorted(corpus.iterdir()))
    val = decoded(dm, dm.val_dataloader()).replace("<|eos|>", "")
    assert text[8500:].startswith(val) and len(val) > 1400  # the last partial window is dropped
    assert text[:8500].startswith(decoded(dm, dm.train_dataloader()).replace("<|eos|>", "")[:8000])
    with pytest.raises(DataError, match=r"the test split .* has 0 tokens .* data.test_fraction is 0 \(no test split\)"):
        dm.test_dataloader()


def test_the_tail_split_puts_test_after_validation_and_test_dataloader_reads_it(tmp_path):
    corpus = lettered_corpus(tmp_path)
    dm = TextDataModule(
        sources=str(corpus), tokenizer_kind="char", block_size=16, val_fraction=0.15, test_fraction=0.1,
        split="tail", cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    dm.setup("test")
    assert dm.report["tokens"] == {"train": 7500 + 7, "val": 1500 + 2, "test": 1000 + 1}
    assert set(decoded(dm, dm.val_dataloader()).replace("<|eos|>", "")) == {"h", "i", "\n"}
    test = decoded(dm, dm.test_dataloader())
    assert set(test) == {"j", "\n"} and len(test) == 17 * (1001 // 17)


@pytest.mark.parametrize(
    "fractions, message",
    [
        ({"val_fraction": 0.0}, r"^data.val_fraction must be > 0 and < 1 \(got 0.0\)$"),
        ({"val_fraction": 1.5}, r"^data.val_fraction must be > 0 and < 1 \(got 1.5\)$"),
        ({"val_fraction": float("nan")}, r"^data.val_fraction must be > 0 and < 1 \(got nan\)$"),
        ({"test_fraction": -0.1}, r"^data.test_fraction must be ≥ 0 and < 1 \(got -0.1\)$"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"^data.val_fraction \+ data.test_fraction must be < 1"),
    ],
)
def test_split_fractions_are_checked_before_reading_anything(tmp_path, fractions, message):
    with pytest.raises(DataError, match=message):
        TextDataModule(sources=str(tmp_path / "not-read"), **fractions)


def test_empty_corpus_after_cleaning_and_too_few_tokens_are_clear_errors(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("   \n")
    with pytest.raises(DataError, match="no text left after cleaning"):
        TextDataModule(sources=[str(corpus)], cache_dir=str(tmp_path / "cache")).prepare_data()
    for i in range(10):
        (corpus / f"{i}.txt").write_text(f"tiny {i}")
    dm = TextDataModule(
        sources=[str(corpus)], tokenizer_kind="char", block_size=512, val_fraction=0.3, test_fraction=0.0,
        cache_dir=str(tmp_path / "k"),
    )  # fmt: skip
    dm.prepare_data()
    train = read_report(dm.prepared_dir)["tokens"]["train"]
    message = (
        rf"^too little training data: the train split of data.sources {corpus} has {train} tokens \(0 samples of "
        r"data.block_size \+ 1 = 513\), and one batch needs data.batch_size 16 × 513 = 8,208 tokens; add text \(or "
        r"lower data.val_fraction and data.test_fraction\), or lower data.batch_size or data.block_size$"
    )
    with pytest.raises(DataError, match=message):
        dm.setup("fit")


def test_instruction_data_trains_on_responses_only(tmp_path):
    records = [{"prompt": f"Square {i}?", "response": f"{i * i}."} for i in range(30)]
    records.append({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]})
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records * 3))  # the repeats are dropped as duplicates
    dm = TextDataModule(
        sources=[str(path)], tokenizer_kind="char", block_size=64, batch_size=1, val_fraction=0.2, shuffle=False,
        cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    dm.setup("fit")
    assert dm.report["documents_kept"] == 31 and dm.report["dropped_duplicate"] == 62
    assert dm.report["layout"] == "records"
    decode = functools.partial(dm.tokenizer.decode, skip_special=False)
    answers = {f"{i * i}.<|end|>" for i in range(30)} | {"Hello.<|end|>"}
    trained_answers = []
    for inputs, targets in dm.train_dataloader():  # one record per row: its answer is all the row trains on
        inputs, targets = inputs[0].tolist(), targets[0].tolist()
        trained = decode([t for t in targets if t != IGNORE_INDEX])
        context = decode([i for i, t in zip(inputs[1:], targets, strict=False) if t == IGNORE_INDEX])
        assert decode(inputs).startswith("<|user|>") and trained.endswith("<|eos|>") and trained.count("<|eos|>") == 1
        assert context.endswith("?<|end|><|assistant|>") and not any(a in context for a in answers)
        trained_answers.append(trained.removesuffix("<|eos|>"))
    assert set(trained_answers) <= answers and len(trained_answers) == len(set(trained_answers)) == 25


def test_a_huge_single_line_is_read_in_bounded_memory(tmp_path, monkeypatch):
    import tracemalloc

    from lightningllm.data import sources

    line = ("lorem ipsum dolor sit amet " * 300_000).encode()  # 8 MB, no newline anywhere
    (tmp_path / "line.txt").write_bytes(line)
    monkeypatch.setattr(sources, "READ_CHUNK_BYTES", 256 << 10)
    corpus = TextDataModule(sources=[str(tmp_path / "line.txt")], cache_dir=str(tmp_path / "cache")).corpus()
    writer = PieceWriter(tmp_path, "all")
    tracemalloc.start()
    for _, segments, eos in corpus.documents(CleaningReport()):
        writer.write(segments, eos)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    writer.close()
    assert writer.text_bytes == len(line) and len(writer.paths) == 8
    assert peak < 3 << 20, f"reading an 8 MB line peaked at {peak / 1e6:.1f} MB of Python memory"


def test_a_vocabulary_too_small_for_bpe_is_refused_before_reading_anything(tmp_path):
    with pytest.raises(DataError, match=r"data.vocab_size 200 is too small for byte-level BPE: it needs at least 263"):
        TextDataModule(sources=str(tmp_path / "not-read"), vocab_size=200)


def test_hparams_hold_the_arguments(tmp_path):
    dm = TextDataModule(sources=str(tmp_path / "not-read"), tokenizer_kind="char", test_fraction=0.0, split="tail")
    assert dm.hparams["sources"] == str(tmp_path / "not-read") and dm.hparams["split"] == "tail"
    assert dm.hparams["test_fraction"] == 0.0 and dm.hparams["tokenizer_kind"] == "char"
    assert dm.hparams["val_fraction"] == 0.05 and dm.hparams["block_size"] == 256


def test_resuming_on_other_data_settings_is_refused_in_one_line(text_corpus, tmp_path):
    state = make(text_corpus, tmp_path, block_size=48).state_dict()
    with pytest.raises(DataError, match=r"^cannot resume the data position exactly: data.block_size 48 -> 40 since"):
        make(text_corpus, tmp_path, block_size=40).load_state_dict(state)
    with pytest.raises(DataError, match=r"^cannot resume: the checkpoint was trained on prepared corpus text-\w+, but"):
        make(text_corpus, tmp_path, block_size=48, val_fraction=0.3).load_state_dict(state)
    make(text_corpus, tmp_path, block_size=48).load_state_dict(state)  # the same settings resume


def test_text_too_small_for_one_batch_is_refused_with_its_token_counts(tmp_path):
    # Fewer windows than one batch trained nothing: Lightning's "No training batches" warning, exit code 0
    corpus = numbered_corpus(tmp_path, count=12)
    dm = TextDataModule(
        sources=str(corpus), tokenizer_kind="char", block_size=128, val_fraction=0.2, cache_dir=str(tmp_path / "c")
    )
    dm.prepare_data()
    tokens = read_report(dm.prepared_dir)["tokens"]["train"]
    assert 129 <= tokens < 16 * 129
    message = (
        rf"^too little training data: the train split of data.sources {corpus} has {tokens:,} tokens "
        rf"\({tokens // 129} samples of data.block_size \+ 1 = 129\), and one batch needs data.batch_size 16 × 129 = "
        r"2,064 tokens; add text \(or lower data.val_fraction and data.test_fraction\), or lower data.batch_size or "
        r"data.block_size$"
    )
    with pytest.raises(DataError, match=message):
        dm.setup("fit")
    with pytest.raises(DataError, match=message):
        dm.train_dataloader()  # the loader a Trainer would ask for: no batch, no loader
    smaller = TextDataModule(**(dm.hparams | {"batch_size": tokens // 129}))
    smaller.setup("fit")
    assert len(smaller.train_dataloader()) == 1


def test_a_split_a_stage_reads_must_hold_a_sample_and_the_error_says_which_fraction(tmp_path):
    (tmp_path / "one.txt").write_text("A few words only, in one small document.\n")
    dm = TextDataModule(
        sources=str(tmp_path / "one.txt"), tokenizer_kind="char", block_size=16, batch_size=1, test_fraction=0.0,
        cache_dir=str(tmp_path / "c"),
    )  # fmt: skip
    val = rf"^too little validation data: the val split of data.sources {tmp_path}/one.txt has 0 tokens \(0 samples"
    with pytest.raises(DataError, match=val):
        dm.setup("fit")
    with pytest.raises(DataError, match=r"one sample needs 17 tokens; raise data.val_fraction \(now 0.05\) or add"):
        dm.setup("validate")
    with pytest.raises(DataError, match=r"data.test_fraction is 0 \(no test split\): set it, e.g. to 0.05, or lower"):
        dm.setup("test")


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"block_size": 0}, "data.block_size must be ≥ 1 (got 0)"),  # trained on empty samples: NaN, exit code 0
        ({"block_size": -4}, "data.block_size must be ≥ 1 (got -4)"),  # was "__len__() should return >= 0"
        ({"block_size": 16.5}, "data.block_size must be an integer (got 16.5)"),
        ({"batch_size": 0}, "data.batch_size must be ≥ 1 (got 0)"),
        ({"num_workers": -1}, "data.num_workers must be ≥ 0 (got -1)"),
        ({"seed": -1}, "data.seed must be ≥ 0 (got -1)"),  # numpy's "Seed must be between 0 and 2**32 - 1"
        ({"seed": 2**32}, "data.seed must be ≤ 4294967295 (got 4294967296)"),
        ({"prepare_workers": 0}, "data.prepare_workers must be ≥ 1 (got 0)"),
        ({"tokenizer_train_bytes": 0}, "data.tokenizer_train_bytes must be ≥ 1 (got 0)"),
        ({"vocab_size": 2**31 + 1}, "data.vocab_size must be ≤ 2147483648 (got 2147483649)"),
        ({"tokenizer_kind": "wordpiece"}, "data.tokenizer_kind must be one of 'bpe', 'char' (got 'wordpiece')"),
        ({"split": "random"}, "data.split must be one of 'hash', 'tail' (got 'random')"),
        ({"jsonl_field": ""}, "data.jsonl_field must be a field name (got '')"),
        (  # was a local folder named "gs:"
            {"cache_dir": "gs://bucket/x"},
            "data.cache_dir gs://bucket/x: only s3:// URIs are supported (or a local folder)",
        ),
    ],
)
def test_every_setting_is_checked_at_construction_in_one_line_naming_it(tmp_path, setting, message):
    with pytest.raises(DataError) as refused:
        TextDataModule(sources=str(tmp_path / "not-read"), **setting)
    assert str(refused.value) == message


def test_a_prepared_folder_gives_the_same_batches_without_the_sources(text_corpus, tmp_path, capsys):
    dm = make(text_corpus, tmp_path, tokenizer_kind="char")
    dm.prepare_data()
    assert f"(data.prepared={dm.prepared_dir} reads them without the sources)" in capsys.readouterr().out
    dm.setup("fit")
    text_corpus.rename(tmp_path / "elsewhere")  # nothing reads or stats the sources
    # The settings of preparing are unused: a BPE vocabulary this small would be refused.
    again = TextDataModule(prepared=f"{dm.prepared_dir}/", block_size=16, batch_size=4, vocab_size=7)
    again.prepare_data()
    assert capsys.readouterr().out == f"data: reading the prepared corpus {dm.prepared_dir}\n"
    again.setup("fit")
    assert again.prepared_dir == dm.prepared_dir and again.report == dm.report
    assert again.tokenizer.same_vocabulary(dm.tokenizer)
    for split in ("train", "val"):
        for (x, y), (x2, y2) in zip(dm._loader(split), again._loader(split), strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)
    again.load_state_dict(dm.state_dict())  # a run trained from the sources resumes from the prepared folder
    assert again.state_dict() == dm.state_dict()
    tokenizer = again.prepared_dir / "tokenizer.json"
    TextDataModule(prepared=str(again.prepared_dir), tokenizer_path=str(tokenizer), block_size=16).setup("fit")


def test_a_prepared_corpus_that_is_not_one_or_given_with_sources_is_refused_in_one_line(text_corpus, tmp_path):
    dm = make(text_corpus, tmp_path, tokenizer_kind="char")
    dm.prepare_data()
    folder = tmp_path / "text-0123"
    folder.mkdir()
    with pytest.raises(DataError) as refused:
        TextDataModule(prepared=str(folder)).setup("fit")
    assert str(refused.value) == (
        f"data.prepared {folder} is not a prepared corpus (no report.json): give the <name>-<fingerprint> folder "
        "that preparing printed"
    )
    with pytest.raises(DataError) as refused:
        TextDataModule(sources=str(text_corpus), prepared=str(dm.prepared_dir))
    assert str(refused.value) == (
        "give data.sources (to prepare a corpus) or data.prepared (a corpus prepared already), not both "
        f"(got data.sources {text_corpus} and data.prepared {dm.prepared_dir})"
    )
    with pytest.raises(DataError, match=r"^data.prepared must name a prepared corpus's <name>-<fingerprint> folder"):
        TextDataModule(prepared="s3://bucket/")
    other = tmp_path / "other.json"
    Tokenizer.train(["only these letters"], kind="char").save(other)
    with pytest.raises(DataError, match=rf"^data.tokenizer_path {other} \(\d+ tokens\) is not the tokenizer of data"):
        TextDataModule(prepared=str(dm.prepared_dir), tokenizer_path=str(other), block_size=16).setup("fit")
    with pytest.raises(DataError, match=rf"the train split of data.prepared {dm.prepared_dir} has .*; prepare a corp"):
        TextDataModule(prepared=str(dm.prepared_dir), block_size=4000).setup("fit")
