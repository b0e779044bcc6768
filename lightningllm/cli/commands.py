"""The ``lightningllm`` entry point: top-level help, ``export``, and shortcuts expanded into LightningCLI arguments.

``lightningllm fit|validate|test|predict`` run LightningCLI (``lightningllm.cli.app``);
``predict`` also takes ``--prompt TEXT`` (repeatable), ``--prompt_file FILE``, ``--output
FILE`` and ``--quantize int8`` (``--model.quantize``), and needs only ``--ckpt_path`` (or
``--model.init_from``). ``export --format hf|gguf`` writes a transformers folder or a GGUF file
(``lightningllm.interop``). ``validate`` and ``test`` with only ``--ckpt_path`` take the run's config from
the checkpoint. Every ``--ckpt_path`` is a ``.ckpt`` file or a sharded folder (``ModelParallelStrategy``'s
``last.ckpt/``). ``lightningllm export`` writes a portable model folder and loads no Lightning. Errors in
the user's data, config or checkpoint end in one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lightningllm import signals
from lightningllm.cli.errors import check_config_files

FORMATS = ("native", "hf", "gguf")
QUANTS = ("f16", "q8_0")

PREDICT_SHORTCUTS = ("--prompt", "--prompt_file", "--output", "--quantize")
QUANTIZE = ("int8",)

TOP_LEVEL_HELP = """\
usage: lightningllm {fit,validate,test,predict,chat,serve,export} [options]

Build and train small GPT-style language models with Lightning.

