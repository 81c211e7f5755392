"""EP-CNN relaxation and training benchmark (issue 3). Prints figures measured in one run on this machine
and writes them to benchmarks/results/bench_ep.json.

  .venv/bin/python benchmarks/bench_ep.py            # full (paper architecture at batch 128: a few minutes on 2 cores)
  .venv/bin/python benchmarks/bench_ep.py --quick    # smaller batch, fewer repeats

(1) ms per relaxation step and image-steps/s, paper architecture: the explicit synchronous update
    (eprobust.ep, channels-last maps) vs an autograd-of-Phi baseline written here (s <- sigma(dPhi/ds) by
    torch.autograd.grad), both in the reference code's default NCHW layout and in the same channels-last layout;
    float32 throughout, and the explicit update once more in bfloat16 (`relax(..., dtype=torch.bfloat16)`) beside
    an autograd baseline in bfloat16, so every ratio is printed at equal and at unequal precision. Beside them, the
    step's convolutions alone (nothing around them): a floor for any step that executes those convolutions, so
    autograd's time over it bounds what such a step can gain over autograd of Phi on this machine.
(2) achieved GFLOP/s of the explicit relaxation (FLOPs of the convolutions the update executes) divided by
    this machine's float32 matmul GFLOP/s, measured in the same run (and the bf16 relaxation against bf16 matmul).
(3) the reference fixed point is the paper's free phase: 250 synchronous float32 steps from zero. Per solver
    (residual-based early stopping of the same synchronous map; even/odd updates; bf16 steps then float32
    polishing), steps and seconds to reach residual max|s^{t+1} - s^t| <= 1e-4, and max|s - s_ref|.
(4) seconds per EP training batch for the `paper` and `cpu` presets.
"""
import argparse, copy, json, time
from dataclasses import replace
from pathlib import Path
import torch
import torch.nn.functional as F
from eprobust.core import get_preset
from eprobust.ep import EPCNN, Phi, sigma, relax, input_drive, SOLVERS, _Net, _pool
from eprobust.train import build_model, make_optimizer, get_model_spec
from timing import timeit, interleaved, paired_ratio, fastest_ratio

def matmul_gflops(sizes=(1024, 2048, 4096), repeats=5, rounds=3, dtype=torch.float32):
    "The machine's matmul rate in `dtype`: the best over a few square sizes and `rounds` passes over them."
    best, mats = 0., {n: (torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)) for n in sizes}
    for r in range(rounds):     # a peak rate: one slow spell on the shared machine must not lower the denominator
        for n, (a, b) in mats.items(): best = max(best, 2 * n ** 3 / timeit(lambda: a @ b, repeats, 2 if r == 0 else 0) / 1e9)
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

def conv_operands(model, s):
    "The inputs of the convolutions one explicit step executes: per layer k >= 1, s_{k-1} and the unpooled s_k."
    convs = _Net(model).convs; ops = []
    with torch.no_grad():
        for k in range(1, len(s)):
            _, idx, size = _pool(convs[k], s[k - 1])       # the library's bottom-up term, for its argmax
            ops.append((s[k - 1], F.max_unpool2d(s[k], idx, 2, output_size=size), *convs[k]))
    return ops

def convs_only(ops):
    "Only the convolutions of one explicit step (bottom-up conv and top-down transposed conv per layer): a floor."
    with torch.no_grad():
        for s_in, u, w, b, pad in ops: F.conv2d(s_in, w, b, padding=pad); F.conv_transpose2d(u, w, padding=pad)

