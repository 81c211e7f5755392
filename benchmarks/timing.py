"Timing helpers shared by the benchmark scripts (run as `python benchmarks/<script>.py`, so this imports as `timing`)."
import statistics, time

def timeit(fn, repeats, warmup=1):
    "Mean seconds per call of `fn` over `repeats` calls, after `warmup` untimed ones."
    for _ in range(warmup): fn()
    t0 = time.perf_counter()
    for _ in range(repeats): fn()
    return (time.perf_counter() - t0) / repeats

def interleaved(variants: dict, rounds: int, repeats: int) -> tuple[dict, dict]:
    """Median seconds per call of each variant, and the per-round figures. The variants take turns, `repeats` calls
    each per round, after one warm-up call each: on a shared machine a slow spell then hits every variant alike
    instead of one of them (one timing per variant had moved the explicit/autograd ratio by ±20 % between runs)."""
    for f in variants.values(): f()
    per_round = {k: [] for k in variants}
    for _ in range(rounds):
        for k, f in variants.items(): per_round[k].append(timeit(f, repeats, warmup=0))
    return {k: statistics.median(v) for k, v in per_round.items()}, per_round

def paired_ratio(per_round: dict, slow: str, fast: str) -> float:
    """How many times faster `fast` ran than `slow`: the median over rounds of their ratio within each round. Two
    variants timed seconds apart share the machine's state, so this moves less than the ratio of the two medians."""
    return statistics.median(a / b for a, b in zip(per_round[slow], per_round[fast]))

def fastest_ratio(per_round: dict, slow: str, fast: str) -> float:
    "The same, from each variant's fastest round: noise on a shared machine only ever adds time."
    return min(per_round[slow]) / min(per_round[fast])

def cpu_flags() -> str:
    "The CPU model, its vector/matrix ISA flags that matter here, and torch's thread count: figures compare only within one run."
    import torch
    from eprobust.core import cpu_info
    model, flags = cpu_info()
    wanted = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_tile', 'amx_bf16', 'amx_int8')
    return f"CPU: {model}; flags: {' '.join(f for f in wanted if f in flags) or 'none of ' + ', '.join(wanted)}; torch {torch.__version__}, {torch.get_num_threads()} threads"