subcommands:
  fit        train a model: lightningllm fit --config configs/demo.yaml
  validate   validation loss (and task score) of a checkpoint: --ckpt_path C
  test       test metrics of a checkpoint (and its task's held-out score): --ckpt_path C
  predict    generate: --ckpt_path C --prompt TEXT [--prompt_file F] [--output F.jsonl] [--quantize int8]
  chat       talk to a model in the terminal: lightningllm chat --ckpt_path C
  serve      an OpenAI-compatible HTTP API: lightningllm serve --ckpt_path C [--port 8000] [--quantize int8]
  export     a portable model folder (config.json, model.safetensors, tokenizer.json):
             lightningllm export --ckpt_path C --out DIR [--format native|hf|gguf] [--quantize int8]

Every option of a subcommand, with its documentation: lightningllm SUBCOMMAND --help.
Configs (commented YAML) live in configs/; `lightningllm fit --config X --print_config` prints
a complete, re-runnable config. A run's logs and checkpoints go under --trainer.default_root_dir.
"""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(TOP_LEVEL_HELP, end="")  # without importing Lightning: answers in a fraction of a second
        return
    if argv[:1] != ["serve"]:  # the server's uvicorn handles SIGTERM/SIGINT itself: it drains, then stops
        signals.install()  # SIGTERM/SIGINT: clean up, save where training is, exit 143/130
    try:
        if argv[:1] == ["export"]:
            export(argv[1:])
            return
        if argv[:1] == ["serve"]:
            serve(argv[1:])
            return
        if argv[:1] == ["chat"]:
            chat(argv[1:])
            return
        check_config_files(argv)
        argv, predict_output = expand_predict_shortcuts(argv)
        argv = config_from_checkpoint(argv, given_checkpoint(argv))
        from lightningllm.cli.app import run

        run(argv, predict_output)
    except SystemExit as stop:
        signum = signals.received()
        if signum is None or (stop.code not in (None, 0) and not isinstance(stop, signals.Interrupted)):
            raise
        if not signals.reported():
            print(f"interrupted by {signals.Interrupted(signum).name}", file=sys.stderr)
        sys.exit(128 + signum)  # Lightning's own SIGTERM exit has code 0: a scheduler would see success
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError) as err:  # ImportError: a missing extra
        if os.environ.get("LIGHTNINGLLM_DEBUG"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)


def one_line(err: BaseException) -> str:
    """The first line of the error that started it all: jsonargparse wraps a class's own ``ValueError``
    (say, a data module refusing ``vocab_size``) in "Does not validate against any of the Union subtypes"."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _option(argv: list[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in ``argv`` (the last one), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def expand_predict_shortcuts(argv: list[str]) -> tuple[list[str], str | None]:
    """Turn ``--prompt X --prompt_file F --output O`` into the data-module arguments they stand for."""
    if not argv or argv[0] != "predict":
        return argv, None
    given = {arg.split("=", 1)[0] for arg in argv}
    if not given & {"--prompt", "--prompt_file", "--data", "--config", "-c", "-h", "--help", "--print_config"}:
        raise ValueError("predict needs prompts: --prompt TEXT (repeatable) or --prompt_file FILE")
    prompts, prompt_file, output, rest = [], None, None, []
    i = 0
    while i < len(argv):
        arg, value = argv[i], None
        name = arg.split("=", 1)[0]
        if name in PREDICT_SHORTCUTS:
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise ValueError(f"{name} needs a value")
            if name == "--prompt":
                prompts.append(value)
            elif name == "--quantize":
                rest.append(f"--model.quantize={check_quantize(value, 'predict')}")
            elif name == "--prompt_file":
                prompt_file = value
            else:
                output = value
        else:
            rest.append(arg)
        i += 1
    if prompts or prompt_file:
        data = ["--data=lightningllm.data.PromptDataModule", f"--data.prompts={json.dumps(prompts)}"]
        if prompt_file:
            data.append(f"--data.prompt_file={prompt_file}")
        # Before any --data.* option the user gave (e.g. --data.chat true), which needs the class set first.
        at = next((i for i, arg in enumerate(rest) if arg.startswith("--data.")), len(rest))
        rest[at:at] = data
    return rest, output


def check_quantize(value: str | None, command: str) -> str | None:
    """``--quantize``'s value, or a one-line ``ValueError`` naming the choices."""
    if value is not None and value not in QUANTIZE:
        raise ValueError(f"lightningllm {command}: --quantize must be {' or '.join(QUANTIZE)}, got {value!r}")
    return value


def given_checkpoint(argv: list[str]) -> dict | None:
    """The checkpoint named by ``--ckpt_path`` (a file or a sharded folder; not ``last``/``best``), read safely.

    Read here, memory-mapped (a sharded folder: its index and ``meta.pt``, not its weights), so that a
    missing, corrupt or foreign checkpoint is one clear line before LightningCLI reads it itself.
    """
    ckpt_path = _option(argv, "--ckpt_path")
    if ckpt_path in (None, "last", "best", "hpc", "registry") or any(a in ("-h", "--help") for a in argv):
        return None
    from lightningllm.checkpoint import check_checkpoint, read_checkpoint

    checkpoint = read_checkpoint(ckpt_path, weights=False)
    check_checkpoint(checkpoint, ckpt_path)
    return checkpoint


def config_from_checkpoint(argv: list[str], checkpoint: dict | None) -> list[str]:
    """``validate``/``test --ckpt_path C`` without ``--config`` or ``--data``: the run's config, from C.

    The ``lightningllm`` command stores the config of the run in every checkpoint it writes; the
    weights come from the checkpoint, so ``model.init_from`` is dropped.
    """
    given = {arg.split("=", 1)[0] for arg in argv}
    if argv[:1] not in (["validate"], ["test"]) or checkpoint is None or "--config" in given or "--data" in given:
        return argv
    from lightningllm.checkpoint import RUN_CONFIG_KEY

    ckpt_path = _option(argv, "--ckpt_path")
    stored = checkpoint.get(RUN_CONFIG_KEY)
    if stored is None:
        raise ValueError(
            f"checkpoint {ckpt_path} does not record the data it was trained on (it was not written by `lightningllm "
            "fit`): add --config CONFIG (the one it was trained with), or --data CLASS and its --data.* options"
        )
    return [argv[0], f"--config={stored}", "--model.init_from=null", *argv[1:]]


class _OneLineParser(argparse.ArgumentParser):
    """argparse that raises a one-line ``ValueError`` instead of printing its usage and exiting."""

    def error(self, message: str):
        raise ValueError(f"{self.prog}: {message} (see {self.prog} --help)")


def export(argv: list[str]) -> None:
    """``lightningllm export``: a checkpoint → our model folder, a transformers folder, or a GGUF file."""
    parser = _OneLineParser(
        prog="lightningllm export",
        description="Write a checkpoint's model (and tokenizer) for use elsewhere, with no pickle: our folder "
        "(config.json, model.safetensors, tokenizer.json) that GPT.from_pretrained(DIR) loads and `fit "
        "--model.init_from DIR` trains on from; a Hugging Face transformers folder (--format hf); or one GGUF "
        "file for llama.cpp (--format gguf).",
    )
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a checkpoint written by `lightningllm fit` (a .ckpt file or a sharded folder), or an export folder "
        "(ours or a transformers one) to convert",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="folder to write (new, empty, or an earlier export to replace); with --format gguf a new .gguf file",
    )
    parser.add_argument(
        "--format",
        default="native",
        choices=FORMATS,
        help="native (default): lightningllm's folder; hf: GPT2LMHeadModel or LlamaForCausalLM with its tokenizer "
        "files (AutoModelForCausalLM.from_pretrained loads it); gguf: a GGUF file (Llama-style models)",
    )
    parser.add_argument(
        "--quant",
        choices=QUANTS,
        help="with --format gguf: f16 (default) or q8_0 weights",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE,
        help="with --format native: int8 block weights (about 3x smaller; for CPU inference with serve, chat and "
        "predict --model.init_from; such a folder does not train or convert)",
    )
    parser.add_argument(
        "--max_shard_size",
        help="with --format hf: largest weight file, e.g. 500MB or 2GB (default 5GB); larger models get shards "
        "and model.safetensors.index.json",
    )
    parser.add_argument(
        "--adapter_only",
        action="store_true",
        help="for a LoRA run's checkpoint: write its adapters alone (adapter_config.json, adapter_model.safetensors, "
        "peft's layout) instead of the merged model; with --format hf, on the modules of the transformers export "
        "of the base model, for PeftModel.from_pretrained",
    )
    args = parser.parse_args(argv)
    if args.quant is not None and args.format != "gguf":
        raise ValueError("lightningllm export: --quant applies to --format gguf only")
    if args.quantize is not None and args.format != "native":
        hint = " (GGUF's own int8 is --quant q8_0)" if args.format == "gguf" else ""
        raise ValueError(f"lightningllm export: --quantize int8 applies to --format native only{hint}")
    if args.quantize is not None and args.adapter_only:
        raise ValueError("lightningllm export: --quantize applies to a whole model, not to --adapter_only")
    if args.max_shard_size is not None and args.format != "hf":
        raise ValueError("lightningllm export: --max_shard_size applies to --format hf only")
    if args.adapter_only and args.format == "gguf":
        raise ValueError("lightningllm export: --adapter_only writes peft adapters (--format native or hf), not GGUF")
    max_shard_size = parse_size(args.max_shard_size, "--max_shard_size") if args.max_shard_size else None
    from lightningllm.checkpoint import EXPORT_MARKER, export_adapter, export_checkpoint, export_gguf

    if args.adapter_only:
        out = export_adapter(args.ckpt_path, args.out, args.format)
        files = "adapter_config.json, adapter_model.safetensors"
        print(f"exported the LoRA adapters of {args.ckpt_path} to {out}/ ({files})")
        return
    if args.format == "gguf":
        out = export_gguf(args.ckpt_path, args.out, args.quant or "f16")
        print(f"exported {args.ckpt_path} to {out} (GGUF, {args.quant or 'f16'}; {out.stat().st_size:,} bytes)")
        return

    out = export_checkpoint(args.ckpt_path, args.out, args.format, max_shard_size, args.quantize)
    marker = json.loads((out / EXPORT_MARKER).read_text(encoding="utf-8"))
    print(f"exported {args.ckpt_path} to {out}/ ({', '.join(marker['files'])})")
    if not (out / "tokenizer.json").is_file():
        print("note: the checkpoint holds no tokenizer (its data module had none), so neither does the export")


