"""Cost of one BP-CNN training step (forward, backward, SGD) in channels-last vs NCHW feature maps. Prints figures
measured in one run on this machine and writes them to benchmarks/results/bench_bp.json.

  .venv/bin/python benchmarks/bench_bp.py            # cpu preset architecture (32-64-128-256), batch 128
  .venv/bin/python benchmarks/bench_bp.py --quick    # fewer repeats

`BPCNN` keeps its conv stack channels-last (the library's layout); the NCHW baseline is the same model with its conv
stack converted back, fed NCHW inputs. The two layouts alternate in rounds so that machine noise hits both alike; the
figure is the median over rounds. The AdvCNN trains the same network on PGD examples, so its steps scale alike.
"""
import argparse, json, statistics, time
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F
from eprobust.core import get_preset
from eprobust.train import build_model, make_optimizer

class NCHW(nn.Module):
    "The same BP-CNN with NCHW maps: conv stack converted to contiguous, input not reformatted."
    def __init__(self, m):
        super().__init__(); self.m = m; m.features.to(memory_format=torch.contiguous_format)
    def forward(self, x): return self.m.fc(self.m.features(self.m.norm(x)).flatten(1))

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); a = ap.parse_args()
    rounds, reps = (3, 5) if a.quick else (7, 15)
    torch.manual_seed(0)
    cfg = get_preset('cpu').train['bp_cnn']
    x = torch.rand(cfg.batch_size, 3, 32, 32); y = torch.randint(0, 10, (cfg.batch_size,))
    models = {'channels_last': build_model(cfg), 'nchw': NCHW(build_model(cfg))}
    opts = {k: make_optimizer(m.m if k == 'nchw' else m, cfg) for k, m in models.items()}
    def step(k):
        opts[k].zero_grad(set_to_none=True); F.cross_entropy(models[k](x), y).backward(); opts[k].step()
    for k in models: step(k); step(k)                       # warm-up: oneDNN primitive creation
    times = {k: [] for k in models}
    for _ in range(rounds):
        for k in models:
            t0 = time.perf_counter()
            for _ in range(reps): step(k)
            times[k].append((time.perf_counter() - t0) / reps)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items(): print(f'BP-CNN {cfg.channels} batch {cfg.batch_size}, {k:13s}: {v * 1e3:6.1f} ms per training step')
    ratio = med['nchw'] / med['channels_last']
    print(f'channels-last speed-up: {ratio:.2f}× ({torch.get_num_threads()} threads)')
    dest = Path(__file__).parent / 'results' / 'bench_bp.json'; dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(dict(channels=cfg.channels, batch=cfg.batch_size, seconds_per_step=med, rounds=times,
                                    speedup=ratio, threads=torch.get_num_threads(), quick=a.quick,
                                    date=time.strftime('%Y-%m-%d %H:%M')), indent=1) + '\n')
    print(f'wrote {dest}')

if __name__ == '__main__':
    main()
