"""Run monitoring: the gradient norm, sample generations in TensorBoard, and the hyperparameters' HParams entry."""

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from lightningllm.data.contract import TokenDataModule
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPTConfig
from lightningllm.training import LitGPT, SampleGenerations
from lightningllm.training.monitoring import log_hyperparameters


def read_events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def total_norm(module: torch.nn.Module) -> float:
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None]).norm().item()


# --- train/grad_norm ---------------------------------------------------------------------------


class GradientRecorder(L.Callback):
    """Records the gradient norm just before the module's hook (callbacks run first) and after clipping."""

    def __init__(self):
        self.before: dict[int, float] = {}
        self.after: dict[int, float] = {}

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        self.before[trainer.global_step] = total_norm(module)

    def on_train_batch_end(self, trainer, module, *args) -> None:  # after the step, before the next zero_grad
        if trainer.global_step - 1 not in self.after:  # the batch that stepped, not the next micro-batch
            self.after[trainer.global_step - 1] = total_norm(module)


def fit_recording_grad_norms(precision: str, accelerator: str = "cpu", **trainer_args):
    L.seed_everything(0)
    module = LitGPT(GPTConfig.from_name("debug"), warmup_steps=1)
    logged: dict[int, float] = {}
    log = module.log

    def recording_log(name, value, *args, **kwargs):
        if name == "train/grad_norm":
            logged[module.global_step] = float(value)
        return log(name, value, *args, **kwargs)

    module.log = recording_log
    recorder = GradientRecorder()
    trainer = L.Trainer(
        precision=precision, accelerator=accelerator, callbacks=[recorder], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, **trainer_args,
    )  # fmt: skip
    blocks = torch.randint(0, 128, (32, 33))  # (N, T + 1) token blocks
    trainer.fit(module, DataLoader(blocks, batch_size=4))
    return logged, recorder


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_grad_norm_is_the_norm_before_clipping_on_logging_steps_only(precision):
    logged, recorder = fit_recording_grad_norms(
        precision, max_steps=4, accumulate_grad_batches=2, log_every_n_steps=2, gradient_clip_val=1e-6
    )
    # Lightning writes training logs after optimizer steps 2 and 4 (global_step 1 and 3 during the step).
    assert sorted(logged) == [1, 3]
    for step, value in logged.items():
        assert value == pytest.approx(recorder.before[step], rel=1e-5)  # the accumulated gradients' norm
        assert value > 1e-3 and recorder.after[step] <= 1.01e-6  # and clipping came after


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a GPU machine: pytest -m gpu)")
def test_grad_norm_is_unscaled_under_16_mixed():
    fp32, _ = fit_recording_grad_norms("32-true", "gpu", max_steps=1, log_every_n_steps=1)
    fp16, _ = fit_recording_grad_norms("16-mixed", "gpu", max_steps=1, log_every_n_steps=1)
    # The loss scaler multiplies gradients by 2**16; Lightning unscales them before the hook.
    assert fp16[0] == pytest.approx(fp32[0], rel=0.05)


# --- SampleGenerations ---------------------------------------------------------------------------


@pytest.fixture
def tiny_module() -> LitGPT:
    tokenizer = Tokenizer.train(["The quick brown fox jumps over the lazy dog. Q: A: 0123456789\n"], kind="char")
    module = LitGPT(GPTConfig.from_name("debug", vocab_size=64))
    module.build()
    module.tokenizer = tokenizer
    return module.train()


def test_samples_are_reproducible_and_leave_the_training_rng_and_mode_alone(tiny_module):
    callback = SampleGenerations(prompts=["The", "Q:\\nA:"], max_new_tokens=12, temperature=1.0, seed=7)
    assert callback.prompts == ["The", "Q:\nA:"]  # a literal \n in YAML becomes a newline
    rng = torch.get_rng_state()
    first = callback.samples(tiny_module)
    assert torch.equal(torch.get_rng_state(), rng)  # sampling drew from its own generator
    assert tiny_module.model.training
    assert callback.samples(tiny_module) == first  # same seed, same samples at every validation
    assert [prompt for prompt, _ in first] == ["The", "Q:\nA:"]
    other_seed = SampleGenerations(prompts=["The"], max_new_tokens=12, temperature=1.0, seed=8)
    assert other_seed.samples(tiny_module) != first[:1]  # the seed is what makes them repeat


class Questions(TokenDataModule):
    def sample_prompts(self, count: int) -> list[str]:
        return [f"Q{i}:" for i in range(count)]


def test_default_prompts_are_the_data_modules_sample_prompts():
    callback = SampleGenerations(num_prompts=3)
    assert callback.default_prompts(Questions()) == ["Q0:", "Q1:", "Q2:"]
    assert callback.default_prompts(TokenDataModule()) == ["The"]  # the contract's default
    assert callback.default_prompts(L.LightningDataModule()) == ["The"]  # a data module outside the contract
    assert callback.default_prompts(None) == ["The"]


def test_samples_are_logged_as_tensorboard_text_every_n_validations_on_rank_zero(tiny_module, tmp_path):
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = SimpleNamespace(
        sanity_checking=True, is_global_zero=True, loggers=[logger], global_step=0, datamodule=None
    )
    callback = SampleGenerations(prompts=["The"], every_n_val=2, max_new_tokens=8)
    callback.on_validation_epoch_end(trainer, tiny_module)  # the sanity check does not count
    trainer.sanity_checking = False
    for step in (10, 20, 30, 40):
        trainer.global_step = step
        callback.on_validation_epoch_end(trainer, tiny_module)
    trainer.is_global_zero, trainer.global_step = False, 60
    callback.on_validation_epoch_end(trainer, tiny_module)
    callback.on_validation_epoch_end(trainer, tiny_module)  # the 6th run: due, but not on rank zero
    logger.experiment.flush()
    events = read_events(tmp_path).Tensors("samples/text_summary")
    assert [e.step for e in events] == [20, 40]
    text = events[0].tensor_proto.string_val[0].decode()
    assert "**prompt 1**\n\n```\nThe\n```" in text and "temperature 0.8" in text


def test_every_n_val_must_be_positive():
    with pytest.raises(ValueError, match="every_n_val"):
        SampleGenerations(every_n_val=0)


# --- hyperparameters -----------------------------------------------------------------------------


def test_hyperparameters_name_real_metrics_and_write_no_placeholder(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="", version="", default_hp_metric=True)  # even with it on
    params = {"learning_rate": 1e-3, "betas": (0.9, 0.95), "top_k": None, "config": {"n_layer": 2}, "data": {}}
    log_hyperparameters(SimpleNamespace(loggers=[logger]), params, ["train/loss", "val/loss"])
    logger.save()
    logger.experiment.flush()

    from tensorboard.plugins.hparams import plugin_data_pb2

    events = read_events(tmp_path)
    assert events.Tags()["scalars"] == []  # no hp_metric=-1 (nor any other placeholder value)
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["train/loss", "val/loss"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["config/n_layer"].number_value == 2
    assert start.hparams["betas"].string_value == "[0.9, 0.95]"
    assert "top_k" not in start.hparams  # None is left blank
    saved = yaml.safe_load((tmp_path / "hparams.yaml").read_text())  # plain YAML: tuples became lists
    assert saved["betas"] == [0.9, 0.95] and saved["config"] == {"n_layer": 2}
