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


def test_a_resumed_logger_drops_the_records_after_its_step(tmp_path):
    """A run killed after checkpoint 2 had logged steps 3 and 4 (and half of 5): resuming from 2 logs them again, so
    they go first and each step ends up logged once; the records up to 2 keep their bytes."""
    path = tmp_path / "metrics.jsonl"
    with MetricLogger(path) as log:
        for step in (1, 2, 3, 4):
            log.log(step, loss=step / 10)
    kept = b"".join(path.read_bytes().splitlines(keepends=True)[:2])
    with path.open("ab") as fh:
        fh.write(b'{"step": 5, "lo')
    with MetricLogger(path, start=2) as log:
        assert path.read_bytes() == kept
        log.log(3, loss=0.3)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    with MetricLogger(path, start=0) as log:  # a new run's logger (start 0) leaves the file alone
        pass
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    path.write_bytes(kept + b"not json\n")
    with pytest.raises(PixforgeError, match="line 3 is not a log record"):
        MetricLogger(path, start=2)


def test_a_resumed_logger_purges_tensorboard_after_its_step(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is an extra (pixforge-core[tensorboard])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricLogger(tmp_path / "metrics.jsonl", tmp_path / "tb") as log:
        for step in (1, 2, 3, 4):
            log.log(step, loss=float(step))
    with MetricLogger(tmp_path / "metrics.jsonl", tmp_path / "tb", start=2) as log:
        log.log(3, loss=30.0)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 2.0), (3, 30.0)]


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
