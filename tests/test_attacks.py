"""The attack stage as users run it: `papermill nbs/04_attacks.ipynb out.ipynb -p eps 3`, then again (nothing redone).
Outside nbdev-test the default preset is the user's last one (or cpu), so the test names tiny."""
import subprocess, time
import pandas as pd
import pytest
from conftest import ROOT
from eprobust.core import read_table

@pytest.mark.slow
def test_papermill_attack_stage_eps3(tmp_path, data_root, shared_cache):
    out = tmp_path / 'out'
    papermill = str(ROOT / '.venv/bin/papermill') if (ROOT / '.venv/bin/papermill').exists() else 'papermill'
    def run():
        t0 = time.time()
        subprocess.run([papermill, str(ROOT / 'nbs/04_attacks.ipynb'), str(tmp_path / 'out.ipynb'), '-p', 'eps', '3',
                        '-p', 'preset', 'tiny', '-p', 'out_dir', str(out), '-p', 'cache_dir', str(shared_cache), '-p', 'data_root', str(data_root),
                        '--cwd', str(ROOT / 'nbs'), '-k', 'python3', '--no-progress-bar'], check=True)
        return time.time() - t0
    first = run()
    t = read_table(out / 'results' / 'attacks.csv')
    assert set(t.model) == {'bp_cnn', 'ep_cnn', 'ep_cnn_bptt', 'adv_cnn_e0.5', 'vit'}
    assert (t.eps == 3.0).all() and (t.norm == 'L2').all() and (t.attack == 'pgd').all() and (t['mode'] == 'paper').all()
    ep = t.model.str.startswith('ep_cnn')     # the EP-CNN and its BPTT twin: the same network, the same EP attack gradients
    assert set(t[ep].grad) == {'unrolled', 'full', 'implicit', 'ep'} and set(t[~ep].grad) == {'backprop'}
    assert (t.max_norm <= 3.0 + 1e-5).all() and t.robust_acc.between(0, 1).all() and (t.n == 64).all()
    assert t['unit'].notna().all() and t['unit'].is_unique and t['weights'].notna().all()
    assert (out / 'results' / 'adv_examples.pt').exists()
    second = run()
    t2 = pd.read_csv(out / 'results' / 'attacks.csv')
    assert len(t2) == len(t) and list(t2.seconds) == list(t.seconds)      # every unit was found done: nothing rerun
    print(f'\nattack stage (tiny, eps 3): first run {first:.1f}s, rerun {second:.1f}s')
