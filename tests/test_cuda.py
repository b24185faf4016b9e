"""CUDA paths (run where a GPU is present): same code, no host round trips inside forward."""

import pytest
import torch

from aanntwin.config import Nonidealities, RunConfig, TrainParams
from aanntwin.model import Main
from aanntwin.training import evaluate, train
from tests.conftest import EVERYTHING as ALL_ON

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

EVERYTHING = Nonidealities(**ALL_ON)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_backward_on_cuda_never_synchronize_with_the_host(dtype):
    model = Main(nonidealities=EVERYTHING).to("cuda", dtype)
    x = torch.rand(64, 1, 28, 28, device="cuda", dtype=dtype)
    model(x)  # warm-up: generators and kernels
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = model(x)
        out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda" and out.dtype == dtype
    assert all(t.device.type == "cuda" for t in [*model.parameters(), *model.buffers()])


def test_a_chip_instance_is_the_same_on_cpu_and_cuda():
    cpu = Main(nonidealities=EVERYTHING)
    gpu = Main(nonidealities=EVERYTHING).to("cuda")
    assert torch.equal(cpu.conv.gain_error, gpu.conv.gain_error.cpu())
    gpu.draw_mismatch(5)  # redrawn on the device's model: still the CPU draw
    cpu.draw_mismatch(5)
    assert torch.equal(cpu.linear.offset_error, gpu.linear.offset_error.cpu())


def test_training_and_noisy_evaluation_on_cuda(digits):
    cfg = RunConfig(train=TrainParams(epochs=5, batch_size=64), nonidealities=EVERYTHING)
    result = train(cfg, digits, device="cuda", progress=False)
    assert result.model.conv.weight.device.type == "cuda"
    x, y = digits.x_test.cuda(), digits.y_test.cuda()
    a = evaluate(result.model, x, y, runs=3, seed=1)
    b = evaluate(result.model, x, y, runs=3, seed=1)
    assert a.accuracies == b.accuracies and a.accuracy > 0.5
