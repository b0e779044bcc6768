"""The bad-input battery: over 80 wrong inputs to the ``lightningllm`` command, over data, config,
checkpoint, export, prompt and resume, each of which must end the way the project promises.

Every case runs the command in-process (``tests.battery_fixtures.run_main``) in a working folder that
holds what a user has: a text corpus, configs, an earlier checkpoint, an earlier export (with a
README the user added) and an earlier ``--output`` file, plus the case's own bad files. Each case
asserts (a) a non-zero exit, (b) exactly one line on stderr, naming the file or field at fault (the
case's substrings), and (c) that no file or folder the user had changed or went missing, and that
new files appeared only in the run folder ``run/`` (logs, checkpoints, prepared data). Lightning's
log lines and Python's warnings reach stderr as they do in a user's terminal (``as_a_users_process``).
The shared inputs (a checkpoint trained for 4 steps of the debug config, its export, the prepared
data cache) are built once for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.battery_fixtures import as_a_users_process, changes, run_main, snapshot
from tests.conftest import CONFIGS

PROMPT = "Q: Ava has 3 keys.\\nA:"
TOO_LONG = "Q: " + "Mia has 2 apples. " * 60


@dataclass(frozen=True)
class Shared:
    """Inputs built once for the module."""

    checkpoint: Path
    """``last.ckpt`` of 4 steps of ``configs/debug.yaml``; the run's config inside names ``run/`` its folder."""
    export: Path
    """``lightningllm export`` of it."""
    cache: Path
    """The prepared-data cache the debug checkpoint was trained from (reused, never changed, by the cases)."""


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    root = tmp_path_factory.mktemp("battery-shared")
    cache = root / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        with as_a_users_process():
            code = run_main(
                ["fit", "--config", str(CONFIGS / "debug.yaml"), f"--data.cache_dir={cache}"]
                + ["--trainer.default_root_dir=run", "--trainer.max_steps=4", "--trainer.val_check_interval=4"]
                + ["--trainer.enable_progress_bar=false"]
            )
            assert code == 0
            checkpoint = root / "run" / "checkpoints" / "last.ckpt"
            assert run_main(["export", "--ckpt_path", str(checkpoint), "--out", str(root / "export")]) == 0
    return Shared(checkpoint, root / "export", cache)


# --- the cases -------------------------------------------------------------------------------------
Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    names: tuple[str, ...]
    """Substrings the one stderr line must contain: the file or field at fault."""
    setup: Setup | None = None
    """Writes the case's own bad files into the working folder, before it is fingerprinted."""
    memory_gb: float = 6.0
    """Address space the case may add (a memory bomb fails fast instead of swapping)."""
    check: Callable[[Path], None] | None = None
    """More assertions on the working folder after the run."""
    earlier_run: tuple[str, ...] | None = None
    """A command run (successfully) in the working folder first: the earlier run a case resumes."""


RUN = ("--trainer.default_root_dir", "run", "--trainer.enable_progress_bar", "false")


def debug_fit(max_steps: int = 4) -> tuple[str, ...]:
    """``fit`` of ``configs/debug.yaml`` (on the shared prepared data), its outputs in ``run/``, validated once."""
    steps = (f"--trainer.max_steps={max_steps}", f"--trainer.val_check_interval={max_steps}")
    return ("fit", "--config", "debug.yaml", "--data.cache_dir={cache}", *RUN, *steps)


DEBUG_FIT = debug_fit()
RESUME = (*debug_fit(max_steps=6), "--ckpt_path", "run/checkpoints/last.ckpt")
"""Resume the earlier run of ``DEBUG_FIT`` (``Case.earlier_run``) in its own folder, to 6 steps."""
PREDICT = ("predict", "--ckpt_path", "ckpt/last.ckpt", "--prompt", PROMPT, "--model.max_new_tokens", "4")
PREDICT_OUT = (*PREDICT, "--output", "run/out.jsonl")
VALIDATE = ("validate", "--ckpt_path", "ckpt/last.ckpt", *RUN)
TEST = ("test", "--ckpt_path", "ckpt/last.ckpt", *RUN)


def text_fit(*extra: str, sources: str | None = "corpus") -> tuple[str, ...]:
    """``fit`` of ``configs/text.yaml`` on ``sources``, its outputs and prepared data in ``run/``, 3 steps."""
    argv = ("fit", "--config", "text.yaml", "--data.cache_dir", "run/cache", *RUN, "--trainer.max_steps", "3")
    argv += ("--trainer.val_check_interval", "2")
    return argv + (("--data.sources", sources) if sources else ()) + extra


def init_from(folder: str, *extra: str) -> tuple[str, ...]:
    """``predict`` from an export folder."""
    return ("predict", f"--model.init_from={folder}", f"--prompt={PROMPT}", *PREDICT_OUT[5:], *extra)


def write(relative: str, content: str | bytes) -> Setup:
    def setup(workdir: Path) -> None:
        path = workdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return setup