def max_diff(a, b): return max((u.float() - v.float()).abs().max().item() for u, v in zip(a, b))

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
    out['matmul_gflops_bf16'] = matmul_gflops(dtype=torch.bfloat16)
    bf = torch.bfloat16
    ops = conv_operands(m, s0)
    m_nchw = copy.deepcopy(m); m_nchw.convs.to(memory_format=torch.contiguous_format)
    s_nchw = [t.contiguous() for t in s0]
    m_bf = copy.deepcopy(m).to(bf)
    def explicit(dtype=None):
        with torch.no_grad(): relax(m, None, s0, 1, drive=drive, dtype=dtype)
    variants = {'explicit': explicit, 'explicit_bf16': lambda: explicit(bf),
                'autograd': lambda: autograd_step(m, xn, s0),                   # same (channels-last) layout
                'autograd_nchw': lambda: autograd_step(m_nchw, xn, s_nchw),     # the reference code's layout
                'autograd_bf16': lambda: autograd_step(m_bf, xn.to(bf), [t.to(bf) for t in s0]),
                'convs_only': lambda: convs_only(ops)}   # the same convolutions with nothing around them
    med, rounds = interleaved(variants, 3 if a.quick else 11, 2)            # medians over rounds, 2 steps each
    t_explicit, t_explicit_bf16, t_autograd, t_autograd_nchw, t_autograd_bf16, t_convs = (
        med[k] for k in ('explicit', 'explicit_bf16', 'autograd', 'autograd_nchw', 'autograd_bf16', 'convs_only'))
    out['ms_per_step_rounds'] = {k: [1e3 * t for t in v] for k, v in rounds.items()}
    ag = autograd_step(m, xn, s0)
    with torch.no_grad():   # the two explicit steps and autograd's agree (bf16 to its rounding)
        one = relax(m, None, s0, 1, drive=drive)[0]
        out['step_diff_autograd'] = max_diff(one, ag)
        out['step_diff_bf16'] = max_diff(one, relax(m, None, s0, 1, drive=drive, dtype=bf)[0])
    out['paper_sync_ms_per_step'] = 1e3 * t_explicit
    out['paper_sync_bf16_ms_per_step'] = 1e3 * t_explicit_bf16
    out['paper_autograd_ms_per_step'] = 1e3 * t_autograd
    out['paper_autograd_nchw_ms_per_step'] = 1e3 * t_autograd_nchw
    out['paper_autograd_bf16_ms_per_step'] = 1e3 * t_autograd_bf16
    out['paper_convs_only_ms_per_step'] = 1e3 * t_convs
    out['paper_sync_image_steps_per_s'] = N / t_explicit
    out['paper_sync_bf16_image_steps_per_s'] = N / t_explicit_bf16
    out['paper_autograd_image_steps_per_s'] = N / t_autograd
    # speed-ups, key: (slower, faster variant); each as the median of per-round ratios and, under 'fastest_' + key,
    # from each variant's fastest round (noise on a shared machine only ever adds time). The convs_only rows say
    # what any float32 step that executes these convolutions can gain: autograd's time over theirs alone
    ratios = {'explicit_over_autograd': ('autograd', 'explicit'), 'explicit_over_autograd_nchw': ('autograd_nchw', 'explicit'),
              'explicit_bf16_over_autograd_bf16': ('autograd_bf16', 'explicit_bf16'),
              'explicit_bf16_over_autograd': ('autograd', 'explicit_bf16'),
              'explicit_bf16_over_autograd_nchw': ('autograd_nchw', 'explicit_bf16'),
              'autograd_over_convs_only': ('autograd', 'convs_only'),
              'autograd_nchw_over_convs_only': ('autograd_nchw', 'convs_only'),
              'explicit_over_convs_only': ('explicit', 'convs_only')}
    for key, (slow, fast) in ratios.items():
        out[key], out['fastest_' + key] = paired_ratio(rounds, slow, fast), fastest_ratio(rounds, slow, fast)
    out['ms_per_step_fastest'] = {k: 1e3 * min(v) for k, v in rounds.items()}
    out['paper_step_gflop_per_image'] = step_flops(m, 1) / 1e9
    out['paper_relax_gflops'] = step_flops(m, N) / t_explicit / 1e9
    out['paper_relax_bf16_gflops'] = step_flops(m, N) / t_explicit_bf16 / 1e9
    out['relax_fraction_of_matmul'] = out['paper_relax_gflops'] / out['matmul_gflops']
    out['paper_autograd_gflops'] = step_flops(m, N) / t_autograd / 1e9
    out['gflops_for_1p5x_autograd'] = 1.5 * out['paper_autograd_gflops']
    out['relax_bf16_fraction_of_bf16_matmul'] = out['paper_relax_bf16_gflops'] / out['matmul_gflops_bf16']
    print(f"(1) paper architecture, batch {N}, ms per synchronous step (image-steps/s), medians of {len(rounds['explicit'])} "
          f"interleaved rounds; each ratio is the median of the ratios within a round:\n"
          f"    float32: explicit {out['paper_sync_ms_per_step']:.0f} ({out['paper_sync_image_steps_per_s']:.0f}), "
          f"autograd of Phi {out['paper_autograd_ms_per_step']:.0f} ({out['paper_autograd_image_steps_per_s']:.0f}), "
          f"autograd of Phi in the reference code's NCHW layout {out['paper_autograd_nchw_ms_per_step']:.0f}\n"
          f"      explicit / autograd: {out['explicit_over_autograd']:.2f}x same layout, {out['explicit_over_autograd_nchw']:.2f}x vs NCHW\n"
          f"    bfloat16: explicit {out['paper_sync_bf16_ms_per_step']:.0f} ({out['paper_sync_bf16_image_steps_per_s']:.0f}), "
          f"autograd of Phi {out['paper_autograd_bf16_ms_per_step']:.0f}: {out['explicit_bf16_over_autograd_bf16']:.2f}x at equal precision\n"
          f"    explicit bf16 / float32 autograd: {out['explicit_bf16_over_autograd']:.2f}x same layout, "
          f"{out['explicit_bf16_over_autograd_nchw']:.2f}x vs NCHW (unequal precision: the reference code runs float32)\n"
          f"    one step, max|explicit - autograd| = {out['step_diff_autograd']:.1e} (float32), "
          f"max|bf16 - float32| = {out['step_diff_bf16']:.1e}\n"
          f"    its convolutions alone (float32, channels-last, nothing around them) {out['paper_convs_only_ms_per_step']:.0f} ms: "
          f"explicit = {out['explicit_over_convs_only']:.2f}x that floor; autograd = {out['autograd_over_convs_only']:.2f}x "
          f"({out['autograd_nchw_over_convs_only']:.2f}x NCHW), the most any float32 step executing these convolutions could gain;\n"
          f"      1.5x autograd at these FLOPs would need {out['gflops_for_1p5x_autograd']:.0f} GFLOP/s = "
          f"{out['gflops_for_1p5x_autograd'] / out['matmul_gflops']:.2f}x this machine's float32 matmul rate\n"
          f"    fastest rounds (ms): explicit {out['ms_per_step_fastest']['explicit']:.0f}, autograd {out['ms_per_step_fastest']['autograd']:.0f} "
          f"(NCHW {out['ms_per_step_fastest']['autograd_nchw']:.0f}), convolutions alone {out['ms_per_step_fastest']['convs_only']:.0f}: "
          f"explicit / autograd {out['fastest_explicit_over_autograd']:.2f}x same layout, {out['fastest_explicit_over_autograd_nchw']:.2f}x vs NCHW; "
          f"autograd = {out['fastest_autograd_over_convs_only']:.2f}x the floor, explicit {out['fastest_explicit_over_convs_only']:.2f}x", flush=True)
    print(f"(2) relaxation {out['paper_relax_gflops']:.1f} GFLOP/s ({out['paper_step_gflop_per_image']:.3f} GFLOP per image-step) "
          f"= {100 * out['relax_fraction_of_matmul']:.0f}% of float32 matmul {out['matmul_gflops']:.1f} GFLOP/s; "
          f"bf16 relaxation {out['paper_relax_bf16_gflops']:.1f} GFLOP/s = {100 * out['relax_bf16_fraction_of_bf16_matmul']:.0f}% "
          f"of bf16 matmul {out['matmul_gflops_bf16']:.1f} GFLOP/s", flush=True)

    # (3) the paper's free phase is the reference; each solver from zero, one step at a time, on the paper
    # architecture (random init): the step at which its residual first falls to 1e-4 (what early stopping at
    # tol 1e-4 would take), and the step at which it comes within 1e-4 of the reference fixed point, if ever
    Nf = min(N, 32); xf = xn[:Nf]; res = {}
    with torch.no_grad():
        t0 = time.perf_counter(); s_ref, _ = relax(m, xf, m.init_state(xf), 250)
        res['reference'] = dict(steps=250, seconds=time.perf_counter() - t0)
        d_f = input_drive(m, xf)
        runs = {'sync': dict(solver='sync'), 'async': dict(solver='async'),
                'sync bf16, then float32': dict(solver='sync', dtype=bf)}
        for name, kw in runs.items():
            s, r_step, ref_step, dtype, t0 = m.init_state(xf), None, None, kw.pop('dtype', None), time.perf_counter()
            for t in range(1, 251):
                s, st = relax(m, None, s, 1, drive=d_f, tol=0., check_every=1, dtype=dtype, **kw)
                if dtype is not None and st.residual <= 2e-2: dtype = None     # bf16 at its rounding floor: go on in float32
                if r_step is None and st.residual <= 1e-4: r_step, r_sec = t, time.perf_counter() - t0
                if max_diff(s, s_ref) <= 1e-4: ref_step, ref_sec = t, time.perf_counter() - t0; break
            res[name] = dict(steps_to_residual=r_step, seconds_to_residual=r_sec if r_step else None,
                             steps_to_reference=ref_step, seconds_to_reference=ref_sec if ref_step else None,
                             max_diff_to_reference_at_end=max_diff(s, s_ref))
            q = res[name]
            reached = (f"within 1e-4 of the reference at step {ref_step} ({ref_step / 250:.2f} of the paper's 250)" if ref_step else
                       f"never within 1e-4 of the reference in 250 steps (max|s - s_ref| = {q['max_diff_to_reference_at_end']:.1e}: another fixed point)")
            print(f"(3) {name:24s}: residual <= 1e-4 at step {r_step}; {reached} (batch {Nf}; timings include the per-step checks)", flush=True)
    out['solvers'] = res

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
