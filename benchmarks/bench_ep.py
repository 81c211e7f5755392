"""EP-CNN relaxation and training benchmark (issue 3). Prints figures measured in one run on this machine
and writes them to benchmarks/results/bench_ep.json.

  .venv/bin/python benchmarks/bench_ep.py            # full (paper architecture at batch 128: a few minutes on 2 cores)
  .venv/bin/python benchmarks/bench_ep.py --quick    # smaller batch, fewer repeats

(1) ms per relaxation step and image-steps/s, paper architecture: the explicit synchronous update
    (eprobust.ep, channels-last maps) vs an autograd-of-Phi baseline written here (s <- sigma(dPhi/ds) by
    torch.autograd.grad), both in the reference code's default NCHW layout and in the same channels-last layout.
(2) achieved GFLOP/s of the explicit relaxation (FLOPs of the convolutions the update executes) divided by
    this machine's float32 matmul GFLOP/s, measured in the same run.
(3) steps and seconds to reach residual max|s^{t+1} - s^t| <= 1e-4, per solver, and the distance between
    the fixed points they reach.
(4) seconds per EP training batch for the `paper` and `cpu` presets.
"""
import argparse, copy, json, time
from dataclasses import replace
from pathlib import Path
import torch
import torch.nn.functional as F
from eprobust.core import get_preset
from eprobust.ep import EPCNN, Phi, sigma, relax, input_drive, SOLVERS
from eprobust.train import build_model, make_optimizer, get_model_spec

def timeit(fn, repeats, warmup=1):
    for _ in range(warmup): fn()
    t0 = time.perf_counter()
    for _ in range(repeats): fn()
    return (time.perf_counter() - t0) / repeats

def matmul_gflops(sizes=(1024, 2048, 4096), repeats=5):
    "The machine's float32 matmul rate: the best over a few square sizes."
    best = 0.
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = max(best, 2 * n ** 3 / timeit(lambda: a @ b, repeats, 2) / 1e9)
    return best

def step_flops(model, N):
    "FLOPs of one explicit synchronous step: forward conv k>=1 and its transpose (top-down), per layer."
    flops, h = 0, 32
    for k, conv in enumerate(model.convs):
        pad = conv.padding[0]; h_out = h + 2 * pad - 2
        if k >= 1: flops += 2 * 2 * conv.in_channels * conv.out_channels * 9 * h_out * h_out  # conv + transposed conv
        h = h_out // 2
    return flops * N

