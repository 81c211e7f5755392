"The pipeline fanned out through submitit's local executor (issue 19): two attack units as concurrent jobs, and the tiny preset whole."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

def _fresh_out(tmp_path, shared_cache) -> Path:
    "An output folder with an empty cache but for the decoded data (linked: decoding the PNG tree again takes ~15 s)."
    out = tmp_path / 'out'
    (out / 'cache').mkdir(parents=True)
    (out / 'cache' / 'data').symlink_to(Path(shared_cache) / 'data', target_is_directory=True)
    return out

@pytest.mark.slow
def test_two_attack_units_run_as_concurrent_jobs(tmp_path, data_root, shared_cache):
    from eprobust.cluster import Cluster, attack_jobs, job_args, run_jobs, train_jobs
    from eprobust.core import read_table
    from eprobust.train import StageArgs
    out = _fresh_out(tmp_path, shared_cache)
    args = job_args(StageArgs('tiny', models='bp_cnn', data_root=str(data_root), out_dir=str(out)))
    c = Cluster('local', parallel=2, threads=1, poll=0.5)
    run_jobs(train_jobs(args)[0], c, out / 'jobs', progress=False)
    (units,) = attack_jobs(args)
    assert [j.label for j in units] == ['bp_cnn s11 pgd L2 backprop', 'bp_cnn s11 pgd Linf backprop']
    reports = run_jobs(units, c, out / 'jobs', progress=False)
    first, second = sorted(reports, key=lambda r: r['start'])
    assert second['start'] < first['end'], reports                      # the two ran at once, into one table
    rows = read_table(out / 'results' / 'attacks.csv')
    assert len(rows) == 5 == sum(r['rows'] for r in reports)             # L2 at 3 ε, L∞ at 2: every row of both jobs
    assert rows.groupby('norm').size().to_dict() == {'L2': 3, 'Linf': 2} and rows.unit.is_unique
    assert rows.robust_acc.between(0, 1).all()

@pytest.mark.slow
def test_tiny_pipeline_fans_out_and_leaves_nothing_to_do(tmp_path, data_root, shared_cache):
    "`eprobust reproduce --executor local` on tiny; afterwards every stage, run in this process, finds its units done."
    out = _fresh_out(tmp_path, shared_cache)
    cli = [str(ROOT / '.venv/bin/eprobust') if (ROOT / '.venv/bin/eprobust').exists() else 'eprobust']
    subprocess.run(cli + ['reproduce', '--preset', 'tiny', '--executor', 'local', '--jobs', '2', '--out-dir', str(out),
                          '--data-root', str(data_root)], check=True, env={**os.environ, 'EPROBUST_OUT': str(out)})
    for stage in ('train', 'attacks', 'adaptive', 'corruptions', 'compare'):
        reports = json.loads((out / 'runs' / 'tiny' / 'jobs' / stage / 'cifar10' / 'reports.json').read_text())
        assert reports and all(r['rows'] >= 0 and r['end'] >= r['start'] for r in reports), stage
    assert (out / 'figures' / 'tiny' / 'README.md').exists()
    from eprobust.train import StageArgs, train_stage
    from eprobust.attacks import attack_stage
    from eprobust.adaptive import adaptive_stage
    from eprobust.corruptions import corruption_stage
    from eprobust.compare import compare_stage
    args = StageArgs('tiny', data_root=str(data_root), out_dir=str(out), progress=False)
    clean, _ = train_stage(args)
    assert len(clean) == 5 and clean.cached.all()
    assert len(attack_stage(args)) == 0 and len(adaptive_stage(args)) == 0 and len(corruption_stage(args)) == 0
    assert all(len(t) == 0 for t in compare_stage(args))
