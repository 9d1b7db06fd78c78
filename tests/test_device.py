"""The ``device`` option: its spellings, what it resolves to, the hooks that let a model compute on a
device while its callers pass and receive CPU tensors, and the training loop's refusals.

This machine has no GPU: the hooks are checked with PyTorch's ``meta`` device (tensors with shapes
and no data), which proves what moves where; CUDA itself is simulated only where a test says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from biornn import device as devices
from biornn.cli.main import main
from biornn.config import TrainConfig
from test_train import TINY, data_dir  # noqa: F401  (the tiny names data set, a module fixture)


def _fake_cuda(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:12", "auto"])
def test_device_spellings_accepted(name):
    TrainConfig(device=name).validate()


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "mps", "", "cpu:0"])
def test_device_spellings_refused(name):
    with pytest.raises(ValueError, match="device must be cpu, cuda, cuda:N or auto"):
        TrainConfig(device=name).validate()


def test_resolve_without_cuda(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=f"device={name}: no CUDA device is visible"):
            devices.resolve(name)


def test_resolve_with_gpus(monkeypatch):
    _fake_cuda(monkeypatch, 2)
    assert devices.resolve("auto", local_rank=0) == torch.device("cuda", 0)
    assert devices.resolve("cuda", local_rank=1) == torch.device("cuda", 1)  # torchrun: the rank's own GPU
    assert devices.resolve("cuda:1", local_rank=0) == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert devices.resolve("cuda") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="GPU 3 asked for, this machine has 2"):
        devices.resolve("cuda:3")
    with pytest.raises(ValueError, match="LOCAL_RANK=2: start at most 2 processes per machine"):
        devices.resolve("cuda", local_rank=2)


def test_backend_is_gloo_without_cuda(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    assert devices.process_group_backend() == "gloo"


class Recorder(nn.Module):
    """Records the device of each argument; returns CPU tensors (meta tensors cannot be copied back)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.seen: dict[str, torch.device] = {}

    def forward(self, x, lengths=None, state=None):
        self.seen = {"x": x.device, "lengths": None if lengths is None else lengths.device,
                     "state": None if state is None else state[0].device, "w": self.w.device}
        return torch.ones(2), (torch.zeros(1), torch.zeros(1))


def test_hooks_move_inputs_but_not_lengths():
    m = Recorder()
    handles = devices.place(m, torch.device("meta"))
    assert len(handles) == 2
    x, lengths, state = torch.zeros(2, 5), torch.tensor([5, 3]), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    out, (h, c) = m(x, lengths, state)
    meta, cpu = torch.device("meta"), torch.device("cpu")
    assert m.seen == {"x": meta, "lengths": cpu, "state": meta, "w": meta}
    assert out.device == h.device == c.device == cpu
    m(x, lengths=lengths, state=state)  # the same by keyword
    assert m.seen == {"x": meta, "lengths": cpu, "state": meta, "w": meta}
    m.to = lambda device: m.to_empty(device=device)  # meta tensors have no data to copy back
    devices.release(m, handles)
    assert handles == [] and m.w.device == cpu
    m(x, lengths)
    assert m.seen == {"x": cpu, "lengths": cpu, "state": None, "w": cpu}  # the hooks are gone


def test_place_on_the_cpu_changes_nothing():
    m = Recorder()
    assert devices.place(m, torch.device("cpu")) == []
    assert not m._forward_pre_hooks and not m._forward_hooks


def test_an_ensemble_hooks_its_members():
    from biornn.models import Ensemble

    ens = Ensemble([Recorder(), Recorder()])
    assert devices.hooked_modules(ens) == [ens, *ens.members]
    handles = devices.place(ens, torch.device("meta"))
    assert len(handles) == 6
    ens.members[1](torch.zeros(2, 5), torch.tensor([5, 3]))  # as member_logits calls it
    assert ens.members[1].seen["x"] == torch.device("meta") and ens.members[1].seen["lengths"] == torch.device("cpu")
    ens.to = lambda device: ens.to_empty(device=device)
    devices.release(ens, handles)
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in devices.hooked_modules(ens))


def test_moved_keeps_structure():
    t = torch.zeros(1)
    nt = torch.return_types.max((t, t))  # a namedtuple-like structseq is a tuple
    out = devices._moved({"a": [t, (t, 3)], "b": "text"}, torch.device("cpu"))
    assert out["a"][0] is t and out["a"][1][1] == 3 and out["b"] == "text"
    assert isinstance(devices._moved(nt, torch.device("cpu")), tuple)


