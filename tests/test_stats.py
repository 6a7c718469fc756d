"""``./puter.sh stats`` (batos/stats.py): the table and a valid PNG from a real record."""
import json
import subprocess
import sys
import time

from batos import stats

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def record(tmp_path, n=30):
    t0 = time.time() - 3600
    lines = []
    for i in range(n):
        ok = i % 3 != 0
        lines.append({"event": "cycle_end", "cycle_id": f"c{i}", "state": "COMPLETE" if ok else "FAILED",
                      "ts": t0 + 60 * i, "duration_s": 10 + i % 5, "selector": f"m{i}",
                      "cem": {"score": 0.5 if ok else 0.0, "relevance": 0.8, "novelty": 0.4, "diversity": 0.1}})
    lines.append({"event": "cycle_end", "cycle_id": "p0", "state": "FAILED", "ts": t0 + 5, "practice": "r1",
                  "duration_s": 99})
    lines.append({"event": "adaptation", "id": "r1", "ts": t0 + 900, "adopted": True, "outcome": "adopted",
                  "proposal": {"kind": "tuning", "target": "candidates", "value": 2}})
    path = tmp_path / "metacognition.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{half a line")
    return path


def test_the_table_counts_the_architects_cycles_and_the_adaptations(tmp_path):
    events = stats.read_events(record(tmp_path))
    how, rows = stats.buckets(events)
    assert how == "100" and len(rows) == 1
    assert rows[0]["cycles"] == 30 and abs(rows[0]["pass_rate"] - 20 / 30) < 1e-9   # practice left out
    text = stats.table(events)
    assert "67%" in text and "1 rounds, 1 adopted" in text and "tuning candidates=2" in text


def test_puter_stats_writes_a_valid_png(tmp_path):
    log = record(tmp_path)
    png = tmp_path / "out" / "stats.png"
    proc = subprocess.run([sys.executable, "-m", "batos.stats", "--log", str(log), "--png", str(png)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"BATOS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "median s" in proc.stdout and str(png) in proc.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from PIL import Image
    with Image.open(png) as im:
        im.verify()
        assert im.size[0] > 300 and im.size[1] > 300
    assert subprocess.run([sys.executable, "-m", "batos.stats", "--log", str(tmp_path / "none.jsonl")],
                          cwd=ROOT, capture_output=True, timeout=60).returncode == 1