def autograd_step(model, xn, s):
    "The baseline: one synchronous step by autograd of Phi (what the reference EP code does)."
    s = [t.detach().requires_grad_() for t in s]
    g = torch.autograd.grad(Phi(model, xn, s).sum(), s)
    return [sigma(v) for v in g]

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); ap.add_argument('--batch', type=int, default=None)
    a = ap.parse_args()
    N = a.batch or (32 if a.quick else 128); reps = 3 if a.quick else 5
    torch.manual_seed(0); out = dict(threads=torch.get_num_threads(), batch=N, torch=torch.__version__)
    paper = get_preset('paper').train['ep_cnn']
    m = build_model(paper).eval(); x = torch.rand(N, 3, 32, 32); xn = m.norm(x)
    with torch.no_grad(): s0, _ = relax(m, xn, m.init_state(xn), 5)   # a non-trivial state
    drive = input_drive(m, xn).detach()

    out['matmul_gflops'] = matmul_gflops()
    with torch.no_grad():
        t_explicit = timeit(lambda: relax(m, None, s0, 1, drive=drive), reps)
    t_autograd = timeit(lambda: autograd_step(m, xn, s0), reps)            # same (channels-last) layout
    m_ref = copy.deepcopy(m); m_ref.convs.to(memory_format=torch.contiguous_format)
    s_ref = [t.contiguous() for t in s0]
    t_autograd_nchw = timeit(lambda: autograd_step(m_ref, xn, s_ref), reps)  # the reference code's layout
    out['paper_sync_ms_per_step'] = 1e3 * t_explicit
    out['paper_autograd_ms_per_step'] = 1e3 * t_autograd
    out['paper_sync_image_steps_per_s'] = N / t_explicit
    out['paper_autograd_image_steps_per_s'] = N / t_autograd
    out['paper_autograd_nchw_ms_per_step'] = 1e3 * t_autograd_nchw
    out['explicit_over_autograd'] = t_autograd / t_explicit
    out['explicit_over_autograd_nchw'] = t_autograd_nchw / t_explicit
    out['paper_step_gflop_per_image'] = step_flops(m, 1) / 1e9
    out['paper_relax_gflops'] = step_flops(m, N) / t_explicit / 1e9
    out['relax_fraction_of_matmul'] = out['paper_relax_gflops'] / out['matmul_gflops']
    print(f"(1) paper architecture, batch {N}: explicit sync {out['paper_sync_ms_per_step']:.0f} ms/step "
          f"({out['paper_sync_image_steps_per_s']:.0f} image-steps/s) vs autograd of Phi {out['paper_autograd_ms_per_step']:.0f} ms/step "
          f"({out['paper_autograd_image_steps_per_s']:.0f}): {out['explicit_over_autograd']:.2f}x; "
          f"vs autograd of Phi in the reference code's NCHW layout {out['paper_autograd_nchw_ms_per_step']:.0f} ms/step: "
          f"{out['explicit_over_autograd_nchw']:.2f}x", flush=True)
    print(f"(2) relaxation {out['paper_relax_gflops']:.1f} GFLOP/s ({out['paper_step_gflop_per_image']:.3f} GFLOP per image-step) "
          f"= {100 * out['relax_fraction_of_matmul']:.0f}% of float32 matmul {out['matmul_gflops']:.1f} GFLOP/s", flush=True)

    # (3) steps to residual 1e-4 from zero, each solver, on the paper architecture (random init)
    Nf = min(N, 32); xf = xn[:Nf]; res = {}; states = {}
    for name in SOLVERS:
        with torch.no_grad():
            t0 = time.perf_counter()
            s, st = relax(m, xf, m.init_state(xf), 400, solver=name, tol=1e-4, check_every=1)
            res[name] = dict(steps=st.steps, seconds=time.perf_counter() - t0, residual=st.residual)
            states[name] = s
        print(f"(3) {name:5s}: {st.steps} steps, {res[name]['seconds']:.1f}s to residual {st.residual:.1e} (batch {Nf})", flush=True)
    res['max_abs_diff_sync_async'] = max((u - v).abs().max().item() for u, v in zip(states['sync'], states['async']))
    res['steps_ratio_async_over_sync'] = res['async']['steps'] / res['sync']['steps']
    out['solvers'] = res
    print(f"    async/sync steps: {res['steps_ratio_async_over_sync']:.2f}; max|s_sync - s_async| = {res['max_abs_diff_sync_async']:.1e}")

    # (4) one EP training batch per preset
    for preset in ('paper', 'cpu'):
        cfg = get_preset(preset).train['ep_cnn']
        model = build_model(cfg); opt = make_optimizer(model, cfg); step = get_model_spec(cfg.model).step
        xb, yb = torch.rand(cfg.batch_size, 3, 32, 32), torch.randint(0, 10, (cfg.batch_size,))
        def one():
            opt.zero_grad(); step(model, xb, yb, cfg, None); opt.step()
        t = timeit(one, 1 if preset == 'paper' else reps, warmup=0 if preset == 'paper' else 1)
        out[f'{preset}_seconds_per_train_batch'] = t
        print(f"(4) {preset} preset: {t:.2f} s per EP training batch (batch {cfg.batch_size}, T {cfg.ep.T_free}/{cfg.ep.T_nudge}, "
              f"{cfg.ep.solver}, channels {cfg.channels})", flush=True)

    dest = Path(__file__).parent / 'results' / 'bench_ep.json'; dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1)); print(f'wrote {dest}')

if __name__ == '__main__': main()
