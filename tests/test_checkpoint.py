"""Checkpoints and exports: what a checkpoint holds, ``lightningllm export``, and ``--model.init_from``."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors import safe_open

from lightningllm.checkpoint import EXPORT_FILES, EXPORT_MARKER, export_checkpoint, load_checkpoint
from lightningllm.cli import build_cli, main
from lightningllm.data import Tokenizer
from lightningllm.model import GPT, GPTConfig, generate
from lightningllm.tasks.reasoning import ReasoningDataModule
from lightningllm.training import LitGPT
from tests.conftest import CONFIGS, REPO, run_cli

DEBUG = str(CONFIGS / "debug.yaml")
# debug.yaml's data settings, so a CLI run in the same folder reuses the prepared shards and tokenizer.
DEBUG_DATA = dict(
    tokenizer_kind="bpe",
    vocab_size=384,
    num_train=2000,
    num_val=60,
    num_test=30,
    step_mix=(1, 1, 0, 0, 0),
    block_size=320,
)
# A shape unlike debug.yaml's model (n_embd 32, rope, block 384): init_from must take the export's. Its context
# holds debug.yaml's data.block_size (one whole 1- or 2-step problem per sample).
EXPORT_SHAPE = dict(vocab_size=None, n_layer=2, n_head=3, n_embd=48, block_size=320, pos_emb="learned")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def checkpoint(workdir) -> Path:
    """A lightningllm checkpoint of a few training steps on debug.yaml's data (trained in-process)."""
    L.seed_everything(0)
    data = ReasoningDataModule(**DEBUG_DATA, batch_size=8, cache_dir=str(workdir / ".cache" / "lightningllm"))
    module = LitGPT(GPTConfig.from_name("debug", **EXPORT_SHAPE), warmup_steps=2)
    trainer = L.Trainer(
        max_steps=4, logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[ModelCheckpoint(dirpath=workdir / "checkpoints", save_last=True)],
    )  # fmt: skip
    trainer.fit(module, data)
    return workdir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def exported(checkpoint, workdir) -> Path:
    """The checkpoint exported by the real command."""
    out = workdir / "exports" / "tiny"
    result = run_cli("export", "--ckpt_path", str(checkpoint), "--out", str(out), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(out) in result.stdout
    return out


def test_a_checkpoint_keeps_the_shape_once_as_its_only_hyperparameter(checkpoint):
    stored = torch.load(checkpoint, weights_only=True)
    assert list(stored["hyper_parameters"]) == ["config"]  # sampling and training settings stay the command line's
    assert stored["hyper_parameters"]["config"]["n_embd"] == EXPORT_SHAPE["n_embd"]
    assert "gpt_config" not in stored and not any("_orig_mod" in key for key in stored["state_dict"])
    model, tokenizer = load_checkpoint(checkpoint)
    assert model.config.vocab_size == tokenizer.vocab_size  # taken from the data's tokenizer


def test_export_writes_config_weights_tokenizer_and_the_marker_only(exported, checkpoint):
    assert sorted(p.name for p in exported.iterdir()) == sorted([*EXPORT_FILES, EXPORT_MARKER])
    assert json.loads((exported / EXPORT_MARKER).read_text())["files"] == list(EXPORT_FILES)
    assert [p.name for p in exported.parent.iterdir()] == ["tiny"]  # no temporary folder left behind
    stored = torch.load(checkpoint, weights_only=True)
    assert json.loads((exported / "config.json").read_text()) == stored["hyper_parameters"]["config"]
    assert Tokenizer.from_file(exported).to_str() == stored["tokenizer"]
    with safe_open(str(exported / "model.safetensors"), "pt") as weights:
        names = set(weights.keys())
    assert len({"wte.weight", "lm_head.weight"} & names) == 1  # the tied embedding is stored once
    assert not any(name.startswith(("model.", "_orig_mod.")) for name in names)


def test_exported_files_have_the_usual_mode(exported):
    """model.safetensors is not 0600 (the safetensors writer's) beside 0644 siblings."""
    umask = os.umask(0)
    os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in exported.iterdir()} == dict.fromkeys(
        [*EXPORT_FILES, EXPORT_MARKER], 0o666 & ~umask
    )
    assert exported.stat().st_mode & 0o777 == 0o777 & ~umask


def test_exported_model_gives_the_checkpoints_logits_exactly(exported, checkpoint):
    module = LitGPT.load_from_checkpoint(checkpoint)  # still works in plain Python
    original = module.model.eval()
    loaded = GPT.from_pretrained(exported).eval()
    assert loaded.config == original.config and loaded.config.n_embd == EXPORT_SHAPE["n_embd"]
    assert loaded.lm_head.weight is loaded.wte.weight
    prompt = "Q: Ava has 38 shells. She finds 45 more. How many shells does Ava have now?"
    ids = torch.tensor([Tokenizer.from_file(exported).encode(prompt)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), original(ids), rtol=0, atol=0)