def test_cpu_copy_is_a_copy():
    m = nn.Linear(2, 2)
    copy = devices.cpu_copy(m.state_dict())
    with torch.no_grad():
        m.weight.add_(1.0)
    assert not torch.equal(copy["weight"], m.weight)


def _run(args: list[str], capsys) -> tuple[int, list[str]]:
    code = main(args)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_train_on_missing_cuda_is_one_line(data_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    _fake_cuda(monkeypatch, 0)
    out = tmp_path / "run"
    code, err = _run(["train", "names", "--data-dir", str(data_dir), "--out", str(out), *TINY, "device=cuda"], capsys)
    assert code == 2 and len(err) == 1 and "device=cuda: no CUDA device is visible" in err[0]
    assert not out.exists()


def test_train_refuses_a_device_the_task_cannot_use(tmp_path, capsys, monkeypatch):
    _fake_cuda(monkeypatch, 1)  # resolves to cuda:0 without touching a GPU
    out = tmp_path / "run"
    code, err = _run(["train", "generate-names", "--out", str(out), "device=cuda"], capsys)
    assert code == 2 and len(err) == 1
    assert "task generate-names: device=cuda is not supported" in err[0] and "device=cpu" in err[0]
    assert not out.exists()


def test_auto_on_a_machine_without_cuda_trains_on_the_cpu(data_dir, tmp_path, monkeypatch):  # noqa: F811
    _fake_cuda(monkeypatch, 0)
    runs = {}
    for name in ("cpu", "auto"):
        out = tmp_path / name
        assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(out), *TINY, f"device={name}"]) == 0
        runs[name] = load_file(str(out / "model.safetensors"))
    assert runs["cpu"].keys() == runs["auto"].keys()
    assert all(torch.equal(runs["cpu"][k], runs["auto"][k]) for k in runs["cpu"])
    assert '"device": "auto"' in Path(tmp_path / "auto" / "config.json").read_text()


def _hooks_on_the_cpu(monkeypatch) -> list[int]:
    """Make ``place`` register its hooks on the CPU too (moves become no-ops), counting their calls,
    so that a whole training run goes through the hooked model exactly as it would on a GPU."""
    calls = [0]
    real_hook = devices._hook

    def counting_hook(module, device):
        handles = real_hook(module, device)
        handles.append(module.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1)))
        return handles

    def place(model, device):
        model.to(device)
        return [h for m in devices.hooked_modules(model) for h in counting_hook(m, device)]

    monkeypatch.setattr(devices, "_hook", counting_hook)
    monkeypatch.setattr(devices, "place", place)
    return calls


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


@pytest.mark.parametrize("extra", [["ensemble=1"], ["ensemble=2"]])
def test_training_through_the_hooks_gives_the_same_run(data_dir, tmp_path, monkeypatch, extra):  # noqa: F811
    args = ["train", "names", "--data-dir", str(data_dir), *TINY, *extra]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    calls = _hooks_on_the_cpu(monkeypatch)
    released = []
    real_release = devices.release
    monkeypatch.setattr(devices, "release", lambda m, h: (released.append(len(h)), real_release(m, h)))
    assert main([*args, "--out", str(tmp_path / "hooked")]) == 0
    assert calls[0] > 0 and released and released[0] > 0  # the hooks ran, and were removed before finish
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "hooked")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "plain" / "metrics.json").read_text().split('"train_seconds"')[0] == \
        (tmp_path / "hooked" / "metrics.json").read_text().split('"train_seconds"')[0]


def test_a_stateful_model_trains_through_the_hooks(tmp_path, monkeypatch):
    """ecg-anomaly passes its recurrent state back in each truncated-BPTT window (a tuple through
    the hooks both ways)."""
    from test_anomaly import RECORD, TINY as ECG_TINY, write_discords

    data = write_discords(tmp_path / "data")
    args = ["train", "ecg-anomaly", "--record", RECORD, "--data-dir", str(data), "--no-progress", *ECG_TINY]
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    calls = _hooks_on_the_cpu(monkeypatch)
    assert main([*args, "--out", str(tmp_path / "hooked")]) == 0
    assert calls[0] > 0
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "hooked")
    assert all(torch.equal(a[k], b[k]) for k in a)
