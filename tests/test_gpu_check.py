"""benchmarks/gpu_check.py's CPU-possible code paths (--device cpu --quick): wheels unpacked from a folder, the tiny
model against the CPU reference, the block timing table, and rows for backends that cannot run here."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def probe_wheel(folder: Path) -> None:
    """A one-module pure-Python wheel, as a wheels folder would hold."""
    folder.mkdir()
    with zipfile.ZipFile(folder / "sfiprobe-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("sfiprobe/__init__.py", "VALUE = 1\n")
        wheel.writestr("sfiprobe-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: sfiprobe\nVersion: 1.0\n")
        wheel.writestr("sfiprobe-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr("sfiprobe-1.0.dist-info/RECORD", "")


def test_quick_cpu_run_prints_the_table(tmp_path):
    probe_wheel(tmp_path / "wheels")
    out = tmp_path / "table.md"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                             "--wheels", str(tmp_path / "wheels"), "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    assert text in result.stdout and "wheels unpacked: sfiprobe" in text
    rows = {tuple(cell.strip() for cell in line.split("|")[1:5]): [cell.strip() for cell in line.split("|")[5:-1]]
            for line in text.splitlines() if line.startswith("| ") and not line.startswith("| part")}
    tiny = rows[("tiny", "eager", "sdpa", "5 frames")]
    assert 20 < float(tiny[6]) < 99  # bf16 against the float32 reference: close, not equal
    for frames in (33, 81):
        timed = rows[("quick dims fp32", "eager", "sdpa", f"{frames} frames")]
        ms, step, gap50, gap4, _, floor = (timed[i] for i in range(6))
        assert float(ms) > 0 and float(step) == pytest.approx(float(ms) * 80 / 1000, rel=0.01, abs=0.01)  # 40 blocks, 2 passes
        assert float(gap50) == pytest.approx(50 * float(step), rel=0.01) and float(gap4) == pytest.approx(2 * float(step), rel=0.01)
        assert float(floor) > 0
    trt = rows[("quick dims fp32", "tensorrt", "sdpa", "33 frames")][-1]
    assert trt.startswith(("not measurable here", "not available", "failed")), trt
    assert rows[("tiny", "compile", "sdpa", "all")][-1].startswith("skipped in --quick")
