"""GPT.save_pretrained / from_pretrained: the files are checked against each other before a model is built."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file, save_model

from lightningllm.model import GPT, GPTConfig
from tests.conftest import REPO


def tiny(**overrides) -> GPTConfig:
    return GPTConfig.from_name("debug", vocab_size=128, **overrides)


@pytest.fixture
def saved(tmp_path) -> Path:
    GPT(tiny()).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | changes))


def one_line_error(folder: Path, error=ValueError) -> str:
    with pytest.raises(error) as info:
        GPT.from_pretrained(folder)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    return message


def test_saved_files_have_the_usual_mode_not_0600(saved):
    umask = os.umask(0)
    os.umask(umask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in saved.iterdir()}
    assert modes == {"config.json": 0o666 & ~umask, "model.safetensors": 0o666 & ~umask}


def test_a_model_saved_by_safetensors_save_model_still_loads(tmp_path):
    """Exports written before the header checks (by ``safetensors.torch.save_model``) read the same way."""
    model = GPT(tiny(pos_emb="rope")).eval()
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    save_model(model, str(tmp_path / "model.safetensors"))
    loaded = GPT.from_pretrained(tmp_path).eval()
    assert loaded.lm_head.weight is loaded.wte.weight
    idx = torch.randint(0, 128, (1, 12))
    torch.testing.assert_close(loaded(idx), model(idx), rtol=0, atol=0)


def test_a_tampered_config_fails_before_any_model_is_built(saved):
    """Item 12: a small config.json with n_layer 100000 and n_embd 8192 is refused without allocating.

    In a child process, whose peak memory (``ru_maxrss``) must barely move; its address space is
    capped 1 GiB above the start, so building the model would fail with a memory error instead.
    """
    edit_config(saved, n_layer=100_000, n_embd=8192, n_head=64)
    assert (saved / "config.json").stat().st_size < 600
    code = f"""
import json, resource
from lightningllm.model import GPT

peak = dict(line.split(":") for line in open("/proc/self/status"))["VmPeak"].split()[0]
resource.setrlimit(resource.RLIMIT_AS, ((int(peak) << 10) + (1 << 30), resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    GPT.from_pretrained({str(saved)!r})
    error = None
except Exception as err:
    error = f"{{type(err).__name__}}: {{err}}"
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"error": error, "grew_kb": grew}}))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    needed = GPTConfig.from_dict(json.loads((saved / "config.json").read_text())).num_params()
    assert report["error"] == (
        f"ValueError: {saved / 'config.json'} (n_layer 100000, n_embd 8192) describes {needed:,} parameters but "
        f"{saved / 'model.safetensors'} holds {GPT(tiny()).num_params():,} values: the two files do not belong together"
    )
    assert report["grew_kb"] < 64 * 1024


def test_a_huge_block_size_is_refused_before_its_position_tables_are_computed(saved):
    edit_config(saved, block_size=10**9, pos_emb="rope")
    message = one_line_error(saved)
    assert message.startswith(f"{saved / 'config.json'}: block_size 1000000000 needs position tables of")


@pytest.mark.parametrize("keep", [0, 4, 8, 20, -100, -1], ids=["empty", "4B", "length", "mid-header", "mid", "1B"])
def test_a_truncated_safetensors_file_is_one_line_naming_it(saved, keep):
    weights = saved / "model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, keep % size)
    message = one_line_error(saved)
    assert message.startswith(f"{weights} is truncated: "), message


def test_bytes_past_the_tensors_are_refused(saved):
    with (saved / "model.safetensors").open("ab") as file:
        file.write(b"\0" * 16)
    assert one_line_error(saved) == f"{saved / 'model.safetensors'} has 16 bytes past the tensors its header describes"


def _rewrite_header(weights: Path, edit) -> None:
    """Replace the header of a safetensors file with ``edit(header)``, keeping the tensor bytes."""
    data = weights.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    raw = json.dumps(edit(header)).encode()
    raw += b" " * (-len(raw) % 8)
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


