"""The ldjax command: list, reproduce (skip, resume, missing data, failures), report, experiment CLIs."""

import json
import subprocess
import sys

import pytest

from ldjax._src.app import cli
from ldjax._src.experiments import registry
from ldjax._src.experiments import storage

import fake_experiments


@pytest.fixture
def fake_registry(monkeypatch):
    fake_experiments.install(monkeypatch.setattr)
    return fake_experiments.SPECS


def test_reproduce_skips_missing_data_reports_failures_and_resumes(fake_registry, tmp_path, capsys):
    code = cli.main(["reproduce", "--out", str(tmp_path), "--no-progress"])
    assert code == 1  # "broken" failed
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["ok"]["state"] == "complete"
    assert status["nodata"]["state"] == "skipped"
    assert "cifar10_test.npz not found" in status["nodata"]["reason"]
    assert status["broken"]["state"] == "failed" and "boom" in status["broken"]["reason"]
    record = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert record["dataset"] == "synthetic" and record["results"]["values"] == [0.0, 1.0, 2.0]
    assert record["config"] == {"size": 3, "scale": 1.0, "names": ["a", "b"], "flag": False}
    assert record["environment"]["jax"] and record["fidelity"][0]["holds"] is True
    assert (tmp_path / "ok" / "values.png").exists() and (tmp_path / "ok" / "values.pdf").exists()
    page = (tmp_path / "report.html").read_text()
    assert "cifar10_test.npz not found" in page and "data:image/png;base64," in page
    # a second run skips the finished experiment, --force reruns it, --full is a different config
    assert cli.main(["reproduce", "ok", "--out", str(tmp_path), "--no-progress"]) == 0
    assert fake_experiments.CALLS["ok"] == 1
    assert cli.main(["reproduce", "ok", "--out", str(tmp_path), "--no-progress", "--force"]) == 0
    assert fake_experiments.CALLS["ok"] == 2
    assert cli.main(["reproduce", "ok", "--out", str(tmp_path), "--no-progress", "--full"]) == 0
    assert fake_experiments.CALLS["ok"] == 3
    assert json.loads((tmp_path / "ok" / "results.json").read_text())["config"]["size"] == 5


def test_an_interrupted_write_leaves_no_half_written_results(fake_registry, tmp_path, monkeypatch):
    """A run killed after its figures were written (here: while writing results.json) changes nothing: the
    old results and figures stay as they were, side by side, and no temporary file or folder is left."""
    args = ["reproduce", "ok", "--out", str(tmp_path), "--no-progress", "--no-report"]
    assert cli.main(args) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "ok").iterdir()}

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.json, "dumps", explode)
    with pytest.raises(KeyboardInterrupt):
        cli.main([*args, "--full", "--force"])  # a different figure (size 5) was already drawn
    assert {p.name: p.read_bytes() for p in (tmp_path / "ok").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".ok.lock",
        ".status.json.lock",
        "ok",
        "status.json",
    ]


def test_an_older_name_runs_the_experiment_it_means(fake_registry, tmp_path, capsys):
    assert cli.main(["reproduce", "okay", "ok", "--out", str(tmp_path), "--no-progress", "--no-report"]) == 0
    assert "[alias] okay is the older name of ok: running ok" in capsys.readouterr().out
    assert fake_experiments.CALLS["ok"] == 1  # named twice, run once
    assert (tmp_path / "ok" / "results.json").exists() and not (tmp_path / "okay").exists()


def test_unknown_experiment_is_one_line_and_exit_code_2_or_a_traceback_with_debug(capsys):
    assert cli.main(["reproduce", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ldjax: error: unknown experiment 'nope': expected one of demo, mnist")
    assert err.count("\n") == 1
    with pytest.raises(storage.UsageError, match="unknown experiment 'nope'"):
        cli.main(["--debug", "reproduce", "nope"])


def test_list_shows_every_registered_experiment(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for spec in registry.EXPERIMENTS:
        assert spec.name in out


def test_experiment_main_generates_flags_from_config(tmp_path):
    assert (
        fake_experiments.main(["--out", str(tmp_path), "--size", "4", "--names", "x,y,z", "--flag", "true"])
        == 0
    )
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["config"] == {"size": 4, "scale": 1.0, "names": ["x", "y", "z"], "flag": True}


def test_demo_runs_as_the_ldjax_command(tmp_path):
    """The main job from day one: predicted vs actual and the three terms, printed."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ldjax._src.app.cli",
            "reproduce",
            "demo",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "predicted    actual" in out.stdout and "G at x_u" in out.stdout
    record = json.loads((tmp_path / "demo" / "results.json").read_text())
    rows = {row["id"]: row for row in record["fidelity"]}
    assert sorted(rows) == ["demo.correlation", "demo.fours_gain", "demo.residual_slope"]
    assert all(row["kind"] == "check" and row["holds"] for row in rows.values()), rows
    assert "scikit-learn digits" in record["dataset"]
    assert (tmp_path / "report.html").exists()
