"""benchmarks/gpu_check.py on the CPU (`--device cpu --quick`): every section runs and none fails, so that the script
is ready when a GPU is lent (issue 19). The CPU compared with itself must agree exactly."""
import json, subprocess, sys
import pytest
from conftest import ROOT

@pytest.mark.slow
def test_gpu_check_runs_every_section_on_the_cpu(tmp_path):
    out = tmp_path / 'gpu_check.json'
    r = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'gpu_check.py'), '--device', 'cpu', '--quick', '--out', str(out)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())['rows']
    assert not [x for x in rows if x[1] == 'FAILED'], r.stdout
    assert {x[0] for x in rows} >= {'a', 'b', 'c', 'd'}
    diffs = [float(v) for s, what, v in rows if s == 'a' and 'rel. max diff' in what]
    assert len(diffs) == 4
    assert all(d == 0 for d in diffs)                     # the CPU against itself: bit-identical
    same = [float(v) for s, what, v in rows if s == 'b' and what.endswith('(4 images each)')]
    assert same == [1.0, 1.0]
