"""Cost of one BP-CNN training step (forward, backward, SGD) in channels-last vs NCHW feature maps. Prints figures
measured in one run on this machine and writes them to benchmarks/results/bench_bp.json.

  .venv/bin/python benchmarks/bench_bp.py            # cpu preset architecture (32-64-128-256), batch 128
  .venv/bin/python benchmarks/bench_bp.py --quick    # fewer repeats

`BPCNN` keeps its conv stack channels-last (`BPCNN.memory_format`, the library's layout); the NCHW baseline is the
same model with that attribute and its conv stack set back to the default layout. The two layouts alternate in rounds
so that machine noise hits both alike; the speed-up is the median of the per-round ratios, and also given from each
layout's fastest round. The AdvCNN trains the same network on PGD examples, so its steps scale alike.
"""
import argparse, json, time
from pathlib import Path
import torch, torch.nn.functional as F
from eprobust.core import get_preset
from eprobust.train import build_model, make_optimizer
from timing import interleaved, paired_ratio, fastest_ratio

def nchw(m):
    "`m` with NCHW maps: the conv stack and the layout its input is put in back to the default."
    m.memory_format = torch.contiguous_format; m.features.to(memory_format=torch.contiguous_format); return m

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); a = ap.parse_args()
    rounds, reps = (3, 5) if a.quick else (7, 15)
    torch.manual_seed(0)
    cfg = get_preset('cpu').train['bp_cnn']
    x = torch.rand(cfg.batch_size, 3, 32, 32); y = torch.randint(0, 10, (cfg.batch_size,))
    models = {'channels_last': build_model(cfg), 'nchw': nchw(build_model(cfg))}
    opts = {k: make_optimizer(m, cfg) for k, m in models.items()}
    def step(k):
        opts[k].zero_grad(set_to_none=True); F.cross_entropy(models[k](x), y).backward(); opts[k].step()
    med, times = interleaved({k: (lambda k=k: step(k)) for k in models}, rounds, reps)
    for k, v in med.items(): print(f'BP-CNN {cfg.channels} batch {cfg.batch_size}, {k:13s}: {v * 1e3:6.1f} ms per training step')
    ratio = paired_ratio(times, 'nchw', 'channels_last')
    fastest = fastest_ratio(times, 'nchw', 'channels_last')
    print(f'channels-last speed-up: {ratio:.2f}× (median of the per-round ratios), {fastest:.2f}× (fastest rounds); '
          f'{torch.get_num_threads()} threads')
    dest = Path(__file__).parent / 'results' / 'bench_bp.json'; dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(dict(channels=cfg.channels, batch=cfg.batch_size, seconds_per_step=med, rounds=times,
                                    speedup=ratio, speedup_fastest=fastest, threads=torch.get_num_threads(), quick=a.quick,
                                    date=time.strftime('%Y-%m-%d %H:%M')), indent=1) + '\n')
    print(f'wrote {dest}')

if __name__ == '__main__':
    main()
