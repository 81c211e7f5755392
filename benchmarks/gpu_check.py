"""GPU correctness and speed check (issue 19). Prints one short table and writes benchmarks/results/gpu_check.json.

  .venv/bin/python benchmarks/gpu_check.py                          # on a CUDA machine: meant to run in under 8 min (H100/H200)
  .venv/bin/python benchmarks/gpu_check.py --device cpu --quick     # every code path on the CPU, against itself (a smoke test)

(a) the relaxation and the EP weight gradients on the device against the CPU, float64, on shared weights (tiny and cpu
    architectures): max |difference|, relative to the CPU's largest value; the training augmentation on the device
    against the CPU (the same draws: equal bit for bit).
(b) PGD (paper mode: deterministic, no random start) with the full and implicit gradients on the device against the
    CPU, on one fixed batch and the same weights: robust accuracy on each, and the share of images with the same outcome.
(c) one `paper` EP training batch in ms (`ep_gradients`, T 250/30): float32 (IEEE: the library's default on every
    device), TF32 (`eprobust.ep.ALLOW_TF32`, which costs the lower layers' EP gradient its agreement with BPTT, 02_ep)
    and bf16 (the bf16 path keeps the weight-gradient contrast in float32); the explicit relaxation step against autograd of Phi; and the free phase
    captured once as a CUDA graph and replayed (CUDA only), with its largest difference from the eager one.
(d) 200 `paper` EP training batches (`--batches`) through the library's training loop (the training set on the device,
    augmented there), timed: ms per batch, the projected epoch (391 batches of 128), the projected training of the paper
    protocol's EP-CNNs (5 seeds x 120 epochs) on one GPU and on 5 (one job per seed), and the test accuracy reached. On CIFAR-10 when `--data` (or $EPROBUST_DATA)
    holds it, else on random images (said in the table: the accuracy then means nothing).

Each section is timed and guarded: one that fails prints its error in the table and the others still run.
"""
import argparse, copy, json, os, sys, time, traceback
from dataclasses import replace
from pathlib import Path
import torch
from eprobust.core import EPConfig, get_preset
from eprobust.ep import EPCNN, relax, ep_gradients
from eprobust.data import augment
import eprobust.ep as ep_mod
from eprobust.attacks import AttackSpec, attack_model
from eprobust.train import build_model, make_optimizer, train_epoch, training_data, evaluate
sys.path.insert(0, str(Path(__file__).parent))
from bench_ep import autograd_step, max_diff
from timing import cpu_flags

ROWS = []   # (section, what, value) in print order

def row(section: str, what: str, value):
    ROWS.append((section, what, value))
    print(f'{section:4s} {what:58s} {value}', flush=True)

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()

def ms(fn, device, repeats: int, warmup: int = 1) -> float:
    "Mean milliseconds per call, synchronized around the device's queue."
    for _ in range(warmup): fn()
    sync(device); t0 = time.perf_counter()
    for _ in range(repeats): fn()
    sync(device)
    return 1e3 * (time.perf_counter() - t0) / repeats

def rel(a, b) -> float:
    "Largest |a − b| over tensors, relative to the largest |b|."
    return max((u.cpu().double() - v.cpu().double()).abs().max().item() for u, v in zip(a, b)) / max(v.abs().max().item() for v in b)

def section_a(device, quick):
    "Relaxation and EP gradients, device vs CPU, float64."
    for name, channels, T in (('tiny', (4, 8, 8, 8), 30), ('cpu', (16, 32, 64, 128), 12)):
        torch.manual_seed(0)
        m = EPCNN(channels, T_free=T, init_scale=2.).double()
        md = copy.deepcopy(m).to(device)
        x, y = torch.rand(16, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (16,))
        s_c = relax(m, m.norm(x), m.init_state(x), T, solver='async')[0]
        xd = x.to(device)
        s_d = relax(md, md.norm(xd), md.init_state(xd), T, solver='async')[0]
        row('a', f'{name}: free state after {T} steps, rel. max diff', f'{rel(s_d, s_c):.1e}')
        ep = EPConfig(T_free=T, T_nudge=5, beta=0.5, solver='async')
        ep_gradients(m, x, y, ep); ep_gradients(md, xd, y.to(device), ep)
        g_c = [p.grad for p in m.parameters()]; g_d = [p.grad for p in md.parameters()]
        row('a', f'{name}: EP weight gradients, rel. max diff', f'{rel(g_d, g_c):.1e}')
    x = torch.rand(128, 3, 32, 32)          # the training batches' augmentation, done on the device (same draws)
    a_c = augment(x, torch.Generator().manual_seed(0))
    a_d = augment(x.to(device), torch.Generator().manual_seed(0))
    row('a', 'augmentation on the device = on the CPU (flip, crop)', bool(torch.equal(a_d.cpu(), a_c)))