def both(*setups: Setup) -> Setup:
    def setup(workdir: Path) -> None:
        for step in setups:
            step(workdir)

    return setup


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def copy_export(name: str, edit: Callable[[Path], None] | None = None) -> Setup:
    """A copy of the user's earlier export at ``name``, then ``edit`` applied to it."""

    def setup(workdir: Path) -> None:
        shutil.copytree(workdir / "export", workdir / name)
        (workdir / name / "README.md").unlink()
        if edit is not None:
            edit(workdir / name)

    return setup


def to_int8(folder: Path) -> None:
    """Rewrite an export's weights as ``export --quantize int8`` writes them."""
    from lightningllm.model import GPT, quantize_int8

    quantize_int8(GPT.from_pretrained(folder)).save_pretrained(folder)


def edit_config_json(**changes_) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | changes_))

    return edit


def truncate(relative: str, keep: float = 0.5) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / relative
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return edit


def checkpoint_copy(name: str, edit: Callable[[dict], dict]) -> Setup:
    """The user's checkpoint, read, edited and saved as ``name``."""

    def setup(workdir: Path) -> None:
        checkpoint = torch.load(workdir / "ckpt" / "last.ckpt", weights_only=True)
        torch.save(edit(checkpoint), workdir / name)

    return setup


def truncated_checkpoint(name: str, keep: float = 0.5) -> Setup:
    def setup(workdir: Path) -> None:
        data = (workdir / "ckpt" / "last.ckpt").read_bytes()
        (workdir / name).write_bytes(data[: int(len(data) * keep)])

    return setup


class RunsCode:
    """Pickled as a call to ``os.mkdir("pwned")``: loading a checkpoint that holds it must not run it."""

    def __reduce__(self):
        return (os.mkdir, ("pwned",))


def pickled(name: str) -> Setup:
    def setup(workdir: Path) -> None:
        torch.save({"state_dict": {}, "hyper_parameters": RunsCode()}, workdir / name)

    return setup


def foreign_zip(name: str) -> Setup:
    def setup(workdir: Path) -> None:
        with zipfile.ZipFile(workdir / name, "w") as archive:
            archive.writestr("notes.txt", "a zip, not a checkpoint")

    return setup


def saved(name: str, obj) -> Setup:
    def setup(workdir: Path) -> None:
        torch.save(obj, workdir / name)

    return setup


def folder(relative: str) -> Setup:
    def setup(workdir: Path) -> None:
        (workdir / relative).mkdir(parents=True)

    return setup


def chat_records(count: int) -> str:
    return jsonl(*({"prompt": f"What is {i} plus {i}?", "response": f"{2 * i}."} for i in range(count)))


