"The training stage as users run it: `papermill nbs/03_train.ipynb out.ipynb -p preset tiny`, twice."
import subprocess, sys, time
import pandas as pd
import pytest
from conftest import ROOT

@pytest.mark.slow
def test_papermill_train_stage_caches(tmp_path, data_root, shared_cache):
    out = tmp_path / 'out'
    def run():
        t0 = time.time()
        subprocess.run([str(ROOT / '.venv/bin/papermill') if (ROOT / '.venv/bin/papermill').exists() else 'papermill',
                        str(ROOT / 'nbs/03_train.ipynb'), str(tmp_path / 'out.ipynb'), '-p', 'preset', 'tiny',
                        '-p', 'out_dir', str(out), '-p', 'cache_dir', str(out / 'cache'), '-p', 'data_root', str(data_root),
                        '--cwd', str(ROOT / 'nbs'), '-k', 'python3', '--no-progress-bar'], check=True)
        return time.time() - t0
    first = run()
    clean = pd.read_csv(out / 'results' / 'clean_accuracy.csv')
    assert list(clean.model) == ['bp_cnn', 'ep_cnn', 'ep_cnn_bptt', 'adv_cnn_e0.5', 'vit'] and not clean.cached.any()
    assert clean.clean_acc.between(0, 1).all() and (clean.n_test == 256).all()
    metrics = pd.read_csv(out / 'results' / 'train_metrics.csv')
    assert list(metrics[metrics.model == 'bp_cnn'].epoch) == [1, 2, 3] and list(metrics[metrics.model == 'ep_cnn'].epoch) == [1, 2]
    free = pd.read_csv(out / 'results' / 'free_phase_accuracy.csv')   # Fig. 1b's rows: the EP-CNN's and its twin's
    assert all(list(free[free.model == m].step) == list(range(1, 31)) for m in ('ep_cnn', 'ep_cnn_bptt'))
    second = run()
    clean2 = pd.read_csv(out / 'results' / 'clean_accuracy.csv')
    assert len(clean2) == 5 and clean2.cached.all()                        # the checkpoints were reused, the rows replaced
    assert list(clean2.clean_acc) == list(clean.clean_acc)
    print(f'\ntrain stage (tiny): first run {first:.1f}s, cached rerun {second:.1f}s')
