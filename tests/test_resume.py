"Killing a training run and starting it again resumes from the last checkpoint and ends with the same weights."
import json, os, signal, subprocess, sys, time
from dataclasses import replace, asdict
from pathlib import Path
import pytest, torch
from eprobust.core import get_preset, TrainConfig, load_checkpoint
from eprobust.data import load_cifar
from eprobust.train import train_model, checkpoint_path

# the tiny preset's BP-CNN, on a few more images and epochs so that there is time to kill it mid-run
CFG = replace(get_preset('tiny').train['bp_cnn'], epochs=5, n_train=4096)
SEED = 11

CHILD = """
import sys, json
from eprobust.core import TrainConfig
from eprobust.data import load_cifar
from eprobust.train import train_model
cfg = TrainConfig(**json.loads(sys.argv[1])); root, cache, data_cache = sys.argv[2:5]
train = load_cifar(root, 'cifar10', 'train', cache_dir=data_cache, progress=False)
test = load_cifar(root, 'cifar10', 'test', n=256, cache_dir=data_cache, progress=False)
print('ready', flush=True)
train_model(cfg, %d, train, test, cache, progress=False)
""" % SEED

@pytest.mark.slow
def test_kill_and_resume(tmp_path, data_root, shared_cache):
    train = load_cifar(data_root, 'cifar10', 'train', cache_dir=shared_cache, progress=False)
    test = load_cifar(data_root, 'cifar10', 'test', n=256, cache_dir=shared_cache, progress=False)
    ref = train_model(CFG, SEED, train, test, tmp_path / 'uninterrupted', progress=False)

    cache = tmp_path / 'killed'; side = checkpoint_path(cache, CFG, SEED, ref.data).with_suffix('.json')
    p = subprocess.Popen([sys.executable, '-c', CHILD, json.dumps(asdict(CFG)), str(data_root), str(cache), str(shared_cache)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == 'ready'
        t0 = time.time()
        while not side.exists():                       # wait for the first epoch's checkpoint...
            assert p.poll() is None and time.time() - t0 < 300, 'the child ended before writing a checkpoint'
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)                  # ...and kill it without warning, mid-run
    finally: p.wait()
    killed_at = load_checkpoint(checkpoint_path(cache, CFG, SEED, ref.data))
    assert not killed_at['done'] and 1 <= killed_at['epoch'] < CFG.epochs

    resumed = train_model(CFG, SEED, train, test, cache, progress=False)
    assert not resumed.cached and len(resumed.history) == CFG.epochs
    for k, v in ref.model.state_dict().items(): assert torch.equal(resumed.model.state_dict()[k], v), k
    assert [h['train_loss'] for h in resumed.history] == [h['train_loss'] for h in ref.history]
