"""Training on a GPU (``device=cuda``) and over NCCL: run where CUDA is available, skipped elsewhere.

This project's CI machines have no GPU, so these tests skip there; ``make gpu`` runs them on a
machine with one (and the two-process test with two).  What they check is what the CPU tests of
``tests/test_device.py`` cannot: that the model really computes on the GPU, that the run it writes
matches a CPU run to the float32 tolerance of another device, and that two GPU processes under
torchrun (NCCL) train what one does."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from biornn.cli.main import main
from test_distributed import _torchrun
from test_train import TINY, data_dir  # noqa: F401  (the tiny names data set, a module fixture)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]

# no dropout (its masks come from another generator on the GPU); an ensemble takes the members' hooks
ARGS = [*TINY, "batch_size=15", "ensemble=2", "dropout=0", "threads=1"]


def _close(a_dir, b_dir, atol: float) -> None:
    a, b = load_file(str(a_dir / "model.safetensors")), load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert b[k].device.type == "cpu"  # saved weights are CPU tensors whatever the device
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=atol, msg=k)


def test_cuda_training_matches_the_cpu(data_dir, tmp_path, monkeypatch):  # noqa: F811
    from biornn import device as devices

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 on both devices
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    placed_on = []
    real_place = devices.place

    def place(model, device):
        handles = real_place(model, device)
        placed_on.append((device.type, next(model.parameters()).device.type, len(handles)))
        return handles

    monkeypatch.setattr(devices, "place", place)
    for name in ("cpu", "cuda"):
        assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(tmp_path / name), *ARGS,
                     f"device={name}"]) == 0
    # the cuda run's parameters were on the GPU, with hooks on the ensemble and its two members
    assert placed_on == [("cpu", "cpu", 0), ("cuda", "cuda", 6)]
    _close(tmp_path / "cpu", tmp_path / "cuda", atol=1e-3)  # another device's float32 kernels


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_over_nccl_train_what_one_does(data_dir, tmp_path):  # noqa: F811
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(one), *ARGS, "device=cuda"]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("BIORNN_DATA", "RANK", "WORLD_SIZE")}
    env.update({"OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    _torchrun(["train", "names", "--data-dir", str(data_dir), "--out", str(two), *ARGS, "device=cuda"], env, tmp_path)
    _close(one, two, atol=1e-4)