def finite_checkpoints(workdir: Path) -> None:
    """Every checkpoint the run wrote holds finite weights and optimizer state."""
    for path in (workdir / "run").rglob("*.ckpt"):
        state = torch.load(path, weights_only=True)
        tensors = list(state["state_dict"].values())
        for optimizer in state.get("optimizer_states", []):
            tensors += [t for s in optimizer["state"].values() for t in s.values() if isinstance(t, torch.Tensor)]
        bad = [t for t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
        assert not bad, f"{path} holds {len(bad)} non-finite tensors"


CASES = [
    # --- data: sources ----------------------------------------------------------------------------
    Case("data-source-missing", text_fit(sources="no/such/dir"), ("no/such/dir",)),
    Case("data-file-missing", text_fit(sources="missing.txt"), ("missing.txt",)),
    Case("data-no-sources", text_fit(sources=None), ("data.sources",)),
    Case("data-folder-without-text", text_fit(sources="pics"), ("pics",), write("pics/cat.png", b"\x89PNG")),
    Case("data-glob-matches-nothing", text_fit(sources="corpus/*.csv"), ("corpus/*.csv",)),
    Case("data-empty-file", text_fit(sources="empty.txt"), ("empty.txt",), write("empty.txt", "")),
    Case("data-blank-file", text_fit(sources="blank.txt"), ("blank.txt",), write("blank.txt", " \n\t\n" * 50)),
    Case("data-binary-file", text_fit(sources="data.txt"), ("data.txt",), write("data.txt", b"\x00\x01" * 500)),
    Case(
        "data-utf16-file",  # undecodable as UTF-8: NUL bytes in every ASCII character
        text_fit(sources="utf16.txt"),
        ("utf16.txt",),
        write("utf16.txt", "Text an editor saved as UTF-16.\n".encode("utf-16") * 20),
    ),
    Case(
        "data-one-small-document",
        text_fit(sources="tiny.txt"),
        ("data.val_fraction",),
        write("tiny.txt", "A few words only.\n"),
    ),
    Case(
        "data-jsonl-malformed",
        text_fit(sources="bad.jsonl"),
        ("bad.jsonl:2",),
        write("bad.jsonl", jsonl({"text": "fine"}, '{"text": "unclosed')),
    ),
    Case(
        "data-jsonl-not-an-object",
        text_fit(sources="list.jsonl"),
        ("list.jsonl:1",),
        write("list.jsonl", jsonl([1, 2, 3])),
    ),
    Case(
        "data-jsonl-no-text-field",
        text_fit(sources="body.jsonl"),
        ("body.jsonl:1",),
        write("body.jsonl", jsonl({"body": "text under another name"})),
    ),
    Case(
        "data-jsonl-text-not-a-string",
        text_fit(sources="num.jsonl"),
        ("num.jsonl:1",),
        write("num.jsonl", jsonl({"text": 5})),
    ),
    Case(
        "data-jsonl-messages-not-a-list",
        text_fit(sources="chat.jsonl"),
        ("chat.jsonl:1",),
        write("chat.jsonl", jsonl({"messages": "hello"})),
    ),
    Case(
        "data-jsonl-unknown-role",
        text_fit(sources="chat.jsonl"),
        ("chat.jsonl:2",),
        write("chat.jsonl", jsonl({"text": "ok"}, {"messages": [{"role": "bot", "content": "hi"}]})),
    ),
    Case(
        "data-jsonl-response-not-a-string",
        text_fit(sources="pairs.jsonl"),
        ("pairs.jsonl:1",),
        write("pairs.jsonl", jsonl({"prompt": "2+2?", "response": 4})),
    ),
    Case("data-jsonl-field-option-absent", text_fit("--data.jsonl_field", "body"), ("records.jsonl:1",)),
    Case("data-tokenizer-path-missing", text_fit("--data.tokenizer_path", "tok.json"), ("tok.json",)),
    Case(
        "data-tokenizer-path-corrupt",
        text_fit("--data.tokenizer_path", "tok.json"),
        ("tok.json",),
        write("tok.json", "{not a tokenizer"),
    ),
    # --- data: settings ---------------------------------------------------------------------------
    Case("data-block-size-0", (*DEBUG_FIT, "--data.block_size", "0"), ("data.block_size",)),  # item 8
    Case("data-block-size-0-text", text_fit("--data.block_size", "0"), ("data.block_size",)),  # item 8
    Case("data-block-size-negative", text_fit("--data.block_size", "-4"), ("data.block_size",)),
    Case("data-block-size-over-context", text_fit("--data.block_size", "512"), ("data.block_size",)),
    Case("data-batch-size-0", text_fit("--data.batch_size", "0"), ("data.batch_size",)),
    Case("data-num-workers-negative", text_fit("--data.num_workers", "-1"), ("data.num_workers",)),
    Case(  # refused before the first step, not at the first validation
        "task-split-beyond-model-context",
        (*DEBUG_FIT, "--model.config.block_size", "200", "--data.block_size", "150"),
        ("split 'val' needs", "raise model.config.block_size"),
    ),
    Case("data-group-by-length-packed", text_fit("--data.group_by_length", "8"), ("data.group_by_length", "packed")),
    Case("data-val-fraction-0", text_fit("--data.val_fraction", "0"), ("data.val_fraction",)),
    Case("data-val-fraction-above-1", text_fit("--data.val_fraction", "1.5"), ("data.val_fraction",)),
    Case("data-test-fraction-negative", text_fit("--data.test_fraction", "-0.1"), ("data.test_fraction",)),
    Case(
        "data-fractions-leave-no-training",
        text_fit("--data.val_fraction", "0.5", "--data.test_fraction", "0.5"),
        ("data.val_fraction",),
    ),
    Case("data-vocab-size-too-small", text_fit("--data.vocab_size", "100"), ("data.vocab_size",)),
    Case("data-tokenizer-kind-unknown", text_fit("--data.tokenizer_kind", "wordpiece"), ("tokenizer_kind",)),
    Case("data-split-unknown", text_fit("--data.split", "random"), ("data.split",)),
    Case(
        "data-chat-no-validation-record",  # item 7: records train one per sample, so only an empty split is too little
        text_fit("--data.split", "tail", "--data.val_fraction", "0.01", sources="chat.jsonl"),
        ("val split", "chat.jsonl", "holds no record", "data.val_fraction"),
        write("chat.jsonl", chat_records(61)),
    ),
    Case(
        "data-chat-mixed-with-plain-text",
        text_fit(sources="chat.jsonl"),
        ("chat.jsonl", "mix plain text", "separate runs"),
        write("chat.jsonl", jsonl({"text": "plain"}, *({"prompt": f"Q{i}?", "response": "A."} for i in range(9)))),
    ),
    Case(
        "data-too-little-for-one-block",
        text_fit("--data.split", "tail", sources="tiny.txt"),
        ("17 tokens", "data.block_size"),
        write("tiny.txt", "A few words only, and then some more words to have a little text in the file.\n"),
    ),
    Case("data-class-unknown", (*DEBUG_FIT, "--data", "no.such.DataModule"), ("no.such.DataModule",)),
    # --- config -------------------------------------------------------------------------------------
    Case("config-file-missing", ("fit", "--config", "nope.yaml", *RUN), ("nope.yaml",)),  # item 13
    Case(
        "config-yaml-syntax-error",
        ("fit", "--config", "broken.yaml", *RUN),
        ("broken.yaml",),  # item 13
        write("broken.yaml", "model:\n  learning_rate: [0.1\ntrainer: {\n"),
    ),
    Case(
        "config-yaml-not-a-mapping",
        ("fit", "--config", "list.yaml", *RUN),
        ("list.yaml",),
        write("list.yaml", "- fit\n- 3\n"),
    ),
    Case(
        "config-yaml-unknown-key",
        ("fit", "--config", "typo.yaml", *RUN),
        ("typo.yaml", "learnin_rate"),
        write("typo.yaml", "model:\n  learnin_rate: 0.1\n"),
    ),
    Case(
        "config-yaml-wrong-type",
        ("fit", "--config", "type.yaml", *RUN),
        ("type.yaml", "learning_rate"),
        write("type.yaml", "model:\n  learning_rate: fast\n"),
    ),
    Case("config-unknown-key", (*DEBUG_FIT, "--model.learnin_rate", "0.1"), ("learnin_rate",)),  # item 13
    Case("config-unknown-top-level-key", (*DEBUG_FIT, "--colour", "red"), ("colour",)),
    Case("config-unknown-subcommand", ("train", "--config", "debug.yaml"), ("train",)),
    Case("config-wrong-type-float", (*DEBUG_FIT, "--model.learning_rate", "fast"), ("learning_rate",)),  # item 13
    Case("config-wrong-type-int", (*DEBUG_FIT, "--trainer.max_steps", "ten"), ("max_steps",)),
    Case("config-wrong-choice", (*DEBUG_FIT, "--model.lr_schedule", "cubic"), ("lr_schedule",)),
    Case("config-optimizer-unknown", (*DEBUG_FIT, "--model.optimizer", "sgd"), ("optimizer",)),
    Case("config-betas-wrong-length", (*DEBUG_FIT, "--model.betas", "[0.9]"), ("betas",)),
    Case("config-n-embd-not-divisible", (*DEBUG_FIT, "--model.config.n_embd", "30"), ("n_embd",)),
    Case("config-n-layer-0", (*DEBUG_FIT, "--model.config.n_layer", "0"), ("n_layer",)),
    Case("config-dropout-1", (*DEBUG_FIT, "--model.config.dropout", "1.5"), ("dropout",)),
    Case("config-pos-emb-unknown", (*DEBUG_FIT, "--model.config.pos_emb", "sinusoid"), ("pos_emb",)),
    Case("config-vocab-smaller-than-data", (*DEBUG_FIT, "--model.config.vocab_size", "10"), ("vocab_size",)),
    Case("config-learning-rate-negative", (*DEBUG_FIT, "--model.learning_rate", "-0.01"), ("learning_rate",)),
    Case("config-warmup-negative", (*DEBUG_FIT, "--model.warmup_steps", "-3"), ("warmup_steps",)),
    Case("config-accelerator-gpu-on-cpu", (*DEBUG_FIT, "--trainer.accelerator", "gpu"), ("accelerator",)),  # 14
    Case("config-max-steps-negative", (*DEBUG_FIT, "--trainer.max_steps", "-5"), ("max_steps",)),  # item 14
    Case("config-precision-unknown", (*DEBUG_FIT, "--trainer.precision", "7"), ("precision",)),
    Case("config-devices-0", (*DEBUG_FIT, "--trainer.devices", "0"), ("devices",)),
    Case(
        "config-root-dir-is-a-file",
        (*DEBUG_FIT, "--trainer.default_root_dir", "taken"),
        ("taken",),
        write("taken", "a file where the run folder would go\n"),
    ),
    # --- training that goes wrong ---------------------------------------------------------------------
    Case(
        "train-lr-100-nan", (*debug_fit(8), "--model.learning_rate", "100"), ("step",), check=finite_checkpoints
    ),  # item 4
    Case(
        "train-lr-1e4-nan", (*debug_fit(8), "--model.learning_rate", "1e4"), ("step",), check=finite_checkpoints
    ),  # item 4
    # --- checkpoints ---------------------------------------------------------------------------------
    Case("ckpt-missing", (*PREDICT_OUT[:2], "gone.ckpt", *PREDICT_OUT[3:]), ("gone.ckpt",)),
    Case(
        "ckpt-not-torch",
        (*PREDICT_OUT[:2], "text.ckpt", *PREDICT_OUT[3:]),
        ("text.ckpt",),
        write("text.ckpt", "this is not a checkpoint"),
    ),
    Case("ckpt-empty", (*PREDICT_OUT[:2], "empty.ckpt", *PREDICT_OUT[3:]), ("empty.ckpt",), write("empty.ckpt", b"")),
    Case(
        "ckpt-truncated",
        (*PREDICT_OUT[:2], "half.ckpt", *PREDICT_OUT[3:]),
        ("half.ckpt",),
        truncated_checkpoint("half.ckpt"),
    ),
    Case(
        "ckpt-truncated-tail",
        (*PREDICT_OUT[:2], "cut.ckpt", *PREDICT_OUT[3:]),
        ("cut.ckpt",),
        truncated_checkpoint("cut.ckpt", keep=0.98),
    ),
    Case("ckpt-pickled-code", (*PREDICT_OUT[:2], "evil.ckpt", *PREDICT_OUT[3:]), ("evil.ckpt",), pickled("evil.ckpt")),
    Case(
        "ckpt-foreign-zip",
        (*PREDICT_OUT[:2], "notes.ckpt", *PREDICT_OUT[3:]),
        ("notes.ckpt",),
        foreign_zip("notes.ckpt"),
    ),
    Case(
        "ckpt-foreign-list",
        (*PREDICT_OUT[:2], "list.ckpt", *PREDICT_OUT[3:]),
        ("list.ckpt",),
        saved("list.ckpt", [1, 2, 3]),
    ),
    Case(
        "ckpt-foreign-state-dict",
        (*PREDICT_OUT[:2], "linear.ckpt", *PREDICT_OUT[3:]),
        ("linear.ckpt",),
        saved("linear.ckpt", torch.nn.Linear(2, 2).state_dict()),
    ),
    Case(
        "ckpt-no-model-config",
        (*PREDICT_OUT[:2], "bare.ckpt", *PREDICT_OUT[3:]),
        ("bare.ckpt",),
        saved("bare.ckpt", {"state_dict": {}}),
    ),
    Case(
        "ckpt-weights-do-not-fit-config",
        (*PREDICT_OUT[:2], "wide.ckpt", *PREDICT_OUT[3:]),
        ("wide.ckpt",),
        checkpoint_copy(
            "wide.ckpt",
            lambda c: c | {"hyper_parameters": {"config": c["hyper_parameters"]["config"] | {"n_embd": 64}}},
        ),
    ),
    Case("ckpt-is-a-folder", (*PREDICT_OUT[:2], "ckpt", *PREDICT_OUT[3:]), ("ckpt",)),
    Case("ckpt-validate-missing", ("validate", "--ckpt_path", "gone.ckpt", *RUN), ("gone.ckpt",)),
    Case(
        "ckpt-test-without-run-config",
        ("test", "--ckpt_path", "plain.ckpt", *RUN),
        ("plain.ckpt",),
        saved("plain.ckpt", {"state_dict": {}, "hyper_parameters": {"config": {"n_layer": 1}}}),
    ),
    Case("ckpt-resume-missing", (*DEBUG_FIT, "--ckpt_path", "gone.ckpt"), ("gone.ckpt",)),
    Case(
        "ckpt-resume-truncated",
        (*DEBUG_FIT, "--ckpt_path", "half.ckpt"),
        ("half.ckpt",),
        truncated_checkpoint("half.ckpt"),
    ),
    Case("ckpt-resume-pickled-code", (*DEBUG_FIT, "--ckpt_path", "evil.ckpt"), ("evil.ckpt",), pickled("evil.ckpt")),
    # --- resume with changed settings ----------------------------------------------------------------
    Case(
        "resume-optimizer-changed", (*RESUME, "--model.optimizer", "muon"), ("optimizer",), earlier_run=DEBUG_FIT
    ),  # item 10
    Case(  # Lightning restores the schedule's base rate: a new one was silently not applied
        "resume-learning-rate-changed",
        (*RESUME, "--model.learning_rate", "0.01"),
        ("model.learning_rate",),
        earlier_run=DEBUG_FIT,
    ),
    Case(
        "resume-n-embd-changed", (*RESUME, "--model.config.n_embd", "64"), ("n_embd",), earlier_run=DEBUG_FIT
    ),  # item 10
    Case(
        "resume-n-layer-changed", (*RESUME, "--model.config.n_layer", "3"), ("n_layer",), earlier_run=DEBUG_FIT
    ),  # item 10
    Case(
        "resume-data-block-size-changed",
        (*RESUME, "--data.block_size", "32"),
        ("data.block_size",),
        earlier_run=DEBUG_FIT,
    ),
    Case(  # another batch_size (or number of processes) resumes at the next sample; another order cannot
        "resume-data-seed-changed",
        (*RESUME, "--data.seed", "7"),
        ("data.seed",),
        earlier_run=DEBUG_FIT,
    ),
    Case(
        "resume-data-group-by-length-changed",
        (*RESUME, "--data.group_by_length", "4"),
        ("data.group_by_length",),
        earlier_run=DEBUG_FIT,
    ),
    Case("resume-data-tokenizer-changed", (*RESUME, "--data.vocab_size", "320"), ("tokenizer",), earlier_run=DEBUG_FIT),
    # --- validate/test on data of another tokenizer (item 9) ------------------------------------------
    Case("validate-bigger-vocab", (*VALIDATE, "--data.vocab_size", "512"), ("tokenizer",)),
    Case(
        "validate-config-bigger-vocab",
        (
            "validate",
            "--config",
            "debug.yaml",
            "--data.cache_dir={cache}",
            "--ckpt_path",
            "ckpt/last.ckpt",
            *RUN,
            "--data.vocab_size",
            "512",
        ),
        ("tokenizer",),
    ),
    Case("validate-smaller-vocab", (*VALIDATE, "--data.vocab_size", "320"), ("tokenizer",)),
    Case("validate-char-tokenizer", (*VALIDATE, "--data.tokenizer_kind", "char"), ("tokenizer",)),
    Case("test-char-tokenizer", (*TEST, "--data.tokenizer_kind", "char"), ("tokenizer",)),
    # --- export --------------------------------------------------------------------------------------
    Case("export-ckpt-missing", ("export", "--ckpt_path", "gone.ckpt", "--out", "run/x"), ("gone.ckpt",)),
    Case(
        "export-ckpt-not-torch",
        ("export", "--ckpt_path", "text.ckpt", "--out", "run/x"),
        ("text.ckpt",),
        write("text.ckpt", "not a checkpoint"),
    ),
    Case(
        "export-ckpt-pickled-code",
        ("export", "--ckpt_path", "evil.ckpt", "--out", "run/x"),
        ("evil.ckpt",),
        pickled("evil.ckpt"),
    ),
    Case("export-out-missing", ("export", "--ckpt_path", "ckpt/last.ckpt"), ("--out",)),
    Case("export-unknown-option", ("export", "--ckpt_path", "ckpt/last.ckpt", "--out", "run/x", "--fp16"), ("--fp16",)),
    Case("export-out-is-a-file", ("export", "--ckpt_path", "ckpt/last.ckpt", "--out", "keep.jsonl"), ("keep.jsonl",)),
    Case(
        "export-out-parent-is-a-file",
        ("export", "--ckpt_path", "ckpt/last.ckpt", "--out", "keep.jsonl/model"),
        ("keep.jsonl",),
    ),
    Case(
        "export-out-users-folder",
        ("export", "--ckpt_path", "ckpt/last.ckpt", "--out", "proj"),
        ("proj",),
        write("proj/main.py", "print('mine')\n"),
    ),
    Case(
        "export-out-users-folder-with-config-json",
        ("export", "--ckpt_path", "ckpt/last.ckpt", "--out", "proj"),
        ("proj",),
        both(
            write("proj/config.json", "{}\n"),
            write("proj/main.py", "print('mine')\n"),
            write("proj/src/util.py", "X = 1\n"),
        ),
    ),  # item 1
    # --- loading an export (model.init_from) -------------------------------------------------------------
    Case(
        "export-config-bomb",
        init_from("bomb"),
        ("bomb",),
        memory_gb=1.0,  # item 12
        setup=copy_export("bomb", edit_config_json(n_layer=100_000, n_embd=8192, n_head=64)),
    ),
    Case(
        "export-config-bomb-fit",
        (*DEBUG_FIT, "--model.init_from", "bomb"),
        ("bomb",),
        memory_gb=1.0,  # item 12
        setup=copy_export("bomb", edit_config_json(n_layer=100_000, n_embd=8192, n_head=64)),
    ),
    Case("export-shape-mismatch", init_from("wide"), ("wide",), copy_export("wide", edit_config_json(n_embd=64))),
    Case(
        "export-safetensors-truncated",
        init_from("cut"),
        ("model.safetensors",),  # item 12
        copy_export("cut", truncate("model.safetensors")),
    ),
    Case(
        "export-safetensors-missing",
        init_from("nosafe"),
        ("model.safetensors",),
        copy_export("nosafe", lambda f: (f / "model.safetensors").unlink()),
    ),
    Case(
        "export-config-json-syntax-error",
        init_from("badjson"),
        ("config.json",),  # item 12
        copy_export("badjson", lambda f: (f / "config.json").write_text('{"n_layer": 2,')),
    ),
    Case(
        "export-config-json-unknown-field",
        init_from("unknown"),
        ("config.json",),
        copy_export("unknown", edit_config_json(n_layerz=2)),
    ),
    Case(
        "export-config-json-missing",
        init_from("noconfig"),
        ("config.json",),
        copy_export("noconfig", lambda f: (f / "config.json").unlink()),
    ),
    Case(
        "export-tokenizer-json-corrupt",
        init_from("badtok"),
        ("tokenizer.json",),
        copy_export("badtok", lambda f: (f / "tokenizer.json").write_text("{oops")),
    ),
    Case("export-folder-missing", init_from("nowhere"), ("nowhere",)),
    Case("export-folder-is-a-file", init_from("keep.jsonl"), ("keep.jsonl",)),
    # --- int8 weights (--quantize int8) -----------------------------------------------------------------
    Case("quantize-unknown", (*PREDICT_OUT, "--quantize", "int4"), ("--quantize", "int4")),
    Case("quantize-in-fit", (*DEBUG_FIT, "--model.quantize", "int8"), ("model.quantize",)),
    Case("fit-from-int8-export", (*DEBUG_FIT, "--model.init_from", "int8"), ("int8",), copy_export("int8", to_int8)),
    Case(
        "int8-export-to-hf",
        ("export", "--ckpt_path", "int8", "--out", "hf", "--format", "hf"),
        ("int8",),
        copy_export("int8", to_int8),
    ),
    Case(
        "quantize-with-gguf",
        ("export", "--ckpt_path", "ckpt/last.ckpt", "--out", "m.gguf", "--format", "gguf", "--quantize", "int8"),
        ("--quantize", "--quant q8_0"),
    ),
    # --- prompts and sampling -------------------------------------------------------------------------
    Case(
        "prompt-too-long-keeps-output",
        (*PREDICT[:4], TOO_LONG, *PREDICT[5:], "--output", "keep.jsonl"),
        ("block_size",),
    ),  # item 3
    Case("prompt-none", ("predict", "--ckpt_path", "ckpt/last.ckpt", "--output", "run/out.jsonl"), ("--prompt",)),
    Case("prompt-option-without-value", ("predict", "--ckpt_path", "ckpt/last.ckpt", "--prompt"), ("--prompt",)),
    Case("prompt-file-missing", (*PREDICT_OUT, "--prompt_file", "gone.txt"), ("gone.txt",)),
    Case("prompt-file-is-a-folder", (*PREDICT_OUT, "--prompt_file", "corpus"), ("corpus",)),
    Case(
        "prompt-file-empty",
        ("predict", "--ckpt_path", "ckpt/last.ckpt", "--prompt_file", "none.txt", "--output", "run/out.jsonl"),
        ("none.txt",),
        write("none.txt", "\n\n"),
    ),
    Case(
        "prompt-file-malformed-jsonl",
        (*PREDICT_OUT, "--prompt_file", "p.jsonl"),
        ("p.jsonl:2",),
        write("p.jsonl", jsonl({"prompt": "fine"}, "{broken")),
    ),
    Case(
        "prompt-file-no-prompt-field",
        (*PREDICT_OUT, "--prompt_file", "p.jsonl"),
        ("p.jsonl:1",),
        write("p.jsonl", jsonl({"text": "no prompt field"})),
    ),
    Case("sampling-top-k-0", (*PREDICT_OUT, "--model.top_k", "0"), ("top_k",)),  # item 11
    Case("sampling-top-k-negative", (*PREDICT_OUT, "--model.top_k", "-3"), ("top_k",)),  # item 11
    Case("sampling-temperature-negative", (*PREDICT_OUT, "--model.temperature", "-1"), ("temperature",)),  # 11
    Case("sampling-temperature-nan", (*PREDICT_OUT, "--model.temperature", "nan"), ("temperature",)),
    Case("sampling-top-p-1.5", (*PREDICT_OUT, "--model.top_p", "1.5"), ("top_p",)),  # item 11
    Case("sampling-top-p-2", (*PREDICT_OUT, "--model.top_p", "2.0"), ("top_p",)),  # item 11
    Case("sampling-top-p-negative", (*PREDICT_OUT, "--model.top_p", "-0.5"), ("top_p",)),
    Case("sampling-max-new-tokens-negative", (*PREDICT_OUT, "--model.max_new_tokens", "-5"), ("max_new_tokens",)),
    Case("sampling-max-new-tokens-over-context", (*PREDICT_OUT, "--model.max_new_tokens", "5000"), ("max_new_tokens",)),
    # --- predict --output -----------------------------------------------------------------------------
    Case("output-parent-is-a-file", (*PREDICT, "--output", "keep.jsonl/out.jsonl"), ("keep.jsonl",)),  # item 14
    Case("output-is-a-folder", (*PREDICT, "--output", "corpus"), ("corpus",)),
]


def _user_files(workdir: Path, shared: Shared, text_corpus: Path) -> None:
    """What a user has in the folder they run the command in (``corpus/`` is conftest's ``text_corpus``)."""
    assert text_corpus == workdir / "corpus"
    for name in ("debug.yaml", "text.yaml"):
        shutil.copy(CONFIGS / name, workdir / name)
    (workdir / "ckpt").mkdir()
    shutil.copy(shared.checkpoint, workdir / "ckpt" / "last.ckpt")
    shutil.copytree(shared.export, workdir / "export")
    (workdir / "export" / "README.md").write_text("# my model\nNotes the user added to the export.\n")
    (workdir / "keep.jsonl").write_text('{"id": 0, "completion": "an earlier result"}\n')


def test_battery_has_over_80_distinct_cases():
    assert len(CASES) > 80 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, shared: Shared, tmp_path: Path, text_corpus: Path, monkeypatch, capfd):
    if case.id == "config-accelerator-gpu-on-cpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --trainer.accelerator gpu is not bad input here")
    monkeypatch.chdir(tmp_path)
    _user_files(tmp_path, shared, text_corpus)
    if case.setup is not None:
        case.setup(tmp_path)
    if case.earlier_run is not None:
        with as_a_users_process():
            assert run_main([arg.format(cache=shared.cache) for arg in case.earlier_run]) == 0
    argv = [arg.format(cache=shared.cache) for arg in case.argv]
    before, cache_before = snapshot(tmp_path), snapshot(shared.cache)
    capfd.readouterr()
    with as_a_users_process(case.memory_gb):
        code = run_main(argv)
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    problems = [] if code != 0 else ["exit code 0"]
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, not one")
    elif missing := [name for name in case.names if name not in lines[0]]:
        problems.append(f"the error does not name {missing}")
    problems += changes(before, snapshot(tmp_path), new_allowed_under=("run",))
    problems += [c for c in changes(cache_before, snapshot(shared.cache)) if not c.startswith("new: ")]
    shown = lines if len(lines) <= 12 else [*lines[:8], f"... ({len(lines) - 11} more lines)", *lines[-3:]]
    assert not problems, f"exit code {code}; " + "; ".join(problems) + "; stderr:\n" + "\n".join(shown)
    if case.check is not None:
        case.check(tmp_path)