def test_loading_an_export_imports_no_lightning_and_no_pickle(exported):
    code = f"""
import json, pickle, sys
import torch

def refuse(*args, **kwargs):
    raise AssertionError("pickle was used")

pickle.load = pickle.loads = pickle.Unpickler = torch.load = refuse
import tokenizers
from lightningllm.model import GPT, generate

model = GPT.from_pretrained({str(exported)!r}).eval()
tokenizer = tokenizers.Tokenizer.from_file({str(exported / "tokenizer.json")!r})
ids = tokenizer.encode("Q: Mia has 17 apples.", add_special_tokens=False).ids
new = generate(model, [ids], max_new_tokens=6, temperature=0)[0]
lightning = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric"))
print(json.dumps({{"ids": ids, "new": new, "lightning": lightning}}))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["lightning"] == []
    model = GPT.from_pretrained(exported).eval()
    assert report["new"] == generate(model, [report["ids"]], max_new_tokens=6, temperature=0)[0]


def test_export_of_a_compiled_models_checkpoint_strips_the_prefix(exported, checkpoint, tmp_path):
    stored = torch.load(checkpoint, weights_only=True)
    stored["state_dict"] = {k.replace("model.", "model._orig_mod.", 1): v for k, v in stored["state_dict"].items()}
    compiled = tmp_path / "compiled.ckpt"
    torch.save(stored, compiled)
    main(["export", "--ckpt_path", str(compiled), "--out", str(tmp_path / "out")])
    a, b = GPT.from_pretrained(exported), GPT.from_pretrained(tmp_path / "out")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) by its path, with a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def users_earlier_export(exported: Path, out: Path) -> dict[str, str]:
    """A copy of ``exported`` at ``out`` with a README and an evals/ folder the user added; their snapshot."""
    shutil.copytree(exported, out)
    (out / "README.md").write_text("# my model\n")
    (out / "evals").mkdir()
    (out / "evals" / "scores.json").write_text('{"exact_match": 0.5}\n')
    return {name: digest for name, digest in snapshot(out).items() if name.startswith(("README", "evals"))}


def test_reexporting_replaces_our_files_and_keeps_the_users(exported, checkpoint, tmp_path, capsys):
    out = tmp_path / "model"
    users = users_earlier_export(exported, out)
    (out / "model.safetensors").write_bytes(b"an export that went wrong")  # ours: it gets replaced
    main(["export", "--ckpt_path", str(checkpoint), "--out", str(out)])
    assert "exported" in capsys.readouterr().out
    after = snapshot(out)
    assert {name: after[name] for name in users} == users
    ours = {name: digest for name, digest in snapshot(exported).items()}
    assert {name: after[name] for name in ours} == ours
    assert sorted(after) == sorted([*users, *ours])  # no staging folder left behind
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_an_export_from_before_the_marker_is_replaced_when_it_holds_exactly_our_files(exported, checkpoint, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    for name in EXPORT_FILES:
        (out / name).write_text("from an older lightningllm")
    export_checkpoint(checkpoint, out)
    assert snapshot(out) == snapshot(exported)


def test_an_export_without_a_tokenizer_removes_ours_but_keeps_the_users_files(exported, checkpoint, tmp_path):
    stored = torch.load(checkpoint, weights_only=True)
    del stored["tokenizer"]
    torch.save(stored, tmp_path / "no_tokenizer.ckpt")
    out = tmp_path / "model"
    users = users_earlier_export(exported, out)
    export_checkpoint(tmp_path / "no_tokenizer.ckpt", out)
    assert not (out / "tokenizer.json").exists()
    assert json.loads((out / EXPORT_MARKER).read_text())["files"] == ["config.json", "model.safetensors"]
    assert {name: snapshot(out)[name] for name in users} == users
    GPT.from_pretrained(out)


def _bad_inputs(tmp_path: Path, checkpoint: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "corrupt.ckpt").write_bytes(b"this is not a checkpoint")
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}}, tmp_path / "foreign.ckpt")
    torch.save({"gpt_config": Path("a pickled object")}, tmp_path / "objects.ckpt")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "someones_folder").mkdir()
    (tmp_path / "someones_folder" / "notes.txt").write_text("keep me")
    (tmp_path / "project" / "src").mkdir(parents=True)  # item 1: a config.json does not make it an export
    (tmp_path / "project" / "config.json").write_text("{}")
    (tmp_path / "project" / "main.py").write_text("print('mine')")
    (tmp_path / "project" / "src" / "util.py").write_text("X = 1")
    (tmp_path / "older").mkdir()  # an export's files and one more, with no marker: not provably ours
    for name in [*EXPORT_FILES, "notes.txt"]:
        (tmp_path / "older" / name).write_text("{}")
    (tmp_path / "marked").mkdir()
    (tmp_path / "marked" / EXPORT_MARKER).write_text('{"files": ["main.py"]}')
    (tmp_path / "marked" / "main.py").write_text("print('mine')")
    ckpt, out = str(checkpoint), str(tmp_path / "out")
    return {
        "missing": (["--ckpt_path", str(tmp_path / "no.ckpt"), "--out", out], "does not exist"),
        "corrupt": (["--ckpt_path", str(tmp_path / "corrupt.ckpt"), "--out", out], "cannot read checkpoint"),
        "foreign": (["--ckpt_path", str(tmp_path / "foreign.ckpt"), "--out", out], "not written by lightningllm"),
        "objects": (["--ckpt_path", str(tmp_path / "objects.ckpt"), "--out", out], "could run arbitrary code"),
        "unwritable": (["--ckpt_path", ckpt, "--out", str(tmp_path / "a_file" / "out")], "cannot write the export"),
        "not_an_export": (["--ckpt_path", ckpt, "--out", str(tmp_path / "someones_folder")], "not a lightningllm"),
        "config_json_and_code": (["--ckpt_path", ckpt, "--out", str(tmp_path / "project")], "not a lightningllm"),
        "export_and_more": (["--ckpt_path", ckpt, "--out", str(tmp_path / "older")], "not a lightningllm"),
        "foreign_marker": (["--ckpt_path", ckpt, "--out", str(tmp_path / "marked")], f"its {EXPORT_MARKER} is not"),
    }


EXPORT_ERRORS = ["missing", "corrupt", "foreign", "objects", "unwritable", "not_an_export", "config_json_and_code"]


@pytest.mark.parametrize("case", [*EXPORT_ERRORS, "export_and_more", "foreign_marker"])
def test_export_errors_are_one_line_and_write_nothing(case, checkpoint, tmp_path, capsys):
    args, expected = _bad_inputs(tmp_path, checkpoint)[case]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        main(["export", *args])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    if case == "config_json_and_code":
        assert lines == [
            f"error: --out {tmp_path / 'project'} is a non-empty folder that is not a lightningllm export "
            f"(no {EXPORT_MARKER}): choose a new or empty folder"
        ]


EXPORT_CHILD = """
import json, resource, signal, sys, time
from lightningllm import checkpoint

