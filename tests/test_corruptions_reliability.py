"""Reliability of regenerated CIFAR-C folders: seeds that survive a new corruption, files keyed by their
parameters and checked by SHA-256, errors that name the bad file and the fix, workers that die with a killed
parent, and corruption plans parsed by core's `parse_list`/`lookup`.

Each test takes the module under test from the `cm` fixture: `eprobust.corruptions`, or, to show that these
tests fail on an older version, a copy named by $EPROBUST_OLD_CORRUPTIONS, e.g.
`git show HEAD:eprobust/corruptions.py > /tmp/old.py; EPROBUST_OLD_CORRUPTIONS=/tmp/old.py pytest ...`."""
import importlib, json, os, re, signal, subprocess, sys, textwrap, time, types, warnings
from pathlib import Path
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


def corruption_module():
    "`eprobust.corruptions`, or the file named by $EPROBUST_OLD_CORRUPTIONS loaded in its place."
    old = os.environ.get('EPROBUST_OLD_CORRUPTIONS')
    if not old:
        return importlib.import_module('eprobust.corruptions')
    if 'eprobust.old_corruptions' in sys.modules:
        return sys.modules['eprobust.old_corruptions']
    src = Path(old).read_text()
    # an old copy imports stage helpers that the train module may no longer have; these tests need none of them
    src = re.sub(r'^from \.train import .*$', 'from .train import parse_seeds, parse_names', src, flags=re.M)
    src = src.replace("import_module('eprobust.corruptions')", 'import_module(__name__)')
    m = types.ModuleType('eprobust.old_corruptions')
    m.__package__ = 'eprobust'
    sys.modules[m.__name__] = m           # the pool's workers (forked) find its functions by this name
    exec(compile(src, old, 'exec'), m.__dict__)
    return m


@pytest.fixture
def cm():
    return corruption_module()


@pytest.fixture(scope='module')
def images():
    "Five small random uint8 images (N,32,32,3) and labels: the corruption code needs no real data."
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), np.arange(5) % 3


def _ino(root: Path, stem: str) -> int:
    "A file's inode: an atomic rewrite replaces it (unlike mtime, whose clock may not tick between two writes)."
    return os.stat(root / f'{stem}.npy').st_ino


# 1a. seeds come from the corruption's name, not its place in CORRUPTIONS

def test_new_corruption_reseeds_no_other(cm, images, monkeypatch):
    x, _ = images
    before = {n: cm.corrupt(x, n, 3) for n in ('gaussian_noise', 'glass_blur', 'spatter')}
    monkeypatch.setattr(cm, 'CORRUPTIONS', {'rain': lambda x, severity, rngs: x, **cm.CORRUPTIONS})
    for n, b in before.items():
        np.testing.assert_array_equal(cm.corrupt(x, n, 3), b, err_msg=f'{n} changed when a corruption was added')


# 1b. a changed PARAMS entry regenerates exactly that corruption

def test_changed_params_regenerate_that_corruption(cm, images, tmp_path, monkeypatch):
    x, y = images
    cm.regenerate(tmp_path, x, y, ['fog', 'contrast'], workers=1, progress=False)
    ino = {n: _ino(tmp_path, n) for n in ('fog', 'contrast', 'labels')}
    monkeypatch.setitem(cm.PARAMS, 'contrast', (.7,) + cm.PARAMS['contrast'][1:])
    cm.regenerate(tmp_path, x, y, ['fog', 'contrast'], workers=1, progress=False)
    np.testing.assert_array_equal(cm.load_corrupted(tmp_path, 'contrast', 1)[0], cm.corrupt(x, 'contrast', 1))
    assert {n: _ino(tmp_path, n) == i for n, i in ino.items()} == dict(fog=True, contrast=False, labels=True)


def test_load_refuses_a_file_made_with_other_params(cm, images, tmp_path, monkeypatch):
    x, y = images
    cm.regenerate(tmp_path, x, y, ['contrast'], workers=1, progress=False)
    monkeypatch.setitem(cm.PARAMS, 'contrast', (.7,) + cm.PARAMS['contrast'][1:])
    with pytest.raises(ValueError, match=r'contrast\.npy was made with other corruption parameters.*regenerate'):
        cm.load_corrupted(tmp_path, 'contrast', 1)