def _model_source(parser: argparse.ArgumentParser) -> None:
    """``--ckpt_path C`` or ``--model DIR``: the model a command runs (``args.ckpt_path or args.model``)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="a checkpoint written by `lightningllm fit`")
    source.add_argument("--model", help="an export folder (lightningllm's, or a transformers one)")


def _quantize_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE,
        help="int8: run the block linears with int8 weights (torch's dynamic quantization, CPU); faster from "
        "small-10m's width up, slower on tiny models (BENCHMARKS.md)",
    )


def serve(argv: list[str]) -> None:
    """``lightningllm serve``: the model of a checkpoint or export behind an OpenAI-compatible HTTP API."""
    parser = _OneLineParser(
        prog="lightningllm serve",
        description="Serve a model over HTTP with OpenAI's API (/v1/completions, /v1/chat/completions, /v1/models, "
        "/health); concurrent requests are decoded together. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    _model_source(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--max_batch", type=int, default=32, help="most sequences decoded together (default 32)")
    parser.add_argument(
        "--max_tokens", type=int, help="largest max_tokens a request may ask for (default: the context)"
    )
    parser.add_argument("--name", help="the model's id in the API (default: the run's or the folder's name)")
    _quantize_option(parser)
    args = parser.parse_args(argv)
    if args.max_batch < 1:
        raise ValueError(f"lightningllm serve: --max_batch must be at least 1, got {args.max_batch}")
    from lightningllm.serve.server import serve as run_server

    run_server(
        args.ckpt_path or args.model, args.host, args.port, args.max_batch, args.max_tokens, args.name, args.quantize
    )


def chat(argv: list[str]) -> None:
    """``lightningllm chat``: an interactive chat with the model of a checkpoint or export, streamed."""
    parser = _OneLineParser(
        prog="lightningllm chat",
        description="Talk to a model: each line you type is a user turn, the answer streams back. /reset starts "
        "over, /quit leaves; the oldest turns are dropped (and the chat says so) when the context fills up.",
    )
    _model_source(parser)
    parser.add_argument("--system", help="a system message put before the conversation")
    parser.add_argument("--max_tokens", type=int, default=128, help="longest answer in tokens (default 128)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature, 0 greedy (default 0.8)")
    parser.add_argument("--top_p", type=float, default=0.95, help="nucleus sampling threshold (default 0.95)")
    parser.add_argument("--seed", type=int, help="seed each answer's sampling (reproducible chats)")
    _quantize_option(parser)
    args = parser.parse_args(argv)
    from lightningllm.model.generate import check_sampling
    from lightningllm.serve.chat import chat as run_chat

    check_sampling(temperature=args.temperature, top_p=args.top_p)
    run_chat(
        args.ckpt_path or args.model,
        args.system,
        args.max_tokens,
        args.temperature,
        args.top_p,
        args.seed,
        args.quantize,
    )


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str, option: str) -> int:
    """Bytes of a size like ``500MB``, ``2GB``, ``1.5GiB`` or ``1000000``; a one-line ``ValueError`` otherwise."""
    number, unit = text.strip(), ""
    while number and not (number[-1].isdigit() or number[-1] == "."):
        number, unit = number[:-1], number[-1] + unit
    try:
        size = float(number) * _UNITS[unit.strip().upper()]
    except (ValueError, KeyError):
        raise ValueError(
            f"{option} {text!r} is not a size: give bytes or a number with KB, MB, GB (or KiB, MiB, GiB)"
        ) from None
    if size < 1:
        raise ValueError(f"{option} {text!r} must be at least one byte")
    return int(size)
