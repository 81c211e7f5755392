"""L2 PGD (20 steps, 2.5ε/20, no random start, true labels; torchattacks) at ε=0.5 on the first 500 CIFAR-10 test
images, for the cached cpu-preset BP-CNN, AdvCNNs and ViT (run `make reproduce` first). A stopgap check of issue 4
until the attack stage (nbs/04_attacks.ipynb) exists:  .venv/bin/python scripts/pgd_check.py"""
import torch, torchattacks
from eprobust.core import get_preset, get_paths, load_checkpoint, default_data_root
from eprobust.data import load_cifar, to_float
from eprobust.train import build_model, checkpoint_path
p = get_preset('cpu'); cache = get_paths().cache
x, y = load_cifar(default_data_root(), 'cifar10', 'test', n=500, cache_dir=cache); x = to_float(x)
for name in ('bp_cnn', 'adv_cnn_e0.5', 'adv_cnn_e1.0', 'vit'):
    cfg = p.train[name]; m = build_model(cfg); m.load_state_dict(load_checkpoint(checkpoint_path(cache, cfg, 11))['model']); m.eval()
    atk = torchattacks.PGDL2(m, eps=0.5, alpha=2.5 * 0.5 / 20, steps=20, random_start=False)
    correct_clean = correct_adv = 0
    for i in range(0, 500, 100):
        xb, yb = x[i:i+100], y[i:i+100]
        with torch.no_grad(): correct_clean += (m(xb).argmax(1) == yb).sum().item()
        xa = atk(xb, yb)
        with torch.no_grad(): correct_adv += (m(xa).argmax(1) == yb).sum().item()
    print(f'{name:13s} clean {correct_clean/500:.3f}  L2 PGD-20 eps 0.5: {correct_adv/500:.3f}', flush=True)