def test_old_seed_scheme_folder_is_regenerated(cm, images, tmp_path):
    "A folder written before files had keys (a marker without them) is rewritten, not reused."
    x, y = images
    cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    meta = json.loads((tmp_path / 'REGENERATED.json').read_text())
    meta.pop('files', None)
    (tmp_path / 'REGENERATED.json').write_text(json.dumps(meta))
    ino = _ino(tmp_path, 'fog')
    cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    assert _ino(tmp_path, 'fog') != ino


# 2. bytes changed in a regenerated file (same size) are caught by its SHA-256

def _scramble(f: Path):
    "Random bytes over a .npy file's data, keeping its header and size (the silent 0.09-accuracy failure)."
    raw = bytearray(f.read_bytes())
    raw[128:] = np.random.default_rng(1).integers(0, 256, len(raw) - 128, dtype=np.uint8).tobytes()
    f.write_bytes(bytes(raw))


def test_load_refuses_changed_bytes(cm, images, tmp_path):
    x, y = images
    cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    _scramble(tmp_path / 'fog.npy')
    with pytest.raises(ValueError, match=r'fog\.npy does not match its checksum.*regenerat'):
        cm.load_corrupted(tmp_path, 'fog', 1)


def test_regenerate_rewrites_changed_bytes_and_says_so(cm, images, tmp_path):
    x, y = images
    cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    _scramble(tmp_path / 'fog.npy')
    with pytest.warns(UserWarning, match=r'fog\.npy does not match its checksum.*regenerating it'):
        cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    np.testing.assert_array_equal(cm.load_corrupted(tmp_path, 'fog', 2)[0], cm.corrupt(x, 'fog', 2))


def test_regenerate_records_checksums(cm, images, tmp_path):
    from eprobust.core import file_sha256
    x, y = images
    cm.regenerate(tmp_path, x, y, ['fog', 'snow'], workers=2, progress=False)
    files = json.loads((tmp_path / 'REGENERATED.json').read_text())['files']
    assert {n: files[n]['sha256'] for n in files} == {n: file_sha256(tmp_path / f'{n}.npy') for n in ('fog', 'snow', 'labels')}


def test_official_folder_needs_no_checksums(cm, images, tmp_path):
    x, y = images
    np.save(tmp_path / 'fog.npy', np.concatenate([cm.corrupt(x, 'fog', s) for s in cm.SEVERITIES]))
    np.save(tmp_path / 'labels.npy', np.tile(y.astype(np.uint8), 5))
    xc, yc = cm.load_corrupted(tmp_path, 'fog', 3)
    np.testing.assert_array_equal(xc, cm.corrupt(x, 'fog', 3))
    np.testing.assert_array_equal(yc, y)


# 3. truncated files fail naming the file and the fix

def _truncate(f: Path, keep: int):
    f.write_bytes(f.read_bytes()[:keep])


def test_truncated_labels_in_official_folder(cm, images, tmp_path):
    x, y = images
    np.save(tmp_path / 'fog.npy', np.concatenate([x] * 5))
    np.save(tmp_path / 'labels.npy', np.tile(y.astype(np.uint8), 5))
    _truncate(tmp_path / 'labels.npy', 140)                  # 128-byte header, then 12 of 25 labels
    with pytest.raises(ValueError, match=r'labels\.npy is truncated or corrupt.*re-extract the official'):
        cm.load_corrupted(tmp_path, 'fog', 1)


def test_truncated_corruption_file_in_official_folder(cm, images, tmp_path):
    x, y = images
    np.save(tmp_path / 'fog.npy', np.concatenate([x] * 5))
    np.save(tmp_path / 'labels.npy', np.tile(y.astype(np.uint8), 5))
    _truncate(tmp_path / 'fog.npy', 1000)
    with pytest.raises(ValueError, match=r'fog\.npy is truncated or corrupt.*re-extract the official'):
        cm.load_corrupted(tmp_path, 'fog', 1)


def test_truncated_labels_in_regenerated_folder(cm, images, tmp_path):
    x, y = images
    cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    _truncate(tmp_path / 'labels.npy', 140)
    with pytest.raises(ValueError, match=rf'labels\.npy .*delete the folder {re.escape(str(tmp_path))}'):
        cm.load_corrupted(tmp_path, 'fog', 1)


