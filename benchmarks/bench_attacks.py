"""Cost of one PGD step on the EP-CNN per attack gradient (issue 5). Prints figures measured in one run on this
machine and writes them to benchmarks/results/bench_attacks.json.

  .venv/bin/python benchmarks/bench_attacks.py            # paper architecture at batch 8, cpu architecture at batch 128
  .venv/bin/python benchmarks/bench_attacks.py --quick    # smaller batches

For each architecture (`paper`: 128-256-512-512, T1 250, synchronous; `cpu`: 16-32-64-128, T1 12, even/odd) and each
attack gradient (`unrolled` at T_attack 70 (at most T1), `full` (all T1 steps), `implicit` (adjoint fixed point)),
one L2 PGD step (forward with the attack gradient, backward to the input) runs in a fresh subprocess, which reports:
- seconds per PGD step (one step, timed after the step that measures memory);
- peak memory: the process's peak resident set size (ru_maxrss) during the step minus its resident size before (glibc
  told to return freed blocks at once), and the storages autograd saved for backward outside checkpointed chunks
  (`torch.autograd.graph.saved_tensors_hooks`; `full` at T1 > 32 keeps √T1-step chunks and recomputes them, which
  this count does not see — the RSS does).
Weights are the default init (the cost does not depend on training); the implicit row also reports the adjoint
iterations used.
"""
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path
from timing import cpu_flags

ARCHS = {'paper': dict(batch=8), 'cpu': dict(batch=128)}

def one(arch: str, grad: str, batch: int, repeats: int) -> dict:
    "Runs in the subprocess: build the model, time `repeats` PGD steps, measure memory of the first."
    import torch, torch.nn.functional as F
    from eprobust.core import get_preset
    from eprobust.train import build_model
    from eprobust.attacks import EPClassifier, adjoint_summary
    torch.manual_seed(0)
    cfg = get_preset(arch).train['ep_cnn']; model = build_model(cfg).eval().requires_grad_(False)
    T_attack = min(70, model.T_free)
    stats = []                     # the implicit backward's adjoint statistics, one dict per solve
    clf = EPClassifier(model, grad, T_attack, stats=stats)
    x = torch.rand(batch, 3, 32, 32); y = torch.randint(0, 10, (batch,))
    def step():
        xx = x.clone().requires_grad_()
        g, = torch.autograd.grad(F.cross_entropy(clf(xx), y), xx)
        return g
    saved = {}                     # storages autograd keeps for backward, counted once each (views share one)
    def pack(t): saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes(); return t
    import os
    rss0 = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024   # current RSS, KiB
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t): step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0       # KiB on Linux
    t0 = time.perf_counter()
    for _ in range(repeats): step()
    sec = (time.perf_counter() - t0) / repeats
    return dict(arch=arch, grad=grad, T1=model.T_free, T_attack=T_attack if grad == 'unrolled' else (model.T_free if grad == 'full' else None),
                batch=batch, seconds_per_step=sec, peak_rss_mib=peak / 1024, saved_for_backward_mib=sum(saved.values()) / 2 ** 20,
                threads=torch.get_num_threads(), **adjoint_summary(stats))

def trained_cpu_ep():
    "The `cpu` preset's trained EP-CNN (seed 11) from the project cache, training it first if it is not there (~20 min)."
    from eprobust.train import open_stage
    st = open_stage('cpu', models=('ep_cnn',), seeds=(11,), progress=False)
    (_, _, r, ids), = list(st.models())
    return r.model, st.test, ids