ckpt_path, out, mode = sys.argv[1:]
if mode == "full":  # writes past 16 KiB fail with EFBIG, as writes to a full disk fail with ENOSPC
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 14, resource.RLIM_INFINITY))
else:  # the weights are written, then the export waits to be killed before moving its files in
    write = checkpoint._write_export

    def write_then_wait(*args):
        write(*args)
        print("written", flush=True)
        time.sleep(600)

    checkpoint._write_export = write_then_wait
try:
    checkpoint.export_checkpoint(ckpt_path, out)
    print(json.dumps({"error": None}))
except Exception as err:
    print(json.dumps({"error": f"{type(err).__name__}: {err}"}))
"""


def export_in_a_child(checkpoint: Path, out: Path, mode: str) -> subprocess.Popen:
    args = [sys.executable, "-c", EXPORT_CHILD, str(checkpoint), str(out), mode]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True)


def test_a_full_disk_leaves_the_earlier_export_and_the_users_files(exported, checkpoint, tmp_path):
    """Item 14: one line naming the folder; a new folder is not created, an earlier export is untouched."""
    out = tmp_path / "model"
    users_earlier_export(exported, out)
    before = snapshot(out)
    for target in (out, tmp_path / "new"):
        process = export_in_a_child(checkpoint, target, "full")
        stdout, _ = process.communicate(timeout=120)
        error = json.loads(stdout.strip().splitlines()[-1])["error"]
        assert error == f"OSError: cannot write the export to {target}: File too large"
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*EXPORT_FILES, EXPORT_MARKER, "README.md", "evals"])


def test_an_export_killed_half_way_leaves_the_earlier_one_and_the_next_cleans_up(exported, checkpoint, tmp_path):
    out = tmp_path / "model"
    users_earlier_export(exported, out)
    (out / "model.safetensors").write_bytes(b"an earlier export's weights")
    before = snapshot(out)
    process = export_in_a_child(checkpoint, out, "kill")
    assert process.stdout.readline().strip() == "written"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    (staging,) = [p for p in out.iterdir() if p.name.startswith(f"{EXPORT_MARKER}.tmp-")]
    assert {p.name for p in staging.iterdir()} == {*EXPORT_FILES, EXPORT_MARKER}  # killed with everything written
    assert {name: digest for name, digest in snapshot(out).items() if not name.startswith(staging.name)} == before
    export_checkpoint(checkpoint, out)
    assert not staging.exists()
    assert snapshot(out)["model.safetensors"] == snapshot(exported)["model.safetensors"]


@pytest.mark.parametrize("args", [["export", "--help"], ["--help"]], ids=["export_help", "help"])
def test_export_is_listed_in_the_help(args, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["lightningllm"])
    try:
        main(args)
    except SystemExit as exit_info:  # argparse's help exits; the top-level help simply returns
        assert exit_info.code == 0
    assert "lightningllm export" in " ".join(capsys.readouterr().out.split())


class StartingWeights(L.Callback):
    def on_train_start(self, trainer, module) -> None:
        self.state = {k: v.clone() for k, v in module.model.state_dict().items()}


def test_fit_starts_from_the_exported_shape_and_weights(exported, workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # debug.yaml's prepared shards (same tokenizer) are cached here
    monkeypatch.setattr("sys.argv", ["lightningllm"])
    cli = build_cli(
        ["--config", DEBUG, f"--model.init_from={exported}", "--trainer.max_steps=2", "--trainer.logger=false",
         "--trainer.limit_val_batches=0", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"],
        run=False,
    )  # fmt: skip
    start = StartingWeights()
    cli.trainer.callbacks.append(start)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.model.config == GPT.from_pretrained(exported).config  # not debug.yaml's model.config
    assert cli.model.hparams.config["n_embd"] == EXPORT_SHAPE["n_embd"]  # checkpoints carry the export's shape
    exported_state = GPT.from_pretrained(exported).state_dict()
    for name, value in exported_state.items():
        torch.testing.assert_close(start.state[name], value, rtol=0, atol=0, msg=name)
    assert not torch.equal(cli.model.model.wte.weight, exported_state["wte.weight"])  # and then it trained


def test_fit_from_an_export_uses_its_tokenizer_for_text_data(exported, text_corpus, monkeypatch, capsys):
    monkeypatch.chdir(text_corpus.parent)
    monkeypatch.setattr("sys.argv", ["lightningllm"])
    cli = build_cli(
        ["--config", DEBUG, f"--model.init_from={exported}", "--data=lightningllm.data.TextDataModule",
         f"--data.sources=[{text_corpus}]", "--data.block_size=32", "--trainer.max_steps=1", "--trainer.logger=false",
         "--trainer.limit_val_batches=0", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"],
        run=False,
    )  # fmt: skip
    assert cli.datamodule.tokenizer_path == str(exported / "tokenizer.json")
    assert "using the tokenizer of model.init_from" in capsys.readouterr().out
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.model.tokenizer.to_str() == Tokenizer.from_file(exported).to_str()


def test_fit_from_an_export_on_reordered_reasoning_problems_uses_the_exports_tokenizer(exported, workdir, monkeypatch):
    """Other problem settings (no curriculum, shuffled) would train other BPE merges: the export's tokenizer is used."""
    monkeypatch.chdir(workdir)
    monkeypatch.setattr("sys.argv", ["lightningllm"])
    cli = build_cli(
        ["--config", DEBUG, f"--model.init_from={exported}", "--data.curriculum=none", "--data.shuffle=true",
         "--data.num_train=300", "--trainer.max_steps=1", "--trainer.logger=false", "--trainer.limit_val_batches=0",
         "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"],
        run=False,
    )  # fmt: skip
    assert cli.datamodule.tokenizer_path == str(exported / "tokenizer.json")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.model.tokenizer.to_str() == Tokenizer.from_file(exported).to_str()