def section_b(device, quick):
    "PGD through the full and implicit gradients, device vs CPU, same weights and batch."
    torch.manual_seed(1)
    m = EPCNN((16, 32, 64, 128), T_free=12, init_scale=2., solver='async').eval()
    md = copy.deepcopy(m).to(device)
    n = 16 if quick else 64
    x, y = torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,))
    spec = AttackSpec('pgd', 'L2', (0.3085,), steps=5 if quick else 20, n=n, batch_size=n)
    for grad in ('full', 'implicit'):
        rc, = attack_model(m, x, y, spec, grad, seed=0)
        rd, = attack_model(md, x, y, spec, grad, seed=0)
        same = sum(a == b for a, b in zip(rc['hits'], rd['hits'])) / len(rc['hits'])   # hex digits: 4 images each
        row('b', f'PGD L2 0.31 {grad}: robust acc device / CPU (n {n})', f"{rd['robust_acc']:.3f} / {rc['robust_acc']:.3f}")
        row('b', f'PGD L2 0.31 {grad}: hit digits equal (4 images each)', f'{same:.3f}')

def _paper_model(device, dtype=torch.float32):
    cfg = get_preset('paper').train['ep_cnn']
    torch.manual_seed(2)
    return cfg, build_model(cfg).to(device=device, dtype=dtype)

def _captured_free_phase(m, x, T, device):
    "The free phase (T steps, no residual checks: nothing syncs) captured once as a CUDA graph; returns (replay, static output)."
    xn = m.norm(x); s0 = m.init_state(xn)
    static_s = [t.clone() for t in s0]
    stream = torch.cuda.Stream(); stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():      # warm up on a side stream, as torch.cuda.graphs asks
        relax(m, xn, static_s, T, check_every=T + 1)
    torch.cuda.current_stream().wait_stream(stream)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad():
        out, _ = relax(m, xn, static_s, T, check_every=T + 1)
    return g.replay, out

def section_c(device, quick):
    "One paper EP training batch: float32, TF32, bf16; explicit step vs autograd of Phi; CUDA graph of the free phase."
    cfg, m = _paper_model(device)
    N = 16 if quick else cfg.batch_size
    ep = replace(cfg.ep, T_free=20 if quick else cfg.ep.T_free, T_nudge=5 if quick else cfg.ep.T_nudge)
    x, y = torch.rand(N, 3, 32, 32, device=device), torch.randint(0, 10, (N,), device=device)
    reps = 1 if quick else 3
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for label, prec, allow in (('float32', None, False), ('TF32', None, True), ('bf16 (contrast float32)', 'bf16', False)):
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow   # this process only
            ep_mod.ALLOW_TF32 = allow     # the library keeps its convolutions IEEE float32 unless this is set (02_ep)
            t = ms(lambda: ep_gradients(m, x, y, replace(ep, precision=prec)), device, reps)
            row('c', f'paper EP batch {N}, T {ep.T_free}/{ep.T_nudge}, {label}: ms', f'{t:.0f}')
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        ep_mod.ALLOW_TF32 = False
    xn, K = m.norm(x), 10        # K synchronous steps from a state 10 steps in, per step
    s = relax(m, xn, m.init_state(xn), 10)[0]
    def autograd_steps():
        t = s
        for _ in range(K): t = autograd_step(m, xn, t)
    with torch.no_grad():
        t_exp = ms(lambda: relax(m, xn, s, K, check_every=K + 1), device, 2 if quick else 5) / K
    t_ag = ms(autograd_steps, device, 2 if quick else 5) / K
    row('c', 'one synchronous step: explicit / autograd of Phi, ms', f'{t_exp:.2f} / {t_ag:.2f} ({t_ag / t_exp:.1f}x)')
    if device.type != 'cuda':
        row('c', 'free phase as a CUDA graph', 'CUDA only')
        return
    replay, out = _captured_free_phase(m, x, ep.T_free, device)
    with torch.no_grad():
        eager = lambda: relax(m, xn, m.init_state(xn), ep.T_free, check_every=ep.T_free + 1)
        t_eager, t_graph = ms(eager, device, reps), ms(replay, device, reps)
        replay(); diff = max_diff(out, eager()[0])
    row('c', f'free phase ({ep.T_free} steps): eager / CUDA graph, ms', f'{t_eager:.0f} / {t_graph:.0f} (max diff {diff:.1e})')