# --- what the issue asks of inputs that are not errors ---------------------------------------------------
def _run_in(workdir: Path, argv: list[str], monkeypatch) -> int:
    monkeypatch.chdir(workdir)
    with as_a_users_process():
        return run_main(argv)


def test_reexporting_into_an_earlier_export_keeps_what_the_user_added(shared, tmp_path, monkeypatch, capfd):
    """Item 1: re-exporting replaces our files (or refuses in one line), never the README or evals the user added."""
    target = tmp_path / "export"
    shutil.copytree(shared.export, target)
    (target / "README.md").write_text("# my model\n")
    (target / "evals").mkdir()
    (target / "evals" / "scores.json").write_text('{"exact_match": 0.5}\n')
    shutil.copy(shared.checkpoint, tmp_path / "last.ckpt")
    added = {key: value for key, value in snapshot(target).items() if key.startswith(("README", "evals"))}
    before = snapshot(target)
    capfd.readouterr()
    code = _run_in(tmp_path, ["export", "--ckpt_path", "last.ckpt", "--out", "export"], monkeypatch)
    lines = capfd.readouterr().err.strip().splitlines()
    if code == 0:
        assert {key: value for key, value in snapshot(target).items() if key in added} == added
        from lightningllm.model import GPT

        GPT.from_pretrained(target)  # and the export itself is whole
    else:
        assert len(lines) == 1 and "export" in lines[0], lines
        assert snapshot(target) == before


