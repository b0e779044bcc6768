"""The ``lightningllm`` command end to end: fit, test, predict from a checkpoint, run folders, configs, bad input."""

import json
from pathlib import Path

import pytest
import torch

from lightningllm.checkpoint import RUN_CONFIG_KEY
from lightningllm.training import LitGPT
from tests.conftest import CONFIGS, run_cli

DEBUG = str(CONFIGS / "debug.yaml")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A debug model trained for 20 steps in its own folder (logs/ and .cache/ land there)."""
    workdir = tmp_path_factory.mktemp("run")
    result = run_cli("fit", "--config", DEBUG, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def last_checkpoint(workdir: Path) -> Path:
    return workdir / "logs" / "debug" / "checkpoints" / "last.ckpt"


def test_fit_fast_dev_run(tmp_path):
    result = run_cli("fit", "--config", DEBUG, "--trainer.fast_dev_run=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parameters" in result.stdout  # the parameter breakdown is printed at start-up


def test_fit_writes_checkpoint_and_tensorboard_logs(trained_run):
    assert last_checkpoint(trained_run).is_file()
    assert (last_checkpoint(trained_run).parent / "best.ckpt").is_file()  # the best by val/loss
    (events,) = (trained_run / "logs" / "debug" / "version_0").glob("events.out.tfevents.*")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    expected = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_sec", "val/loss", "val/ppl", "val/bpb"}
    assert expected | {"val/exact_match"} <= scalars
    assert "hp_metric" not in scalars  # no -1 placeholder
    steps = {tag: [e.step for e in accumulator.Scalars(tag)] for tag in ("train/loss", "train/grad_norm")}
    assert steps["train/grad_norm"] == steps["train/loss"] == [4, 9, 14, 19]  # log_every_n_steps: 5

    # Hyperparameters: the resolved model shape, the data module's and the trainer's settings, linked to val/loss.
    content = accumulator.PluginTagToContent("hparams")
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = {k: v.number_value or v.string_value for k, v in hparams.session_start_info.hparams.items()}
    assert values["config/vocab_size"] == 384  # the tokenizer's size: the config left it unset
    assert values["config/n_layer"] == 2 and values["learning_rate"] == 3e-3
    assert values["data/class"] == "ReasoningDataModule" and values["data/num_train"] == 2000
    assert values["trainer/precision"] == "32-true" and values["trainer/seed"] == 1337
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {"val/loss", "val/exact_match"} <= {m.name.tag for m in experiment.metric_infos}

    # Samples: two held-out questions continued at each of the two validations.
    samples = accumulator.Tensors("samples/text_summary")
    assert [e.step for e in samples] == [10, 20]
    assert samples[0].tensor_proto.string_val[0].decode().count("```\nQ: ") == 2


def test_predict_needs_only_the_checkpoint(trained_run, tmp_path):
    output = tmp_path / "out.jsonl"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Q: Mia has 2 apples.\nA:"}) + "\n")
    result = run_cli(
        "predict", "--ckpt_path", str(last_checkpoint(trained_run)), "--prompt", "Q: Liam has 5 coins.\\nA:",
        "--prompt_file", str(prompts), "--output", str(output), "--model.max_new_tokens", "7",
        "--model.temperature", "0", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["Q: Liam has 5 coins.\nA:", "Q: Mia has 2 apples.\nA:"]
    assert all(r["completion_tokens"] == 7 and 0 < r["prompt_tokens"] < len(r["prompt"]) for r in records)
    assert records[0]["completion"] in result.stdout


def test_predict_chat_prompts_take_data_options_after_the_shortcuts(trained_run, tmp_path):
    result = run_cli(
        "predict", "--ckpt_path", str(last_checkpoint(trained_run)), "--prompt", "Two plus two?", "--data.chat",
        "true", "--data.system", "Be terse.", "--output", "chat.jsonl", "--model.max_new_tokens", "3", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert record["prompt"] == "<|system|>Be terse.<|end|><|user|>Two plus two?<|end|><|assistant|>"


def test_test_subcommand_reports_exact_match(trained_run):
    result = run_cli("test", "--config", DEBUG, "--ckpt_path", str(last_checkpoint(trained_run)), cwd=trained_run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out test split (30 examples): exact match" in result.stdout
    assert "test/loss" in result.stdout


def test_validate_subcommand_from_checkpoint(trained_run):
    result = run_cli("validate", "--config", DEBUG, "--ckpt_path", str(last_checkpoint(trained_run)), cwd=trained_run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val/loss" in result.stdout and "val/exact_match" in result.stdout


def test_print_config_is_complete_and_rerunnable(tmp_path):
    printed = run_cli("fit", "--config", DEBUG, "--print_config", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert "n_layer: 2" in printed.stdout and "ReasoningDataModule" in printed.stdout
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed.stdout)
    rerun = run_cli("fit", "--config", str(saved), "--trainer.fast_dev_run=1", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]


def test_load_from_checkpoint_in_plain_python(trained_run):
    module = LitGPT.load_from_checkpoint(last_checkpoint(trained_run))
    assert module.tokenizer is not None and module.tokenizer.kind == "bpe"
    assert module.model.config.vocab_size >= module.tokenizer.vocab_size  # vocab came from the data
    ids = torch.tensor([module.tokenizer.encode("Q: Ava has 3 keys.")])
    assert module.model(ids).shape == (1, ids.shape[1], module.model.config.vocab_size)


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_parses(config, monkeypatch):
    from lightningllm.cli import build_cli

    monkeypatch.setattr("sys.argv", ["lightningllm"])  # pytest's own arguments are not the CLI's
    cli = build_cli(["--config", str(config)], run=False)
    assert cli.model.config.vocab_size is None  # no placeholder: the data module's tokenizer sets it
    root = Path(cli.trainer.default_root_dir)
    assert root == Path("logs") / config.stem  # every config's run folder is named after it
    assert [Path(cb.dirpath) for cb in cli.trainer.checkpoint_callbacks] == [Path.cwd() / root / "checkpoints"]
    assert Path(cli.trainer.logger.log_dir).parent == Path(root)


def test_missing_corpus_is_a_one_line_error(tmp_path):
    result = run_cli(
        "fit", "--config", DEBUG, "--data=lightningllm.data.TextDataModule",
        "--data.sources=[no/such/dir]", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: data source no/such/dir does not exist"
    assert "Traceback" not in result.stderr


def test_wrong_config_key_is_rejected_by_name(tmp_path):
    result = run_cli("fit", "--config", DEBUG, "--model.learnin_rate=0.1", cwd=tmp_path)
    assert result.returncode != 0
    assert "learnin_rate" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"this is not a checkpoint")
    result = run_cli("predict", "--ckpt_path", str(bad), "--prompt", "hi", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot read checkpoint {bad}")


def test_top_level_help_lists_subcommands_without_importing_lightning():
    import subprocess
    import sys

    code = "import sys\nfrom lightningllm.cli import main\nmain(['--help'])\nprint('lightning' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("False")
    for subcommand in ("fit", "validate", "test", "predict", "export"):
        assert f"\n  {subcommand} " in result.stdout


@pytest.mark.parametrize(
    "option, message",
    [
        ("--data.vocab_size=100", "error: data.vocab_size 100 is too small for byte-level BPE"),
        ("--model.config.n_embd=30", "error: GPTConfig.n_embd (30) must be divisible by n_head (4)"),
    ],
)
def test_a_value_a_class_refuses_is_one_line_naming_the_field(tmp_path, option, message):
    result = run_cli(
        "fit", "--config", str(CONFIGS / "text.yaml"), "--data.sources", str(tmp_path), option, cwd=tmp_path
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr and "Union subtypes" not in result.stderr


def test_validate_and_test_need_only_the_checkpoint(trained_run, tmp_path):
    """The checkpoint records the run's config: data, task callbacks and all."""
    checkpoint = str(last_checkpoint(trained_run))
    tested = run_cli(
        "test", "--ckpt_path", checkpoint, "--trainer.default_root_dir", str(tmp_path / "t"), cwd=trained_run
    )
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "held-out test split (30 examples): exact match" in tested.stdout
    validated = run_cli("validate", "--ckpt_path", checkpoint, cwd=trained_run)
    assert validated.returncode == 0, validated.stderr[-3000:]
    assert "val/loss" in validated.stdout and "val/exact_match" in validated.stdout


