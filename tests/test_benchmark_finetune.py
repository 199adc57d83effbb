"""benchmarks/finetune.py runs end to end in quick mode and writes its report."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_writes_tables_and_plots(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "finetune.py"), "--quick", "--out-dir",
                        str(tmp_path / "out"), "--results-dir", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=900, env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert r.returncode == 0, r.stderr[-3000:]
    md = (tmp_path / "results" / "finetune_quick.md").read_text()
    for heading in ("Experiment 1", "WiSE-FT", "Experiment 2", "Label efficiency", "Weak supervision",
                    "Published anchors"):
        assert heading in md
    res = json.loads((tmp_path / "results" / "finetune_quick.json").read_text())
    assert set(res["exp1"]["methods"]) == {"full", "freeze", "linear-probe", "lp-ft", "lora", "adapter", "reft"}
    wise = res["exp1"]["wise"]
    assert [w["alpha"] for w in wise] == [round(0.1 * i, 1) for i in range(11)]
    assert wise[0]["id"] == res["exp1"]["base"]["id"]             # α = 0 is the pre-trained model exactly
    assert wise[-1]["id"] == res["exp1"]["methods"]["full"]["id"]  # α = 1 is the fine-tuned one
    assert {p.name for p in (tmp_path / "results").glob("*.png")} == {"finetune_wise_quick.png",
                                                                       "finetune_labels_quick.png"}