def pgd_speed_and_strength(n: int, eps_list=(('L2', 0.3085), ('Linf', 0.01))) -> list[dict]:
    """PGD-20 with the full gradient through the trained `cpu` EP-CNN on the same first `n` test images, three ways:
    'before' (float32 with σ written as a clamp, as before issue 16: its backward takes three kernels), 'float32' and
    'bf16' (`AttackSpec.precision`): images per second, robust accuracy with a 95 % Wilson interval, and bf16 against
    float32 image by image (survived by one attack only; exact McNemar p-value). A faster, weaker attack is a defect."""
    import torch
    import eprobust.ep as ep
    from eprobust.core import wilson_interval, mcnemar_exact
    from eprobust.attacks import AttackSpec, as_classifier, make_attack, predict, _run_eps, _labels_of
    from eprobust.data import to_float
    model, (xt, yt), ids = trained_cpu_ep()
    x, y = to_float(xt[:n]), yt[:n]
    hardtanh = ep.sigma
    clamp = lambda v: (0.5 * v).clamp(0, 1)          # σ as it was written before
    ci = lambda c: wilson_interval(int(c.sum()), len(c))
    rows = []
    for norm, eps in eps_list:
        out = {}
        for name, prec, sig in (('before', None, clamp), ('float32', None, hardtanh), ('bf16', 'bf16', hardtanh)):
            ep.sigma = sig
            try:
                spec = AttackSpec('pgd', norm, (eps,), steps=20, grads=('full',), n=n, precision=prec)
                clf = as_classifier(model, 'full', model.T_free, precision=spec.precision)
                labels = predict(clf, x, spec.batch_size) if _labels_of(spec) == 'predicted' else y
                atk = make_attack(clf, spec, eps, seed=0)
                t0 = time.perf_counter(); correct, _, _ = _run_eps(clf, atk, x, labels, y, spec, 0, eps, False)
                out[name] = (correct, time.perf_counter() - t0)
            finally: ep.sigma = hardtanh
        (cb, tb), (c32, t32), (c16, t16) = out['before'], out['float32'], out['bf16']
        mc = mcnemar_exact(c32.numpy(), c16.numpy()); only32, only16 = mc['only_a'], mc['only_b']   # survives one attack only
        r = dict(norm=norm, eps=eps, n=n, robust_before=cb.float().mean().item(), robust_float32=c32.float().mean().item(),
                 robust_bf16=c16.float().mean().item(), ci_before=ci(cb), ci_float32=ci(c32), ci_bf16=ci(c16),
                 survives_float32_only=only32, survives_bf16_only=only16,
                 mcnemar_p=mc['p'],
                 images_per_s_before=n / tb, images_per_s_float32=n / t32, images_per_s_bf16=n / t16,
                 bf16_over_before=tb / t16, float32_over_before=tb / t32, bf16_over_float32=t32 / t16, weights=ids['weights'])
        rows.append(r)
        pc = lambda k: f"{100 * r['robust_' + k]:.1f}% [{100 * r['ci_' + k][0]:.1f}, {100 * r['ci_' + k][1]:.1f}]"
        print(f"PGD-20 {norm} ε {eps:g}, full gradient (T1 {model.T_free}), trained cpu EP-CNN, first {n} test images:\n"
              f"  images/s: before {r['images_per_s_before']:.1f}, float32 {r['images_per_s_float32']:.1f}, bf16 {r['images_per_s_bf16']:.1f}: "
              f"bf16 / before {r['bf16_over_before']:.2f}x, float32 / before {r['float32_over_before']:.2f}x, bf16 / float32 {r['bf16_over_float32']:.2f}x\n"
              f"  robust accuracy: before {pc('before')}, float32 {pc('float32')}, bf16 {pc('bf16')}; images surviving only the float32 "
              f"attack {only32}, only the bf16 one {only16} (McNemar p {r['mcnemar_p']:.2f})", flush=True)
    return rows

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); ap.add_argument('--child', nargs=4)
    ap.add_argument('--pgd-only', action='store_true', help='only the float32 vs bf16 PGD comparison on the trained cpu EP-CNN')
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one(a.child[0], a.child[1], int(a.child[2]), int(a.child[3])))); return
    print(cpu_flags(), flush=True)
    pgd = pgd_speed_and_strength(200 if a.quick else 1000)
    rows = []
    if a.pgd_only: ARCHS.clear()
    for arch, o in ARCHS.items():
        batch = max(2, o['batch'] // 4) if a.quick else o['batch']
        for grad in ('unrolled', 'full', 'implicit'):
            # a fixed mmap threshold makes glibc return every freed large block to the OS at once, so the peak RSS follows
            # the tensors alive (its default dynamic threshold keeps freed blocks in the heap and the RSS only grows)
            env = {**os.environ, 'MALLOC_MMAP_THRESHOLD_': '131072'}
            out = subprocess.run([sys.executable, __file__, '--child', arch, grad, str(batch), '1'],
                                 capture_output=True, text=True, check=True, env=env)
            r = json.loads(out.stdout.strip().splitlines()[-1]); rows.append(r)
            extra = f", adjoint {r['adjoint_iters']} iterations (residual {r['adjoint_residual']:.1e})" if 'adjoint_iters' in r else ''
            T = f" T_attack {r['T_attack']}" if r['T_attack'] else ''
            print(f"{arch:5s} (T1 {r['T1']}) {grad:8s}{T}: {r['seconds_per_step']:.2f} s per PGD step at batch {batch}; "
                  f"peak RSS +{r['peak_rss_mib']:.0f} MiB, saved for backward {r['saved_for_backward_mib']:.0f} MiB{extra}", flush=True)
        by = {r['grad']: r for r in rows if r['arch'] == arch}
        print(f"{arch}: unrolled / implicit memory: peak RSS {by['unrolled']['peak_rss_mib'] / max(by['implicit']['peak_rss_mib'], 1e-9):.1f}×, "
              f"saved tensors {by['unrolled']['saved_for_backward_mib'] / max(by['implicit']['saved_for_backward_mib'], 1e-9):.1f}×")
    dest = Path(__file__).parent / 'results' / 'bench_attacks.json'; dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(dict(rows=rows, pgd_precision=pgd, cpu=cpu_flags(), quick=a.quick, date=time.strftime('%Y-%m-%d %H:%M')), indent=1) + '\n')
    print(f'wrote {dest}')

if __name__ == '__main__':
    main()
