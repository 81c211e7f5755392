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
import argparse, copy, json, os, subprocess, sys, time
from dataclasses import replace
from pathlib import Path
import torch
import torch.nn.functional as F
from eprobust.core import get_preset
from eprobust.ep import EPCNN, Phi, sigma, relax, input_drive, SOLVERS, _Net, _pool
from eprobust.train import build_model, make_optimizer, get_model_spec
from timing import timeit, interleaved, paired_ratio, fastest_ratio, cpu_flags

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
    net = _Net(model); ops = []
    with torch.no_grad():
        for k in range(1, len(s)):
            _, idx, size = _pool(net, k, s[k - 1])         # the library's bottom-up term, for its argmax
            ops.append((s[k - 1], F.max_unpool2d(s[k], idx, 2, output_size=size), *net.convs[k]))
    return ops

def convs_only(ops):
    "Only the convolutions of one explicit step (bottom-up conv and top-down transposed conv per layer): a floor."
    with torch.no_grad():
        for s_in, u, w, b, pad in ops: F.conv2d(s_in, w, b, padding=pad); F.conv_transpose2d(u, w, padding=pad)

def max_diff(a, b): return max((u.float() - v.float()).abs().max().item() for u, v in zip(a, b))

def isa_of_convs() -> str:
    "The oneDNN implementation (kernel and ISA) behind a channels-last conv in float32 and bf16, read from ONEDNN_VERBOSE in a subprocess."
    code = ("import torch, torch.nn.functional as F\n"
            "for dt in (torch.float32, torch.bfloat16):\n"
            "    x = torch.rand(8, 32, 16, 16, dtype=dt).contiguous(memory_format=torch.channels_last)\n"
            "    F.conv2d(x, torch.rand(64, 32, 3, 3, dtype=dt), padding=1)\n")
    out = subprocess.run([sys.executable, '-c', code], env={**os.environ, 'ONEDNN_VERBOSE': '1'}, capture_output=True, text=True).stdout
    impls = [l.split(',')[5:7] for l in out.splitlines() if ',exec,' in l and ',convolution,' in l]
    return '; '.join(f"{'float32' if i == 0 else 'bf16'} conv: {impl}" for i, (_, impl) in enumerate(impls[:2])) or 'oneDNN verbose gave nothing'

def where_time_goes(model, s, drive, solver, dtype) -> dict:
    "Share of one relaxation step's operator time per kind (torch.profiler): convolutions, pool/unpool, the rest (elementwise, casts)."
    from torch.profiler import profile, ProfilerActivity
    with torch.no_grad():
        relax(model, None, s, 2, solver=solver, drive=drive, dtype=dtype)
        with profile(activities=[ProfilerActivity.CPU]) as p:
            relax(model, None, s, 4, solver=solver, drive=drive, dtype=dtype)
    kinds = {'convolutions': ('conv', 'addmm', 'mm', 'im2col', 'col2im'), 'pool/unpool': ('pool',)}
    tot = {k: 0. for k in (*kinds, 'elementwise and casts')}
    for e in p.key_averages():
        if not e.key.startswith('aten::'): continue
        k = next((k for k, subs in kinds.items() if any(t in e.key for t in subs)), 'elementwise and casts')
        tot[k] += e.self_cpu_time_total
    all_ = sum(tot.values()) or 1.
    return {k: v / all_ for k, v in tot.items()}

def cpu_arch_section(quick: bool, out: dict):
    "(5) the cpu preset's architecture: a relaxation step in float32 against bf16, per batch size, and where the bf16 step's time goes."
    cfg = get_preset('cpu').train['ep_cnn']; m = build_model(cfg).eval(); bf = torch.bfloat16
    res = {}
    for N in ((128,) if quick else (128, 256)):
        x = torch.rand(N, 3, 32, 32); xn = m.norm(x)
        with torch.no_grad(): d = input_drive(m, xn); s0, _ = relax(m, xn, m.init_state(xn), 5, solver=cfg.ep.solver, drive=d)
        def step(dtype):
            with torch.no_grad(): relax(m, None, s0, 1, solver=cfg.ep.solver, drive=d, dtype=dtype)
        med, rounds = interleaved({'float32': lambda: step(None), 'bf16': lambda: step(bf)}, 5 if quick else 11, 5)
        res[N] = dict(ms_float32=1e3 * med['float32'], ms_bf16=1e3 * med['bf16'], ratio=paired_ratio(rounds, 'float32', 'bf16'),
                      shares_bf16=where_time_goes(m, s0, d, cfg.ep.solver, bf), shares_float32=where_time_goes(m, s0, d, cfg.ep.solver, None))
        r = res[N]
        print(f"(5) cpu architecture {cfg.channels}, {cfg.ep.solver}, batch {N}: one step {r['ms_float32']:.2f} ms float32, {r['ms_bf16']:.2f} ms bf16: "
              f"{r['ratio']:.2f}x; operator time of the bf16 step: " + ', '.join(f"{k} {100 * v:.0f}%" for k, v in r['shares_bf16'].items()) +
              "; of the float32 step: " + ', '.join(f"{k} {100 * v:.0f}%" for k, v in r['shares_float32'].items()), flush=True)
    out['cpu_arch_step'] = res