def test_fit_from_an_export_with_another_tokenizer_is_a_one_line_error(exported, text_corpus, monkeypatch, capsys):
    monkeypatch.chdir(text_corpus.parent)
    monkeypatch.setattr("sys.argv", ["lightningllm"])
    other = Tokenizer.train(["just a few characters"], kind="char").save(text_corpus.parent / "char.json")
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["fit", "--config", DEBUG, f"--model.init_from={exported}", "--data=lightningllm.data.TextDataModule",
             f"--data.sources=[{text_corpus}]", f"--data.tokenizer_path={other}", "--data.block_size=32",
             "--trainer.callbacks=[]"]
        )  # fmt: skip
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: the data's tokenizer") and str(exported / "tokenizer.json") in last


def test_predict_from_an_export_needs_no_checkpoint(exported, checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lightningllm"])
    output = tmp_path / "out.jsonl"
    prompt = "Q: Liam has 5 coins. He finds 4 more. How many coins does Liam have now?\nA:"
    main(
        ["predict", f"--model.init_from={exported}", "--prompt", prompt, "--model.max_new_tokens=8",
         "--model.temperature=0", "--output", str(output)]
    )  # fmt: skip
    module = LitGPT.load_from_checkpoint(checkpoint)
    expected = generate(module.model.eval(), [module.tokenizer.encode(prompt)], max_new_tokens=8, temperature=0)[0]
    assert json.loads(output.read_text())["completion"] == module.tokenizer.decode(expected)
