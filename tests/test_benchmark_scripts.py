"""The speed benchmarks run (a few steps each), so that the commands in BENCHMARKS.md keep working.
The figures themselves are measured on a quiet machine, never in a test."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_bench_ratio_child_runs_a_minillm_step():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ratio.py"), "--child", "minillm",
                          "--config", "cpu", "--iters", "2"], capture_output=True, text=True, check=True, timeout=300)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["loop_s"] > 0 and 3.0 < record["loss"] < 5.0 and record["vm_hwm_mib"] > 0


def test_bench_levers_writes_a_record(tmp_path):
    target = tmp_path / "levers.jsonl"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_levers.py"), "--config", "cpu", "--long", "3",
                    "--short", "2", "--rounds", "1", "--variants", "all on", "MINILLM_COMPILED=0",
                    "--json", str(target)], capture_output=True, text=True, check=True, timeout=600)
    record = json.loads(target.read_text().splitlines()[-1])
    assert set(record["summary"]) == {"all on", "MINILLM_COMPILED=0"}
    # the same model and batches: both paths end at the same loss to float32 rounding
    losses = [v["final_loss"] for v in record["summary"].values()]
    assert abs(losses[0] - losses[1]) < 1e-4, losses
