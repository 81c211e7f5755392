"Data that is damaged, incomplete or changed fails naming the file and the fix, and never comes back stale from the cache."
import os
import numpy as np
import pytest
from PIL import Image
from eprobust.data import get_dataset_info, load_cifar, write_official, write_png_tree

CLASSES = 'airplane automobile bird cat deer dog frog horse ship truck'.split()

def small(per_class: int, seed: int):
    "Tiny uint8 images (N,3,32,32) with labels covering all 10 classes."
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(10 * per_class) % 10)
    return rng.integers(0, 256, (len(y), 3, 32, 32), dtype=np.uint8), y

@pytest.fixture
def png(tmp_path):
    "A PNG tree of 20 train and 10 test images; returns (root, x_train, y_train)."
    (xtr, ytr), (xte, yte) = small(2, 0), small(1, 1)
    write_png_tree(tmp_path / 'png', CLASSES, xtr, ytr, xte, yte)
    return tmp_path / 'png', xtr, ytr

@pytest.fixture
def official(tmp_path):
    "Official CIFAR-10 batch files of 20 train and 10 test images; returns (root, x_train, y_train)."
    (xtr, ytr), (xte, yte) = small(2, 0), small(1, 1)
    write_official(tmp_path / 'off', 'cifar10', xtr, ytr, xte, yte)
    return tmp_path / 'off', xtr, ytr

def load(root, cache=None, split='train'):
    "(x, y) as numpy arrays."
    x, y = load_cifar(root, 'cifar10', split, cache_dir=cache, progress=False)
    return x.numpy(), y.numpy()

def rewrite(path, data: bytes):
    "Replace a file's bytes and move its mtime a second on, as a re-extracted or edited file would be."
    st = os.stat(path)
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

def test_changed_png_is_decoded_again(png, tmp_path):
    root, xtr, ytr = png
    x, _ = load(root, tmp_path / 'cache')
    assert (x == xtr).all()
    f = root / 'train' / CLASSES[ytr[0]] / f'0_{CLASSES[ytr[0]]}.png'
    im = Image.fromarray((255 - xtr[0]).transpose(1, 2, 0))
    im.save(tmp_path / 'new.png')
    rewrite(f, (tmp_path / 'new.png').read_bytes())
    x, _ = load(root, tmp_path / 'cache')
    assert (x[0] == 255 - xtr[0]).all()

def test_changed_batch_file_is_decoded_again(official, tmp_path):
    root, xtr, ytr = official
    load(root, tmp_path / 'cache')
    new = tmp_path / 'new'
    write_official(new, 'cifar10', 255 - xtr, ytr, xtr[:10], ytr[:10])
    for f in ('data_batch_1', 'data_batch_2'):   # same sizes, new content
        rewrite(root / 'cifar-10-batches-py' / f, (new / 'cifar-10-batches-py' / f).read_bytes())
    x, _ = load(root, tmp_path / 'cache')
    assert (x[:8] == 255 - xtr[:8]).all() and (x[8:] == xtr[8:]).all()

def test_missing_class_folder(png, tmp_path):
    "The reported case: a class folder missing gave 9 classes, and its return reused the stale cache."
    root, xtr, ytr = png
    (root / 'train' / 'dog').rename(tmp_path / 'dog')
    with pytest.raises(ValueError, match=r"no PNGs in train/dog/ .*restore the missing folder"):
        load(root, tmp_path / 'cache')
    (tmp_path / 'dog').rename(root / 'train' / 'dog')
    x, y = load(root, tmp_path / 'cache')
    assert (x == xtr).all() and (y == ytr).all()

def test_train_batches_missing_classes(official, tmp_path):
    root, xtr, ytr = official
    write_official(root, 'cifar10', xtr, ytr % 7, xtr[:10], ytr[:10])
    with pytest.raises(ValueError, match=r"train split .* has no images of class\(es\) 7, 8, 9 \(cifar10 has 10\)"):
        load(root, tmp_path / 'cache')
    x, y = load(root, split='test')   # a test split need not hold every class
    assert len(y) == 10

def test_truncated_png_named(png):
    root, _, ytr = png
    f = root / 'train' / CLASSES[ytr[3]] / f'3_{CLASSES[ytr[3]]}.png'
    f.write_bytes(f.read_bytes()[:60])
    with pytest.raises(ValueError, match=rf"cannot read {f} .*damaged or truncated; re-extract"):
        load(root)

def test_truncated_batch_file_named(official):
    root, _, _ = official
    f = root / 'cifar-10-batches-py' / 'data_batch_2'
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(ValueError, match=rf"cannot read {f} .*delete it and re-extract"):
        load(root)

def test_appledouble_files_skipped(png):
    root, xtr, _ = png
    for c in CLASSES:   # what macOS leaves beside each file copied to a foreign disk
        for f in list((root / 'train' / c).iterdir()):
            (f.parent / f'._{f.name}').write_bytes(b'\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X')
    (root / 'train' / 'cat' / '.DS_Store').write_bytes(b'\x00')
    x, _ = load(root)
    assert (x == xtr).all()

def test_misnamed_png_named(png):
    root, xtr, _ = png
    f = root / 'train' / 'cat' / 'kitten.png'
    Image.fromarray(xtr[0].transpose(1, 2, 0)).save(f)
    with pytest.raises(ValueError, match=rf"{f}: PNGs in cat/ must be named <index>_cat.png"):
        load(root)

def test_concurrent_decoders_do_not_clash(png, tmp_path, monkeypatch):
    "A second process decodes and writes the same cache file while the first is between writing and renaming."
    root, xtr, _ = png
    savez, other = np.savez, {}
    def savez_then_other(f, **kw):
        savez(f, **kw)
        if not other:
            other['started'] = True
            other['x'] = load(root, tmp_path / 'cache')[0]
    monkeypatch.setattr(np, 'savez', savez_then_other)
    x, _ = load(root, tmp_path / 'cache')
    assert (x == xtr).all() and (other['x'] == xtr).all()
    assert [f.suffix for f in (tmp_path / 'cache' / 'data').iterdir()] == ['.npz']   # one cache file, no temporaries left

def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; valid datasets: cifar10, cifar100"):
        get_dataset_info('mnist')

@pytest.mark.slow
def test_real_tree_loads_from_cache(data_root, tmp_path):
    "Every real PNG is named <index>_<class>.png, and a cached load stays well under a second."
    import time
    x, y = load(data_root, tmp_path / 'cache', split='test')
    t = time.perf_counter()
    x2, y2 = load(data_root, tmp_path / 'cache', split='test')
    assert time.perf_counter() - t < 1 and (x2 == x).all() and (y2 == y).all() and len(y) == 10000
