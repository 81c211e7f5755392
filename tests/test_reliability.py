"Reliability as a careful user probes it: concurrent writers, corrupt files, running from elsewhere, `python -m`."
import multiprocessing as mp
import os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from conftest import ROOT
from eprobust.core import append_rows, read_table, CheckpointError
from eprobust.train import train_stage

BIN = Path(sys.executable).parent

def _append_one_by_one(path, who, n):
    for i in range(n): append_rows(path, [dict(who=who, i=i)], key=['who', 'i'])

def test_concurrent_append_rows_lose_nothing(tmp_path):
    "Two processes appending 100 rows each, one at a time, to a table that already has 50: all 250 rows survive."
    f = tmp_path / 'r.csv'
    append_rows(f, [dict(who='old', i=i) for i in range(50)], key=['who', 'i'])
    ps = [mp.get_context('spawn').Process(target=_append_one_by_one, args=(f, w, 100)) for w in ('a', 'b')]
    for p in ps: p.start()
    for p in ps: p.join(120)
    assert [p.exitcode for p in ps] == [0, 0]
    t = read_table(f)
    assert len(t) == 250 and t.groupby('who').size().to_dict() == {'a': 100, 'b': 100, 'old': 50}
    assert not [p.name for p in tmp_path.iterdir() if 'tmp' in p.name]          # no temporaries left behind

def _tiny_bp(tmp_path, shared_cache, data_root, **kw):
    return train_stage(preset='tiny', models='bp_cnn', data_root=data_root, out_dir=tmp_path / 'out', cache_dir=tmp_path / 'cache',
                       progress=False, **kw)

