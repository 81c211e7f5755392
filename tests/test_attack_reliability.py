"""Reliability of the attack stage: results keyed by their full definition and the weights they were measured on,
statistics per row, settings checked when read, a corrupt Fig. 2 file set aside, one registry entry per attack, a thin stage."""
import inspect, multiprocessing as mp, shutil, warnings
from dataclasses import replace
from pathlib import Path
import pandas as pd
import pytest
import torch
import eprobust.attacks as A
from eprobust.attacks import AttackArgs, AttackSpec, attack_model, attack_stage, unit_hash
from eprobust.core import UnknownName, read_table, load_checkpoint, save_checkpoint
from eprobust.ep import EPCNN
from eprobust.train import StageArgs, checkpoint_path, model_key, stage_configs

def _ep(T=20, seed=0):
    torch.manual_seed(seed)
    return EPCNN((4, 8, 8, 8), T_free=T, solver='sync', init_scale=1.5).eval().requires_grad_(False)

# 1. a result's key is a hash of its full definition ---------------------------------------------------------------

IDS = dict(config_hash='c0ffee', data='d1', seed=11)

def _key(spec, eps=8 / 255, grad='unrolled', T=4, ids=IDS, images='i1'): return unit_hash(spec, eps, grad, T, ids, images)

@pytest.mark.parametrize('change', [
    lambda s: (replace(s, queries=100), {}),                                    # Square's queries
    lambda s: (replace(s, attack='autoattack', options=(('iters', 10),)), {}),  # AutoAttack's iterations ...
    lambda s: (replace(s, attack='autoattack', options=(('parts', ('apgd-ce',)),)), {}),   # ... and parts
    lambda s: (replace(s, options=(('restarts', 2),)), {}),                     # restarts
    lambda s: (replace(s, options=(('p_init', 0.5),)), {}),
    lambda s: (replace(s, mode='standard'), {}),
    lambda s: (replace(s, batch_size=8), {}),                                   # random restarts are seeded per batch
    lambda s: (s, dict(eps=0.01)), lambda s: (s, dict(grad='full')), lambda s: (s, dict(T=8)),
    lambda s: (s, dict(ids={**IDS, 'config_hash': 'c0ffef'})), lambda s: (s, dict(ids={**IDS, 'data': 'd2'})),
    lambda s: (s, dict(images='i2'))])
def test_unit_key_changes_with_every_part_of_the_definition(change):
    base = AttackSpec('square', 'Linf', n=16, queries=50)
    spec, kw = change(base)
    assert _key(base) == _key(AttackSpec('square', 'Linf', n=16, queries=50))
    assert _key(spec, **kw) != _key(base)

def test_pgd_step_size_is_in_the_key():
    assert _key(AttackSpec(steps=20)) != _key(AttackSpec(steps=20, options={'step_size': 1.0}))
    assert _key(AttackSpec(steps=20)) != _key(AttackSpec(steps=10))

@pytest.fixture
def stage_dirs(tmp_path, shared_cache):
    "An out_dir and a cache of this test's own (the test changes a model's weights), sharing the decoded data and a trained tiny BP-CNN."
    cache = tmp_path / 'cache'
    (cache / 'data').mkdir(parents=True)
    for f in (shared_cache / 'data').glob('*.npz'):
        (cache / 'data' / f.name).symlink_to(f.resolve())
    if (shared_cache / 'models' / 'bp_cnn').exists():
        shutil.copytree(shared_cache / 'models' / 'bp_cnn', cache / 'models' / 'bp_cnn')
    return tmp_path / 'out', cache

def _args(out, cache, data_root):
    return StageArgs('tiny', models='bp_cnn', data_root=str(data_root), out_dir=str(out), cache_dir=str(cache), progress=False)

