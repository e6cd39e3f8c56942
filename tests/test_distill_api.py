"""dsl_compress.distill: loss formulas as NNI (mse, kl with temperature 2), links, training, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsl_compress import CompressionError, distill


def mlp(seed: int, hidden: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 4))


def test_mse_loss_is_lambda_times_mse_of_the_outputs():
    student, teacher = mlp(0), mlp(1)
    x = torch.randn(5, 8)
    compression = distill(student, teacher, [{"op_names": ["2"], "lambda": 0.5}])
    with torch.no_grad():
        t = teacher(x)
    s = student(x)
    assert torch.allclose(compression.loss(), 0.5 * F.mse_loss(s, t))


def test_kl_loss_uses_temperature_two():
    student, teacher = mlp(0), mlp(1)
    x = torch.randn(5, 8)
    compression = distill(student, teacher, [{"op_names": ["2"], "apply_method": "kl"}])
    t, s = teacher(x), student(x)
    expected = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="batchmean") * 4
    assert torch.allclose(compression.loss(), expected)


def test_link_chooses_the_teacher_module_and_the_smallest_link_loss_counts():
    student, teacher = mlp(0), mlp(1)
    x = torch.randn(5, 8)
    compression = distill(student, teacher, [{"op_names": ["0"], "link": ["0", "2"], "lambda": 2}])
    with pytest.raises(CompressionError) as info:
        teacher(x), student(x)
        compression.loss()
    assert info.value.codes == ["D703"]
    compression.restore()
    compression = distill(student, teacher, [{"op_names": ["1"], "link": "1"}])
    t_hidden = teacher[1](teacher[0](x))
    s_hidden = student[1](student[0](x))
    assert torch.allclose(compression.loss(), F.mse_loss(s_hidden, t_hidden))


def test_a_few_steps_reduce_the_distillation_loss():
    student, teacher = mlp(0, hidden=8), mlp(1, hidden=32)
    compression = distill(student, teacher, [{"op_names": ["2"]}])
    optimizer = torch.optim.Adam(student.parameters(), lr=0.01)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(2))
    losses = []
    for _ in range(30):
        with torch.no_grad():
            teacher(x)
        student(x)
        loss = compression.loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in teacher.parameters())


def test_loss_before_forward_passes_is_an_error():
    student, teacher = mlp(0), mlp(1)
    compression = distill(student, teacher, [{"op_names": ["2"]}])
    student(torch.randn(2, 8))
    with pytest.raises(CompressionError) as info:
        compression.loss()
    assert info.value.codes == ["D702"]
    assert "teacher" in str(info.value)


def test_link_to_a_missing_teacher_module_is_an_error_before_any_hook():
    student, teacher = mlp(0), mlp(1)
    with pytest.raises(CompressionError) as info:
        distill(student, teacher, [{"op_names": ["2"], "link": "3"}])
    assert info.value.codes == ["D701"]
    assert not student[2]._forward_hooks


def test_student_and_teacher_must_differ():
    model = mlp(0)
    with pytest.raises(CompressionError) as info:
        distill(model, model, [{"op_names": ["2"]}])
    assert info.value.codes == ["X803"]


def test_teacher_outputs_are_detached_even_without_no_grad():
    student, teacher = mlp(0), mlp(1)
    compression = distill(student, teacher, [{"op_names": ["2"]}])
    x = torch.randn(4, 8)
    teacher(x)
    student(x)
    compression.loss().backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