def _first_tensor(header: dict) -> str:
    return sorted(name for name in header if name != "__metadata__")[0]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda h: h | {_first_tensor(h): h[_first_tensor(h)] | {"dtype": "I64"}}, "has dtype I64, not one of"),
        (lambda h: h | {_first_tensor(h): h[_first_tensor(h)] | {"shape": [1, 2]}}, "needs 8 bytes, but its header"),
        (lambda h: h | {_first_tensor(h): {"dtype": "F32"}}, "is not (dtype, shape, data_offsets)"),
        (lambda h: [h], "its header is not a JSON object"),
    ],
    ids=["dtype", "shape-vs-bytes", "malformed", "not-an-object"],
)
def test_a_tampered_header_is_one_line_naming_the_file(saved, edit, expected):
    _rewrite_header(saved / "model.safetensors", edit)
    message = one_line_error(saved)
    assert message.startswith(str(saved / "model.safetensors")) and expected in message, message


def test_weights_of_another_shape_are_refused_by_name_and_shape(saved, tmp_path):
    """Weights of a model with a wider MLP, and weights with tensors the model does not have."""
    GPT(tiny(mlp_hidden=256)).save_pretrained(tmp_path / "wider")
    (saved / "model.safetensors").write_bytes((tmp_path / "wider" / "model.safetensors").read_bytes())
    message = one_line_error(saved)
    assert message == (
        f"{saved / 'model.safetensors'}: tensor blocks.0.mlp.fc.weight has shape [256, 32], but "
        f"{saved / 'config.json'} needs [128, 32]: the two files do not belong together"
    )
    weights = tmp_path / "wider" / "model.safetensors"
    GPT(tiny()).save_pretrained(tmp_path / "wider")
    save_file(load_file(str(weights)) | {f"extra.{i}": torch.zeros(4) for i in range(3)}, str(weights))
    assert one_line_error(tmp_path / "wider") == (
        f"{weights} has tensors the model of {tmp_path / 'wider' / 'config.json'} does not: "
        "['extra.0', 'extra.1', 'extra.2']"
    )


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"n_layer": 2,', "is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ("[1, 2]", "must hold a JSON object of GPTConfig fields, not list"),
        ({"n_layerz": 2}, "unknown field(s) ['n_layerz']"),
        ({"n_embd": "32"}, 'field n_embd must be an integer, got "32"'),
        ({"n_embd": 32.0}, "field n_embd must be an integer, got 32.0"),
        ({"bias": "yes"}, 'field bias must be true or false, got "yes"'),
        ({"norm": "batchnorm"}, 'field norm must be one of "layernorm", "rmsnorm", got "batchnorm"'),
        ({"n_kv_head": "all"}, 'field n_kv_head must be an integer or null, got "all"'),
        ({"vocab_size": None}, "field vocab_size is null"),
        ({"n_head": 5}, "GPTConfig.n_embd (32) must be divisible by n_head (5)"),
        ("missing:norm_eps", "missing field(s) ['norm_eps']"),
    ],
    ids=[
        "syntax",
        "list",
        "unknown",
        "str",
        "float",
        "bool",
        "literal",
        "optional",
        "null-vocab",
        "invalid",
        "missing",
    ],
)
def test_config_json_errors_name_the_file_and_the_field(saved, content, expected):
    config = saved / "config.json"
    if isinstance(content, dict):
        edit_config(saved, **content)
    elif content.startswith("missing:"):
        data = json.loads(config.read_text())
        del data[content.removeprefix("missing:")]
        config.write_text(json.dumps(data))
    else:
        config.write_text(content)
    message = one_line_error(saved)
    assert message.startswith(str(config)) and expected in message, message


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "folder"])
def test_missing_files_are_named(saved, missing):
    if missing == "folder":
        assert one_line_error(saved / "gone", FileNotFoundError) == f"model folder {saved / 'gone'} does not exist"
        return
    (saved / missing).unlink()
    assert one_line_error(saved, FileNotFoundError).startswith(f"{saved / missing} not found")


def test_a_file_instead_of_a_folder_is_named(saved):
    assert one_line_error(saved / "config.json").startswith(f"{saved / 'config.json'} is not a model folder")
