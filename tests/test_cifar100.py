"CIFAR-100 end to end: the whole tiny pipeline (`eprobust reproduce --dataset cifar100`) on files written in the official format."
import subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, torch
import pytest
from eprobust.core import load_checkpoint
from eprobust.data import load_cifar, write_official

@pytest.mark.slow
def test_cifar100_pipeline(tmp_path, data_root, shared_cache):
    # CIFAR-100 is not on this machine: real CIFAR-10 images with labels spread over 100 classes, in CIFAR-100's files
    (x, y), (xt, yt) = (load_cifar(data_root, 'cifar10', s, n=n, cache_dir=shared_cache, progress=False) for s, n in (('train', 600), ('test', 300)))
    rank = torch.tensor([int((y[:i] == y[i]).sum()) for i in range(len(y))])   # all 100 classes get images
    root = tmp_path / 'c100'
    write_official(root, 'cifar100', x.numpy(), (y * 10 + rank % 10).numpy(), xt.numpy(), (yt * 10).numpy())
    out = tmp_path / 'out'
    cli = Path(sys.executable).parent / 'eprobust'
    subprocess.run([str(cli), 'reproduce', '--preset', 'tiny', '--dataset', 'cifar100', '--data-root', str(root), '--out-dir', str(out)], check=True)
    res = out / 'results'
    for table in ('clean_accuracy', 'attacks', 'corruptions'):
        t = pd.read_csv(res / f'{table}.csv')
        assert set(t.dataset) == {'cifar100'} and set(t.model) == {'bp_cnn', 'ep_cnn', 'ep_cnn_bptt', 'adv_cnn_e0.5', 'vit'}, table
    assert (pd.read_csv(res / 'corruptions.csv').source == 'regenerated').all()
    for f in ('fig3_robustness_cifar100.png', 'corruptions_severity_cifar100.png', 'corruptions_heatmap_cifar100.png', 'README.md'):
        assert (out / 'figures' / 'tiny' / f).exists(), f
    ck, = (out / 'cache' / 'models' / 'ep_cnn').glob('*.pt')
    cfg = load_checkpoint(ck)['config']
    assert cfg['dataset'] == 'cifar100' and cfg['channels'][-1] == 16 and cfg['ep']['beta'] == 1.0 and cfg['pad_mode'] == 'reflect'
    assert load_checkpoint(ck)['model']['readout.weight'].shape == (100, 16)
