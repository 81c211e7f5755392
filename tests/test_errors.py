"Bad input fails with a message that names the problem and the fix."
import subprocess, sys
from dataclasses import replace
from pathlib import Path
import pytest, torch
from eprobust.core import get_preset, CheckpointError, save_checkpoint, fingerprint
from eprobust.train import train_model, train_stage, checkpoint_path, model_key

CFG = replace(get_preset('tiny').train['bp_cnn'], epochs=1, n_train=64)

def small_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    return (x, torch.randint(0, 10, (64,), generator=g)), (x[:16], torch.zeros(16, dtype=torch.long))

def test_unknown_preset_cli():
    cli = Path(sys.executable).parent / 'eprobust'   # the console script the package installs
    r = subprocess.run([str(cli), 'reproduce', '--preset', 'huge'], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown preset 'huge'; valid presets: tiny, cpu, study, paper" in r.stderr

def test_unknown_preset_stage(tmp_path):
    with pytest.raises(KeyError, match='valid presets'): train_stage('huge', out_dir=tmp_path)

def test_missing_data_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'no cifar10 data under .*EPROBUST_DATA'):
        train_stage('tiny', data_root=tmp_path / 'no_such_folder', out_dir=tmp_path, progress=False)

def test_truncated_checkpoint(tmp_path):
    train, test = small_data()
    r = train_model(CFG, 0, train, test, tmp_path, progress=False)
    r.path.write_bytes(r.path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match='corrupt.*Delete it'):
        train_model(CFG, 0, train, test, tmp_path, progress=False)

def test_checkpoint_of_another_config(tmp_path):
    train, test = small_data()
    r = train_model(CFG, 0, train, test, tmp_path, progress=False)
    other = replace(CFG, lr=0.2)
    dest = checkpoint_path(tmp_path, other, 0, r.data); dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(r.path.read_bytes())     # a file misplaced under another config's name
    dest.with_suffix('.json').write_bytes(r.path.with_suffix('.json').read_bytes())
    with pytest.raises(CheckpointError, match=f'belongs to another config .*expected {model_key(other, 0)}'):
        train_model(other, 0, train, test, tmp_path, progress=False)

def test_diverging_ep_run_names_epoch_and_batch_and_keeps_checkpoint(tmp_path):
    "A NaN weight (as a diverging run produces) stops training at the next batch; the last good checkpoint survives."
    from eprobust.core import EPConfig, load_checkpoint
    cfg = replace(get_preset('tiny').train['ep_cnn'], epochs=3, n_train=None, batch_size=32)
    train, test = small_data()
    def poison(epoch, row):
        if epoch == 1: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): train_model(cfg, 0, train, test, tmp_path, progress=False, callbacks=[poison])
    path = checkpoint_path(tmp_path, cfg, 0, fingerprint(*train)); good = load_checkpoint(path)
    # corrupt the saved weights as a blow-up would, then resume: the first batch of epoch 2 must stop the run
    good['model']['convs.0.weight'][0, 0, 0, 0] = float('nan')
    save_checkpoint(path, good)
    from eprobust.train import TrainingDiverged
    with pytest.raises(TrainingDiverged, match=r'at epoch 2, batch 1; the last good checkpoint .* epoch 1\) is kept'):
        train_model(cfg, 0, train, test, tmp_path, progress=False)
    assert load_checkpoint(path)['epoch'] == 1

@pytest.mark.parametrize('kw, msg', [(dict(eps=-0.5), 'ε must be a finite number ≥ 0, got -0.5'),
                                     (dict(eps='8/0'), 'fractions like 8/255'),
                                     (dict(attack='fgsm'), 'valid attacks: pgd, cw, square, apgd-ce, apgd-dlr, apgd-t, autoattack'),
                                     (dict(norm='L1'), 'valid norms: L2, Linf'),
                                     (dict(grad='bptt'), 'valid EP attack gradients: unrolled, full, implicit'),
                                     (dict(mode='strict'), 'valid modes: paper, standard'),
                                     (dict(n_examples=0), 'n_examples must be a whole number ≥ 1'),
                                     (dict(T_attack='4,0'), 'T_attack must be a whole number ≥ 1, got 0'),
                                     (dict(steps=0), 'steps must be a whole number ≥ 1'),
                                     (dict(attack='cw', norm='Linf'), 'C&W is an L2 attack'),
                                     (dict(models='resnet'), "unknown model 'resnet'")])
def test_attack_stage_bad_input(tmp_path, kw, msg):
    "The attack stage rejects bad settings before it loads data or models."
    from eprobust.attacks import attack_stage
    from eprobust.train import StageArgs
    args = StageArgs('tiny', data_root=str(tmp_path / 'none'), out_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match=msg): attack_stage(args, **kw)
    assert not (tmp_path / 'results').exists()