def test_stage_recomputes_on_new_weights_and_new_parameters(stage_dirs, data_root):
    out, cache = stage_dirs
    args, table = _args(out, cache, data_root), out / 'results' / 'attacks.csv'
    pgd = AttackSpec('pgd', 'L2', (0.5,), steps=1, n=8, batch_size=8)
    sq = AttackSpec('square', 'Linf', (8 / 255,), n=4, queries=5, batch_size=4)
    first = attack_stage(args, [pgd, sq])
    assert len(first) == 2 and len(attack_stage(args, [pgd, sq])) == 0      # done: nothing rerun
    # a changed parameter the old key did not hold (Square's queries) is a new result, not the old row reused;
    # it replaces the row it redefines (same attack, norm, ε, gradient), so figures never average two definitions
    more = attack_stage(args, [replace(sq, queries=6)])
    t = read_table(table)
    assert len(more) == 1 and len(t) == 2 and t['params'].str.contains('"queries": 6').sum() == 1
    # the model is retrained (new weights, same config): every attack is recomputed and rows of the old weights replaced
    ck_path = checkpoint_path(cache, stage_configs('tiny')['bp_cnn'], 11, first['data'][0])
    ck = load_checkpoint(ck_path)
    ck['model'] = {k: v + 1e-3 if v.is_floating_point() else v for k, v in ck['model'].items()}
    save_checkpoint(ck_path, ck)
    again = attack_stage(args, [pgd, sq])
    t = read_table(table)
    assert len(again) == 2, 'the stage reused rows measured on the old weights'
    assert set(t['weights']) == set(again['weights']) and len(set(again['weights'])) == 1
    assert set(first['weights']) != set(again['weights'])
    assert len(t) == 2 and set(t['unit']) == set(first['unit'])    # same definitions; the Square(queries 6) row was on old weights
    assert t['params'].str.contains('"queries": 5').sum() == 1

def test_stage_keeps_rows_written_before_units(stage_dirs, data_root):
    "Rows from before results had units or weights: other models' are all kept; this model's (unknown weights) are replaced."
    out, cache = stage_dirs
    table = out / 'results' / 'attacks.csv'
    table.parent.mkdir(parents=True)
    legacy = pd.DataFrame([dict(preset='tiny', dataset='cifar10', model=m, seed=11, config_hash=h, attack='pgd', norm='L2', mode='paper',
                                steps=20, grad='backprop', T_attack=None, n=8, eps=e, robust_acc=0.1, clean_acc=0.2)
                           for m, h in (('other', 'aaaa'), ('bp_cnn', None)) for e in (0.1, 0.2, 0.3)])
    args = _args(out, cache, data_root)
    legacy.loc[legacy.model == 'bp_cnn', 'config_hash'] = model_key(stage_configs('tiny')['bp_cnn'], 11)
    legacy.to_csv(table, index=False)
    new = attack_stage(args, [AttackSpec('pgd', 'L2', (0.5,), steps=1, n=8, batch_size=8)])
    t = read_table(table)
    assert len(new) == 1
    assert len(t[t.model == 'other']) == 3 and t['unit'].notna().all()
    assert list(t[t.model == 'bp_cnn']['eps']) == [0.5]

# 2. statistics per call, aggregated per row ---------------------------------------------------------------------

def test_classifier_keeps_no_statistics_between_calls():
    m = _ep()
    clf = A.EPClassifier(m, 'implicit')
    state = lambda: {k: repr(v) for k, v in vars(clf).items() if not k.startswith('_')}
    before = state()
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    torch.nn.functional.cross_entropy(clf(x), torch.tensor([0, 1, 2])).backward()
    assert state() == before

def test_adjoint_statistics_belong_to_their_row():
    m = _ep()
    x, y = torch.rand(6, 3, 32, 32), torch.randint(0, 10, (6,))
    # ε = 0 runs no attack: no adjoint solve belongs to it (the old code copied the last one of ε = 0.5 into it)
    rows = attack_model(m, x, y, AttackSpec('pgd', 'L2', (0.5, 0.), steps=2, batch_size=3), 'implicit')
    assert rows[0]['adjoint_calls'] == 2 * 2                     # 2 steps × 2 batches, all in this row
    assert rows[0]['adjoint_iters_max'] >= rows[0]['adjoint_iters_mean'] >= 1
    assert not any(k.startswith('adjoint') for k in rows[1])
    # the row summarizes every batch's solves, not the last one's: it matches the solves collected over the same run
    stats = []
    clf = A.as_classifier(m, 'implicit', stats=stats)
    spec = AttackSpec('pgd', 'L2', (0.5,), steps=2, batch_size=3)
    labels = A.predict(clf, x, 3)
    atk = A.make_attack(clf, spec, 0.5)
    for i in (0, 3):
        A.seed_everything(A.derive_seed(0, 'pgd', 'L2', 0.5, i))
        atk(x[i:i + 3], labels[i:i + 3])
    own = lambda d: {k: v for k, v in d.items() if k.startswith(('adjoint', 'forward_residual', 'fixed_point'))}
    assert own(A.adjoint_summary(stats)) == own(rows[0]) and 'forward_residual_max' in rows[0]   # the forward's distance too