def test_checkpoint_with_random_bytes_fails_and_clean_accuracy_is_measured_again(tmp_path, data_root, shared_cache):
    "Bytes changed inside a checkpoint (same size) are caught; a cached model's clean accuracy is measured, not copied."
    clean, _ = _tiny_bp(tmp_path, shared_cache, data_root)
    table = tmp_path / 'out' / 'results' / 'clean_accuracy.csv'
    t = read_table(table); t['clean_acc'] = 0.999; t.to_csv(table, index=False)    # a stale row from another model
    again, _ = _tiny_bp(tmp_path, shared_cache, data_root)
    assert again.cached.all() and again.clean_acc.tolist() == clean.clean_acc.tolist()
    assert read_table(table).clean_acc.tolist() == clean.clean_acc.tolist()
    ck, = (tmp_path / 'cache' / 'models' / 'bp_cnn').glob('*.pt')
    b = bytearray(ck.read_bytes()); b[len(b) // 2: len(b) // 2 + 64] = os.urandom(64); ck.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match='SHA-256 no longer matches'): _tiny_bp(tmp_path, shared_cache, data_root)

def test_python_m_pipeline_runs_the_cli():
    r = subprocess.run([sys.executable, '-m', 'eprobust.pipeline', 'stages'], capture_output=True, text=True)
    assert r.returncode == 0 and 'nbs/04_attacks.ipynb' in r.stdout
    r = subprocess.run([sys.executable, '-m', 'eprobust.pipeline', 'reproduce', '--preset', 'huge'], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown preset 'huge'" in r.stderr

@pytest.mark.parametrize('args, msg', [(['--seeds', 'x'], "cannot read seeds from 'x': give a list like 11,13"),
                                       (['--models', 'resnet'], "unknown model 'resnet'; valid models: bp_cnn, ep_cnn"),
                                       (['--stages', 'attack'], "unknown stage 'attack'; valid stages: train")])
def test_cli_bad_input_is_one_line(args, msg):
    "Bad input fails before any stage starts, with argparse's usage error (exit 2), not a papermill traceback."
    r = subprocess.run([str(BIN / 'eprobust'), 'reproduce', '--preset', 'tiny', *args], capture_output=True, text=True)
    assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr

def test_outside_the_project_writes_into_the_checkout(tmp_path):
    "Run from another folder, eprobust finds the checkout it is installed from instead of scattering results/ there."
    env = {k: v for k, v in os.environ.items() if k not in ('EPROBUST_OUT', 'EPROBUST_CACHE')}
    code = 'from eprobust.core import get_paths; print(get_paths().root)'
    r = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert Path(r.stdout.strip()) == ROOT

@pytest.mark.slow
def test_relative_data_env_from_another_folder(tmp_path, data_root, shared_cache):
    "A relative EPROBUST_DATA is read relative to where the command runs, not to the kernel's folder (nbs/)."
    env = {**os.environ, 'EPROBUST_DATA': os.path.relpath(data_root, tmp_path)}
    out = tmp_path / 'out'
    r = subprocess.run([str(BIN / 'eprobust'), 'reproduce', '--preset', 'tiny', '--stages', 'train', '--models', 'bp_cnn',
                        '--out-dir', str(out), '--cache-dir', str(shared_cache)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f'under {out}' in r.stdout
    assert read_table(out / 'results' / 'clean_accuracy.csv').model.tolist() == ['bp_cnn']

def test_new_weights_recompute_the_rows_measured_on_old_ones(tmp_path, data_root, shared_cache):
    "A model retrained to other weights (same config and seed, e.g. on another CPU) gets its corruption rows measured again."
    import torch
    from eprobust.core import load_checkpoint, save_checkpoint
    from eprobust.corruptions import corruption_stage, corruption_plan
    kw = dict(preset='tiny', models='bp_cnn', data_root=data_root, out_dir=tmp_path / 'out', cache_dir=tmp_path / 'cache', progress=False)
    plan = corruption_plan('tiny', 'contrast,fog', '1,5', 32)
    first = corruption_stage(plan=plan, **kw)
    assert len(first) == 4 and first.weights.nunique() == 1
    assert len(corruption_stage(plan=plan, **kw)) == 0                        # same weights: nothing to redo
    ck_path, = (tmp_path / 'cache' / 'models' / 'bp_cnn').glob('*.pt')
    ck = load_checkpoint(ck_path)
    ck['model'] = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ck['model'].items()}
    save_checkpoint(ck_path, ck)                                               # the "same" model, other weights
    again = corruption_stage(plan=plan, **kw)
    t = read_table(tmp_path / 'out' / 'results' / 'corruptions.csv')
    assert len(again) == 4 and len(t) == 4 and set(t.weights) == set(again.weights) != set(first.weights)

STAGE_RUN = '''
import json, sys
from eprobust.attacks import attack_stage, AttackSpec
out, cache, data, norm, first, dest = sys.argv[1:]
plan = [AttackSpec('pgd', norm, (float(first) + i / 1000,), steps=1, n=4) for i in range(40)]   # one row, one write, per spec and model
rows = attack_stage(preset='tiny', models='bp_cnn,vit', plan=plan, data_root=data, out_dir=out, cache_dir=cache, progress=False)
json.dump(sorted(rows['unit']), open(dest, 'w'))
'''

@pytest.mark.slow
def test_two_attack_stages_at_once_lose_nothing(tmp_path, data_root, shared_cache):
    """Two real attack-stage processes on one folder, four times over: every row either wrote is in the table (the unlocked
    writer of before lost 79 of 160 rows, or crashed, in 2 of 3 such trials)."""
    import json
    train_stage(preset='tiny', models='bp_cnn,vit', data_root=data_root, out_dir=tmp_path / 'models', cache_dir=shared_cache,
                progress=False)                                                # both processes find the models trained
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    for trial in range(4):
        out = tmp_path / f'trial{trial}'
        ps = [subprocess.Popen([sys.executable, '-c', STAGE_RUN, str(out), str(shared_cache), str(data_root), norm, first,
                                str(out / f'{norm}.json')], env=env) for norm, first in (('L2', '0.1'), ('Linf', '0.01'))]
        assert [p.wait(600) for p in ps] == [0, 0]
        wrote = [json.loads((out / f'{norm}.json').read_text()) for norm in ('L2', 'Linf')]
        t = read_table(out / 'results' / 'attacks.csv')
        assert [len(w) for w in wrote] == [80, 80]                        # 40 ε × 2 models each
        assert sorted(t['unit']) == sorted(wrote[0] + wrote[1]), f'trial {trial}: {160 - len(t)} rows lost'
        assert not [p.name for p in (out / 'results').iterdir() if 'tmp' in p.name]