def test_a_checkpoint_without_its_run_config_says_what_to_add(trained_run, tmp_path):
    plain = tmp_path / "plain.ckpt"  # as a plain Trainer with LitGPT writes it
    checkpoint = torch.load(last_checkpoint(trained_run), weights_only=True)
    del checkpoint[RUN_CONFIG_KEY]
    torch.save(checkpoint, plain)
    result = run_cli("test", "--ckpt_path", str(plain), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: checkpoint {plain} does not record the data") and "add --config CONFIG" in line


def test_default_root_dir_holds_the_runs_logs_and_checkpoints(tmp_path):
    run_dir = tmp_path / "runs" / "mine"
    result = run_cli(
        "fit", "--config", DEBUG, "--trainer.max_steps=2", "--trainer.val_check_interval=2",
        f"--trainer.default_root_dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (
        list((run_dir / "version_0").glob("events.out.tfevents.*"))
        and (run_dir / "version_0" / "config.yaml").is_file()
    )
    assert not (tmp_path / "logs").exists()  # nothing went to the config's own folder


def test_a_new_fit_keeps_the_earlier_runs_checkpoints(tmp_path):
    args = ("fit", "--config", DEBUG, "--trainer.max_steps=2", "--trainer.val_check_interval=2")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoints = tmp_path / "logs" / "debug" / "checkpoints"
    earlier = (checkpoints / "last.ckpt").read_bytes()
    second = run_cli(*args, "--seed_everything=7", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    kept = tmp_path / "logs" / "debug" / "checkpoints.1"
    assert f"moved the earlier run's checkpoints from {checkpoints} to {kept}" in second.stdout
    assert (kept / "last.ckpt").read_bytes() == earlier
    assert (checkpoints / "last.ckpt").read_bytes() != earlier  # the new run's own
    resumed = run_cli(*args, "--trainer.max_steps=3", "--ckpt_path", str(checkpoints / "last.ckpt"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (tmp_path / "logs" / "debug" / "checkpoints.2").exists()  # resuming moves nothing


def test_predict_writes_no_log_folders(trained_run, tmp_path):
    result = run_cli(
        "predict", "--ckpt_path", str(last_checkpoint(trained_run)), "--prompt", "Q: Ava has 3 keys.\\nA:",
        "--model.max_new_tokens", "2", "--output", "out.jsonl", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_ddp_spawn_trains_from_the_command_line_on_two_cpu_processes(tmp_path):
    result = run_cli(
        "fit", "--config", DEBUG, "--trainer.strategy=ddp_spawn", "--trainer.accelerator=cpu", "--trainer.devices=2",
        "--trainer.max_steps=3", "--trainer.val_check_interval=3", "--trainer.limit_val_batches=1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parameters" in result.stdout
    assert (tmp_path / "logs" / "debug" / "checkpoints" / "last.ckpt").is_file()


def test_a_failing_predict_leaves_an_existing_output_untouched(trained_run, tmp_path):
    keep = tmp_path / "keep.jsonl"
    keep.write_text('{"id": 0, "completion": "earlier"}\n')
    result = run_cli(
        "predict", "--ckpt_path", str(last_checkpoint(trained_run)), "--prompt", "Q: " + "Mia has 2 apples. " * 60,
        "--output", str(keep), "--model.max_new_tokens", "2", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and "exceeds the model's block_size" in result.stderr.strip().splitlines()[-1]
    assert keep.read_text() == '{"id": 0, "completion": "earlier"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]  # no partial file left


def test_model_parallel_strategy_with_tensor_parallelism_is_refused_in_one_line(tmp_path):
    # LitGPT shards itself with FSDP2 over the data-parallel dimension (tests/training/test_fsdp.py); it has no
    # tensor-parallel plan. The strategy's default tensor_parallel_size ("auto") is the devices of a node.
    result = run_cli(
        "fit", "--config", DEBUG, "--trainer.accelerator=cpu", "--trainer.devices=2",
        "--trainer.strategy=ModelParallelStrategy", "--trainer.strategy.data_parallel_size=1",
        "--trainer.strategy.tensor_parallel_size=2", "--trainer.max_steps=2", cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()  # refused before any process starts or data is read
    assert line.startswith("error: trainer.strategy ModelParallelStrategy with tensor_parallel_size 2: LitGPT shards")
    assert "--trainer.strategy.tensor_parallel_size 1" in line
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.distcp"))


def test_an_error_inside_ddp_spawn_processes_is_one_error_line_and_exit_code_2(tmp_path):
    # It came back as the rank's traceback text (torch's ProcessRaisedException), exit code 1.
    result = run_cli(
        "fit", "--config", DEBUG, "--trainer.strategy=ddp_spawn", "--trainer.accelerator=cpu", "--trainer.devices=2",
        "--trainer.val_check_interval=1000", "--data.num_train=200", cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: `val_check_interval` (1000) must be less")
    assert "Traceback" not in result.stderr
