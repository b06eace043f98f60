import json
import os
import signal

import pytest
import torch

from pixforge.core.loop import EMA, GracefulStop, MetricLogger, read_metrics
from pixforge.export.errors import PixforgeError


def test_ema_matches_the_formula():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for s, e, p in zip(start, ema.module.parameters(), model.parameters(), strict=True):
        assert torch.allclose(e, 0.9 * s + 0.1 * p)
        assert not e.requires_grad


def test_ema_halflife():
    beta = EMA.decay_from_halflife(batch_size=32, halflife_images=10_000)
    assert abs(beta ** (10_000 / 32) - 0.5) < 1e-9


def test_metric_logger_writes_jsonl(tmp_path):
    with MetricLogger(tmp_path / "metrics.jsonl") as log:
        log.log(1, loss=torch.tensor(0.5), lr=1e-3)
        log.log(2, loss=float("nan"))
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["loss"] == 0.5 and records[1]["loss"] == "nan"
    json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])


def test_read_metrics_skips_only_the_line_being_written(tmp_path):
    log = tmp_path / "stats.jsonl"
    log.write_bytes(b'{"kimg": 1}\n\n{"kimg": 2}\n{"kimg": 3, "au')  # a writer mid-line
    assert [r["kimg"] for r in read_metrics(log, {"kimg": int})] == [1, 2]
    log.write_bytes(b'{"kimg": 1}\n{"kimg": 2, "au\n{"kimg": 3}\n')  # damage inside the file
    with pytest.raises(PixforgeError, match=f"{log} line 2 is not a log record"):
        read_metrics(log)
    log.write_bytes(b'{"kimg": 1}\n{"step": 2}\n')
    with pytest.raises(PixforgeError, match="line 2 is not a log record \\(a JSON object with kimg\\)"):
        read_metrics(log, {"kimg": int})


def test_metric_logger_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is an extra (pixforge-core[tensorboard])")
    with MetricLogger(tmp_path / "metrics.jsonl", tmp_path / "tb") as log:
        log.log(1, loss=1.0)
    assert log._tb is not None and any((tmp_path / "tb").iterdir())


def test_graceful_stop_catches_sigterm_and_restores_handler():
    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
