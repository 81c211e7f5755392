"House style checks on the library as a whole."
import importlib, inspect, pkgutil
import eprobust

def _functions():
    for m in pkgutil.iter_modules(eprobust.__path__):
        mod = importlib.import_module(f'eprobust.{m.name}')
        for _, obj in inspect.getmembers(mod):
            if inspect.isfunction(obj) and obj.__module__ == mod.__name__: yield obj
            if inspect.isclass(obj) and obj.__module__ == mod.__name__:
                yield from (f for _, f in inspect.getmembers(obj, inspect.isfunction) if f.__qualname__.startswith(obj.__name__ + '.'))

def test_no_library_function_takes_more_than_ten_parameters():
    "Settings are grouped into the dataclasses that describe them (StageArgs, AttackSpec, TrainConfig, ...)."
    wide = {}
    for f in _functions():
        ps = [p for p in inspect.signature(f).parameters if p not in ('self', 'cls', 'ctx')]
        if len(ps) > 10 and not f.__name__.startswith('__'): wide[f'{f.__module__}.{f.__qualname__}'] = len(ps)
    assert not wide, wide