def _data(args, device, n_train, n_test):
    "CIFAR-10 from `--data` ($EPROBUST_DATA), or random images; (train, test, what)."
    from eprobust.data import load_cifar
    root = args.data or os.environ.get('EPROBUST_DATA')
    try:
        (x, y), (xt, yt) = load_cifar(root, 'cifar10', 'train'), load_cifar(root, 'cifar10', 'test', n=n_test)
        return (x[:n_train], y[:n_train]), (xt, yt), 'CIFAR-10'
    except Exception as e:   # noqa: BLE001 — the section still times the batches, and says the data were random
        g = torch.Generator().manual_seed(0)
        rand = lambda n: (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g))
        return rand(n_train), rand(n_test), f'random images ({type(e).__name__}: no CIFAR-10 at {root})'

def section_d(device, quick, args):
    "A few hundred paper EP training batches through `train_epoch`: ms per batch, projected epoch, accuracy reached."
    cfg, m = _paper_model(device)
    if quick: cfg = replace(cfg, batch_size=8, ep=replace(cfg.ep, T_free=10, T_nudge=3))
    m.T_free = cfg.ep.T_free
    k = 2 if quick else args.batches
    train, test, what = _data(args, device, k * cfg.batch_size, 100 if quick else 1000)
    opt = make_optimizer(m, cfg)
    stop = lambda why: RuntimeError(why)
    train = training_data(cfg, train, device)     # on the device once per run, as train_model does
    sync(device); t0 = time.perf_counter()
    stats = train_epoch(m, opt, cfg, train, torch.Generator().manual_seed(0), device, 0, None, stop)
    sync(device); per = (time.perf_counter() - t0) / k
    row('d', f'paper EP training, {k} batches of {cfg.batch_size} on {what.split(" (")[0]}: ms/batch', f'{1e3 * per:.0f}')
    epoch, seeds = per * 50000 / cfg.batch_size, get_preset('paper').seeds
    row('d', 'projected epoch (50,000 images)', f'{epoch:.0f} s')
    hours = epoch * cfg.epochs * len(seeds) / 3600      # the paper protocol's EP-CNNs: one training job per seed (10_cluster)
    row('d', f'projected EP-CNN training, {len(seeds)} seeds x {cfg.epochs} epochs: 1 GPU / {len(seeds)} GPUs',
        f'{hours:.1f} h / {hours / len(seeds):.1f} h')
    row('d', f'train accuracy / test accuracy ({len(test[1])} images)', f"{stats['train_acc']:.3f} / {evaluate(m, *test):.3f}")
    if what != 'CIFAR-10': row('d', 'data', what)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default=None, help='cuda (default when available) or cpu')
    ap.add_argument('--quick', action='store_true', help='small shapes and few steps: a smoke test of every code path')
    ap.add_argument('--batches', type=int, default=200, help='(d): training batches to time')
    ap.add_argument('--data', default=None, help='(d): a CIFAR-10 root (default $EPROBUST_DATA)')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'gpu_check.json'), help='where the JSON goes')
    args = ap.parse_args()
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    print(cpu_flags())
    print(f'device: {torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}; torch {torch.__version__}', flush=True)
    t_all = time.perf_counter()
    for name, fn in (('a', section_a), ('b', section_b), ('c', section_c), ('d', lambda d, q: section_d(d, q, args))):
        t0 = time.perf_counter()
        try:
            fn(device, args.quick)
        except Exception as e:   # noqa: BLE001 — one broken section must not hide the others' figures
            row(name, 'FAILED', f'{type(e).__name__}: {e}'.splitlines()[0][:200])
            traceback.print_exc()
        row(name, 'section seconds', f'{time.perf_counter() - t0:.0f}')
    row('all', 'seconds', f'{time.perf_counter() - t_all:.0f}')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(device=str(device), quick=args.quick, rows=ROWS), indent=1))
    print(f'wrote {out}')

if __name__ == '__main__':
    main()