def training_precision_section(quick: bool, out: dict):
    """(6) one `cpu` EP training batch with `EPConfig.precision` float32 against 'bf16' (interleaved rounds), and each estimate's cosine
    with the exact gradient of the prediction's loss (`ep_vs_bptt`) on the preset's trained EP-CNN where the cache has it, else the init."""
    import glob
    from eprobust.train import model_key
    from eprobust.ep import ep_vs_bptt
    from eprobust.data import load_cifar, default_data_root
    cfg = get_preset('cpu').train['ep_cnn']; f32 = replace(cfg, ep=replace(cfg.ep, precision=None)); b16 = replace(cfg, ep=replace(cfg.ep, precision='bf16'))
    ck = sorted(glob.glob(str(Path(__file__).parent.parent / 'cache' / 'models' / 'ep_cnn' / f'{model_key(cfg, 11)}-*.pt')))
    model = build_model(cfg)
    if ck: model.load_state_dict(torch.load(ck[0], map_location='cpu', weights_only=True)['model'])
    x, y = load_cifar(os.environ.get('EPROBUST_DATA') or default_data_root(), 'cifar10', 'train', progress=False)
    variants = {}
    for name, c in (('float32', f32), ('bf16', b16)):
        mm = build_model(c); mm.load_state_dict(model.state_dict()); opt = make_optimizer(mm, c); step = get_model_spec(c.model).step
        xb, yb = x[:c.batch_size].float() / 255, y[:c.batch_size]
        def one(mm=mm, opt=opt, step=step, c=c, xb=xb, yb=yb):
            opt.zero_grad(); step(mm, xb, yb, c, None); opt.step()
        variants[name] = one
    med, rounds = interleaved(variants, 3 if quick else 7, 3)
    cos = {}
    for name, c in (('float32', f32), ('bf16', b16)):
        draws = [ep_vs_bptt(model, x[i].float() / 255, y[i], c.ep) for i in
                 (torch.randperm(len(y), generator=torch.Generator().manual_seed(d))[:256] for d in range(2 if quick else 6))]
        cos[name] = torch.tensor(draws).mean(0).tolist()
    out['train_precision'] = dict(s_float32=med['float32'], s_bf16=med['bf16'], ratio=paired_ratio(rounds, 'float32', 'bf16'),
                                  ep_vs_bptt=cos, trained=bool(ck))
    fmt = lambda v: ' '.join(f'{c:.2f}' for c in v)
    print(f"(6) cpu EP training batch ({cfg.batch_size} images, T {cfg.ep.T_free}/{cfg.ep.T_nudge}): {med['float32']:.3f} s float32, "
          f"{med['bf16']:.3f} s with precision 'bf16': {out['train_precision']['ratio']:.2f}x. Cosine with the exact gradient "
          f"(conv1..conv4, readout; mean of {2 if quick else 6} draws of 256 images, {'trained' if ck else 'untrained'} model): "
          f"float32 {fmt(cos['float32'])}; bf16 {fmt(cos['bf16'])}", flush=True)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); ap.add_argument('--batch', type=int, default=None)
    a = ap.parse_args()
    N = a.batch or (32 if a.quick else 128); reps = 3 if a.quick else 5
    torch.manual_seed(0); out = dict(threads=torch.get_num_threads(), batch=N, torch=torch.__version__, cpu=cpu_flags(), isa=isa_of_convs())
    print(out['cpu'], '\n' + out['isa'], flush=True)
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
    K = 4   # the explicit variants time K steps in one `relax` call (per step: / K), as a relaxation runs them: the casts
            # to bf16 and the top conv's dense matrix are made once per call, not per step
    def explicit(dtype=None):
        with torch.no_grad(): relax(m, None, s0, K, drive=drive, dtype=dtype)
    variants = {'explicit': explicit, 'explicit_bf16': lambda: explicit(bf),
                'autograd': lambda: autograd_step(m, xn, s0),                   # same (channels-last) layout
                'autograd_nchw': lambda: autograd_step(m_nchw, xn, s_nchw),     # the reference code's layout
                'autograd_bf16': lambda: autograd_step(m_bf, xn.to(bf), [t.to(bf) for t in s0]),
                'convs_only': lambda: convs_only(ops)}   # the same convolutions with nothing around them
    med, rounds = interleaved(variants, 3 if a.quick else 11, 2)            # medians over rounds, 2 steps each
    for k in ('explicit', 'explicit_bf16'): med[k] /= K; rounds[k] = [t / K for t in rounds[k]]
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

    cpu_arch_section(a.quick, out)
    training_precision_section(a.quick, out)
    c = out['cpu_arch_step'][max(out['cpu_arch_step'])]
    print(f"targets (issue 16), this run: paper-architecture bf16 relaxation at {100 * out['relax_bf16_fraction_of_bf16_matmul']:.0f}% of "
          f"the bf16 matmul rate (target >= 70% where the CPU has AMX: {'amx_bf16' in out['cpu']}); cpu-architecture bf16 step "
          f"{c['ratio']:.2f}x its float32 step (target >= 4x); cpu EP training batch with precision 'bf16' "
          f"{out['train_precision']['ratio']:.2f}x float32", flush=True)
    dest = Path(__file__).parent / 'results' / 'bench_ep.json'; dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1)); print(f'wrote {dest}')

if __name__ == '__main__': main()