# 3. T_attack < 1 refused when read ------------------------------------------------------------------------------------

@pytest.mark.parametrize('make', [lambda: AttackArgs(T_attack=0), lambda: AttackArgs(T_attack='4,0'), lambda: AttackSpec(T_attack=(0,)),
                                  lambda: A.attack_plan('tiny', T_attack=0)])
def test_T_attack_below_one_is_refused(make):
    with pytest.raises(ValueError, match='T_attack must be a whole number ≥ 1, got 0'): make()

def test_stage_refuses_T_attack_zero_before_loading(tmp_path):
    args = StageArgs('tiny', data_root=str(tmp_path / 'none'), out_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match='T_attack must be'): attack_stage(args, T_attack=0)
    assert not (tmp_path / 'results').exists()

# 4. a corrupt Fig. 2 file is set aside, not fatal; its read-modify-write is locked ------------------------------------

EX = dict(clean=torch.rand(2, 3, 4, 4), adv=torch.rand(2, 3, 4, 4), y=torch.tensor([1, 2]))

def test_corrupt_examples_file_is_moved_aside(tmp_path):
    f = tmp_path / 'adv_examples.pt'
    A._save_examples(f, 'tiny|cifar10|bp_cnn|11|backprop', EX)
    f.write_bytes(f.read_bytes()[:100])                                    # truncated
    with pytest.warns(UserWarning) as w:
        A._save_examples(f, 'tiny|cifar10|vit|11|backprop', EX)
    msg = str(w[0].message)
    assert str(f) in msg and str(tmp_path / 'adv_examples.pt.corrupt') in msg
    assert (tmp_path / 'adv_examples.pt.corrupt').stat().st_size == 100    # kept, not deleted
    assert list(load_checkpoint(f, 'adv_examples')['examples']) == ['tiny|cifar10|vit|11|backprop']
    f.write_bytes(b'garbage')                                              # a second corruption: a second name
    with pytest.warns(UserWarning, match='corrupt1'): A._save_examples(f, 'k', EX)

def _writer(args):
    f, who = args
    for i in range(8): A._save_examples(Path(f), f'{who}|{i}', EX)

def test_concurrent_example_writers_lose_nothing(tmp_path):
    f = tmp_path / 'adv_examples.pt'
    with mp.get_context('fork').Pool(2) as pool: pool.map(_writer, [(str(f), 'a'), (str(f), 'b')])
    assert len(load_checkpoint(f, 'adv_examples')['examples']) == 16

# 5. one registry entry per attack -------------------------------------------------------------------------------

def test_registry_names_and_errors():
    assert list(A.ATTACKS) == ['pgd', 'cw', 'square', 'apgd-ce', 'apgd-dlr', 'apgd-t', 'autoattack']
    with pytest.raises(UnknownName, match="unknown attack 'fgsm'; valid attacks: pgd, cw, square, apgd-ce, apgd-dlr, apgd-t, autoattack"):
        AttackSpec('fgsm')
    assert A.ATTACKS['cw'].per_eps is False and A.ATTACKS['square'].ep_grads == ()
    assert A.ATTACKS['pgd'].paper_labels == 'predicted'

def test_adding_an_attack_is_one_entry(monkeypatch):
    "A gradient-free uniform-noise attack registered in one line runs through specs, EP variants and attack_model."
    noise = lambda clf, norm, eps, p, seed, nc: (lambda x, y: x + eps * (2 * torch.rand_like(x) - 1))
    monkeypatch.setitem(A.ATTACKS, 'noise', A.AttackDef(noise, 'Noise', {}, norms=('Linf',), ep_grads=()))
    spec = AttackSpec('noise', 'Linf', (0.01, 0.1), n=4)
    m = _ep()
    assert A._ep_variants(m, spec) == [('none', None)]
    rows = attack_model(m, torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,)), spec, 'none')
    assert [r['eps'] for r in rows] == [0.01, 0.1] and all(r['max_norm'] <= r['eps'] + 1e-6 for r in rows)

# 6. a thin stage: no library function over 10 parameters ----------------------------------------------------------------

def test_no_function_takes_more_than_ten_parameters():
    fns = [f for _, f in inspect.getmembers(A, inspect.isfunction) if f.__module__ == A.__name__]
    wide = {f.__name__: len(inspect.signature(f).parameters) for f in fns if len(inspect.signature(f).parameters) > 10}
    assert not wide, wide
    assert list(inspect.signature(attack_stage).parameters) == ['args', 'plan', 'kw']
