"Bad input fails with a message that names the problem and the fix."
import subprocess, sys
from dataclasses import replace
from pathlib import Path
import pytest, torch
from eprobust.core import get_preset, CheckpointError, save_checkpoint
from eprobust.train import train_model, train_stage, checkpoint_path, model_key

CFG = replace(get_preset('tiny').train['bp_cnn'], epochs=1, n_train=64)

def small_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    return (x, torch.randint(0, 10, (64,), generator=g)), (x[:16], torch.zeros(16, dtype=torch.long))

def test_unknown_preset_cli():
    cli = Path(sys.executable).parent / 'eprobust'   # the console script the package installs
    r = subprocess.run([str(cli), 'reproduce', '--preset', 'huge'], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown preset 'huge'; valid presets: tiny, cpu, paper" in r.stderr

def test_unknown_preset_stage(tmp_path):
    with pytest.raises(KeyError, match='valid presets'): train_stage('huge', out_dir=tmp_path)

def test_missing_data_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'no cifar10 data under .*EPROBUST_DATA'):
        train_stage('tiny', data_root=tmp_path / 'no_such_folder', out_dir=tmp_path, progress=False)

def test_truncated_checkpoint(tmp_path):
    train, test = small_data()
    r = train_model(CFG, 0, train, test, tmp_path, progress=False)
    r.path.write_bytes(r.path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match='truncated or corrupt.*Delete it'):
        train_model(CFG, 0, train, test, tmp_path, progress=False)

def test_checkpoint_of_another_config(tmp_path):
    train, test = small_data()
    r = train_model(CFG, 0, train, test, tmp_path, progress=False)
    other = replace(CFG, lr=0.2)
    dest = checkpoint_path(tmp_path, other, 0); dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(r.path.read_bytes())     # a file misplaced under another config's name
    with pytest.raises(CheckpointError, match=f'belongs to another config .*expected {model_key(other, 0)}'):
        train_model(other, 0, train, test, tmp_path, progress=False)
