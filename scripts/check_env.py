"""Finish the app install: repair the torchvision trap, then prove every runtime import works.

litdata declares torchvision as a dependency, but the registry's torchvision wheel is built
for CUDA torch. Against the CPU torch it registers no C++ ops, and the first
``import torchvision`` (done lazily by lightning and torchmetrics) raises
``RuntimeError: operator torchvision::nms does not exist``. lightningllm never needs
torchvision, so when it is broken we remove it; where it works (a GPU machine) we keep it.
"""

import subprocess
import sys

RUNTIME = ["torch", "lightning", "torchmetrics", "tokenizers", "litdata", "tensorboard", "jsonargparse"]


def _imports(module: str) -> tuple[bool, str]:
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    return proc.returncode == 0, lines[-1] if lines else ""


def main() -> int:
    have_tv = subprocess.run([sys.executable, "-m", "pip", "show", "-q", "torchvision"], capture_output=True)
    if have_tv.returncode == 0:
        ok, err = _imports("torchvision")
        if not ok:
            print(f"check_env: torchvision does not work with this torch ({err}); uninstalling it")
            subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "torchvision"], check=True)
    failed = []
    for module in RUNTIME:
        ok, err = _imports(module)
        if not ok:
            failed.append(f"{module}: {err}")
    if failed:
        print("check_env: broken install:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    import torch

    print(f"check_env: all runtime imports work (torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