@pytest.mark.parametrize('call', ['load', 'regenerate'])
def test_truncated_marker(cm, images, tmp_path, call):
    x, y = images
    cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    _truncate(tmp_path / 'REGENERATED.json', 40)
    run = {'load': lambda: cm.load_corrupted(tmp_path, 'fog', 1),
           'regenerate': lambda: cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)}[call]
    with pytest.raises(ValueError, match=rf'REGENERATED\.json is truncated or corrupt.*delete the folder {re.escape(str(tmp_path))}'):
        run()


def test_regenerate_rewrites_truncated_labels(cm, images, tmp_path):
    x, y = images
    cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    _truncate(tmp_path / 'labels.npy', 140)
    cm.regenerate(tmp_path, x, y, ['fog'], workers=1, progress=False)
    np.testing.assert_array_equal(cm.load_corrupted(tmp_path, 'fog', 5)[1], y)


# 4. a killed parent leaves no worker behind

KILLED_PARENT = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    from test_corruptions_reliability import corruption_module
    cm = corruption_module()
    x = np.random.default_rng(0).integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8)
    # slow corruptions on 1000 images: each task runs for seconds, so the workers are busy when the parent dies
    cm.regenerate(sys.argv[1], x, np.zeros(1000, int), ['zoom_blur', 'elastic_transform'], workers=2, progress=False)
''')


def _children(pid: int) -> list[int]:
    "The ids of `pid`'s child processes (from /proc; psutil is not installed)."
    out = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    "Whether process `pid` runs (a zombie, dead but not yet reaped by its new parent, does not count)."
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return False
    return state != 'Z'


def _wait_for(cond, timeout: float) -> bool:
    t = time.time()
    while time.time() - t < timeout:
        if cond():
            return True
        time.sleep(.1)
    return cond()


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc')
def test_workers_die_with_killed_parent(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    parent = subprocess.Popen([sys.executable, '-c', KILLED_PARENT, str(tmp_path), str(HERE)], env=env)
    workers = []
    try:
        _wait_for(lambda: len(_children(parent.pid)) >= 2 or parent.poll() is not None, 60)
        assert parent.poll() is None, f'the regeneration ended (exit code {parent.returncode}) before the test could kill it'
        assert len(_children(parent.pid)) >= 2, 'the pool never started 2 workers'
        workers = _children(parent.pid)
        time.sleep(.5)                                   # let them start computing
        parent.send_signal(signal.SIGKILL)                # as a killed kernel: no cleanup runs in the parent
        parent.wait()
        survived = not _wait_for(lambda: not any(_alive(w) for w in workers), 5)
        assert not survived, f"workers {[w for w in workers if _alive(w)]} outlived their killed parent"
    finally:
        parent.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)               # the workers this test started, if the code under test left them


def test_pool_workers_get_parent_death_signal(cm):
    if not sys.platform.startswith('linux'):
        pytest.skip('prctl is Linux only')
    with cm._pool(1) as ex:
        assert ex.submit(cm.parent_death_signal).result() == signal.SIGKILL


# 5. corruption plans parsed by core's parse_list and lookup

def test_plan_lists_in_brackets(cm):
    plan = cm.corruption_plan('tiny', '[fog, snow]', '(1, 3)')
    assert (plan.corruptions, plan.severities) == (('fog', 'snow'), (1, 3))


def test_plan_unknown_corruption_is_unknown_name(cm):
    from eprobust.core import UnknownName
    with pytest.raises(UnknownName, match="unknown corruption 'rain'; valid corruptions: gaussian_noise, shot_noise"):
        cm.corruption_plan('tiny', 'fog,rain')
    with pytest.raises(ValueError, match='valid corruptions: gaussian_noise'):
        cm.corrupt(np.zeros((1, 32, 32, 3), np.uint8), 'rain', 1)


def test_plan_unreadable_severity(cm):
    with pytest.raises(ValueError, match=r"cannot read severities from 'x': give a list like 1,3,5"):
        cm.corruption_plan('tiny', severities='1,x')
    with pytest.raises(ValueError, match='severity must be one of'):
        cm.corruption_plan('tiny', severities='1,6')