def test_exported_files_share_one_file_mode(shared):
    """Item 14: model.safetensors is not private (0600) while config.json and tokenizer.json are not."""
    modes = {path.name: path.stat().st_mode & 0o777 for path in shared.export.iterdir()}
    assert len(set(modes.values())) == 1, modes


def test_default_max_new_tokens_fits_a_128_token_context(shared, tmp_path, monkeypatch):
    """Item 11: the README's ``predict --model.init_from`` on a 128-token model works with the defaults,
    and ``--model.on_prompt_too_long crop`` keeps the end of a prompt that does not fit."""
    from lightningllm.data.tokenizer import Tokenizer
    from lightningllm.model import GPT, GPTConfig

    tokenizer = Tokenizer.from_file(shared.export / "tokenizer.json")
    GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size, block_size=128)).save_pretrained(tmp_path / "m")
    shutil.copy(shared.export / "tokenizer.json", tmp_path / "m" / "tokenizer.json")
    base = ["predict", "--model.init_from", "m", "--output", "out.jsonl"]
    assert _run_in(tmp_path, [*base, "--prompt", "Once upon a time"], monkeypatch) == 0
    assert _run_in(tmp_path, [*base, "--prompt", TOO_LONG, "--model.on_prompt_too_long", "crop"], monkeypatch) == 0
    (record,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert record["completion_tokens"] > 0


def test_a_seeded_prompt_continues_the_same_in_any_batch(shared, tmp_path, monkeypatch):
    """Item 11: each prompt has its own generator stream, so its completion does not depend on its neighbours."""
    shutil.copy(shared.checkpoint, tmp_path / "last.ckpt")
    sample = ["--model.temperature", "1.0", "--model.sample_seed", "7", "--model.max_new_tokens", "12"]
    alone = ["predict", "--ckpt_path", "last.ckpt", "--prompt", PROMPT, *sample, "--output", "alone.jsonl"]
    crowd = ["predict", "--ckpt_path", "last.ckpt", "--prompt", "Q: Liam has 5 coins.\\nA:", "--prompt", PROMPT]
    assert _run_in(tmp_path, alone, monkeypatch) == 0
    assert _run_in(tmp_path, [*crowd, *sample, "--output", "crowd.jsonl"], monkeypatch) == 0
    completion = {
        name: [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()][-1]["completion"]
        for name in ("alone", "crowd")
    }
    assert completion["alone"] == completion["crowd"]
