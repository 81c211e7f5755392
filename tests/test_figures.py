"""The figures stage (nbs/06_figures.ipynb -> eprobust.plots): it fails without the train stage's tables, skips (and says so)
what later stages have not made yet, draws a model no one added to its tables, draws what one registry of figures lists, and
shows its figures in the stage notebook and in figures/<preset>/README.md. Fixtures are copies of the committed cpu results."""
import json, os, re, shutil, subprocess, sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
import matplotlib
matplotlib.use('Agg')
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pytest
from conftest import ROOT
from eprobust import plots
from eprobust.core import PRESETS, get_paths, read_table
from eprobust.train import MODELS, model_key, stage_configs

RESULTS = ROOT / 'results'       # committed, real (cpu preset): copied, never written
TRAIN = ('clean_accuracy.csv', 'train_metrics.csv', 'free_phase_accuracy.csv')
LATER = ('attacks.csv', 'adv_examples.pt', 'adv_examples.json', 'corruptions.csv', 'corruption_grid_cpu.npz', 'trajectory.csv', 'relaxation.csv')
HASHES = dict(unit='0a1b2c3d', weights='0123', data='4567')     # the string columns result tables are about to carry

def results_copy(out: Path, files=TRAIN) -> Path:
    "`out` with a results/ folder holding copies of the committed cpu `files`, with the hash columns tables will carry."
    cfgs = stage_configs('cpu')
    res = out / 'results'
    res.mkdir(parents=True, exist_ok=True)
    for f in files:
        if not f.endswith('.csv'):
            shutil.copy(RESULTS / f, res / f)
            continue
        t = read_table(RESULTS / f)
        # stamped with today's config hashes: these tests are about drawing, not about whether the cpu configs changed since
        t['config_hash'] = [model_key(cfgs[m], s) for m, s in zip(t['model'], t['seed'])]
        t.assign(**HASHES).to_csv(res / f, index=False)
    return out

def run_stage(out: Path) -> tuple[list[Path], str]:
    "The figures stage on the cpu preset of `out`: the files written and what it printed."
    with redirect_stdout(StringIO()) as log:
        written = plots.figures_stage('cpu', out)
    plt.close('all')
    return written, log.getvalue()

@pytest.fixture(scope='module')
def train_only(tmp_path_factory):
    "The stage on a preset the train stage alone has run for."
    return run_stage(results_copy(tmp_path_factory.mktemp('train_only')))

@pytest.fixture(scope='module')
def every_stage(tmp_path_factory):
    "The stage on a preset every stage has run for."
    return run_stage(results_copy(tmp_path_factory.mktemp('every_stage'), TRAIN + LATER))

def readme(written) -> str: return written[-1].read_text()

def pngs(written) -> list[Path]: return [f for f in written if f.suffix == '.png']

# 1. the stage fails without the train stage's tables, and skips the later stages' figures with a note

def test_no_results_fails_naming_the_table_and_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'clean_accuracy\.csv.*--stages train'):
        plots.figures_stage('cpu', tmp_path)
    results_copy(tmp_path, ['clean_accuracy.csv'])
    with pytest.raises(FileNotFoundError, match=r'train_metrics\.csv.*--stages train'):
        plots.figures_stage('cpu', tmp_path)
    with pytest.raises(ValueError, match=r"no rows of preset 'tiny'.*--preset tiny --stages train"):
        plots.figures_stage('tiny', tmp_path)

def test_reproduce_figures_fails_without_results(tmp_path):
    "`eprobust reproduce --stages figures` with no results: a non-zero exit naming the table and the stage (it printed 'nothing to draw yet' and exited 0)."
    cli = Path(sys.executable).parent / 'eprobust'
    r = subprocess.run([str(cli), 'reproduce', '--preset', 'cpu', '--stages', 'figures', '--out-dir', str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-2000:]
    assert 'clean_accuracy.csv' in out and '--stages train' in out, out[-2000:]

def test_missing_later_stages_skip_their_figures_with_a_note(train_only):
    written, log = train_only
    assert [f.name for f in written] == ['training_curves.png', 'clean_accuracy.png', 'fig1b_free_phase_accuracy.png',
                                         'table_clean_accuracy.csv', 'table_clean_accuracy.md', 'README.md']
    assert 'fig3_robustness' in log and '`eprobust reproduce --preset cpu --stages attacks`' in log, log
    assert 'corruptions_severity' in log and '`eprobust reproduce --preset cpu --stages corruptions`' in log, log
    text = readme(written)
    assert '## Not drawn yet' in text and '- `fig3_robustness`: no results of preset' in text and '--stages corruptions' in text

def test_every_stage_every_figure(every_stage):
    "With every stage's results (and extra hash columns) nothing is skipped, and the files are those of the committed figures/cpu/."
    written, log = every_stage
    assert 'skipped' not in log, log
    assert {f.name for f in written} == {f.name for f in (ROOT / 'figures' / 'cpu').iterdir()}
    assert '## Not drawn yet' not in readme(written) and '## Robust accuracy' in readme(written)

# 2. a model that is in no palette

def student_tables() -> dict:
    "The committed cpu tables with the ViT renamed 'student': a model no preset, label or palette knows."
    return {f: read_table(RESULTS / f).replace({'model': {'vit': 'student'}}) for f in ('train_metrics.csv', 'clean_accuracy.csv',
                                                                                         'attacks.csv', 'corruptions.csv')}

def labels(fig) -> set[str]:
    "Every tick label and legend entry of a figure."
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return {x.get_text() for ax in fig.axes for x in ax.get_xticklabels()} | {x.get_text() for l in legends for x in l.get_texts()}

def test_plots_draw_a_model_no_one_added():
    t = student_tables()
    curves = plots.plot_training_curves(t['train_metrics.csv'])
    for fig in (curves, plots.plot_clean_accuracy(t['clean_accuracy.csv']), plots.plot_robustness(t['attacks.csv']),
                plots.plot_corruption_severity(t['corruptions.csv']), plots.plot_corruption_heatmap(t['corruptions.csv'])):
        assert 'student' in labels(fig)
    colors = {mcolors.to_hex(l.get_color()) for l in curves.axes[0].lines}
    assert mcolors.to_hex(plots.model_color('student')) in colors                  # in its own colour
    plt.close('all')

def test_model_colours_come_from_the_registry_and_are_fixed():
    names = set(MODELS) | {m for p in PRESETS.values() for m in p.train}
    assert names <= set(plots.known_models())
    assert len({plots.model_color(m) for m in names}) == len(names)             # each its own colour
    assert plots.model_label('student') == 'student' and plots.model_label('adv_cnn_e0.5') == 'AdvCNN ε0.5'
    assert plots.palette(['bp_cnn', 'student'])['student'] == plots.palette(['student'])['student']

@pytest.mark.slow
def test_unknown_model_colour_is_the_same_in_every_process():
    "Python's str hash is salted per process: the colour must not depend on it."
    code = "from eprobust.plots import model_color; print(list(model_color('student')))"
    other = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                           env={**os.environ, 'PYTHONHASHSEED': '12345'}).stdout
    assert json.loads(other) == pytest.approx(list(plots.model_color('student')))

# 3. one registry entry per figure

def test_unknown_figure_fails_listing_the_valid_ones():
    with pytest.raises(KeyError, match="unknown figure 'fig3'; valid figures: .*fig3_robustness"):
        plots.get_figure('fig3')
    with pytest.raises(KeyError, match="unknown result source 'attack'"):
        plots.register_figure('x', print, ['attack'], 'note')
    assert 'x' not in plots.FIGURES

def test_the_stage_draws_what_the_registry_lists(tmp_path, monkeypatch):
    def hist(t):
        fig, ax = plt.subplots()
        ax.hist(t['clean_accuracy']['clean_acc'])
        return fig
    monkeypatch.setitem(plots.FIGURES, 'accuracy_hist', plots.FigureSpec('accuracy_hist', hist, ('clean_accuracy',), 'acc_hist',
                                                                         'a histogram of clean accuracy'))
    monkeypatch.setitem(plots.FIGURES, 'attack_hist', plots.FigureSpec('attack_hist', hist, ('attacks',), 'attack_hist', 'n/a'))
    written, log = run_stage(results_copy(tmp_path))
    assert (tmp_path / 'figures' / 'cpu' / 'acc_hist.png') in written
    assert '![a histogram of clean accuracy](acc_hist.png)' in readme(written)
    assert 'attack_hist' in log and not (tmp_path / 'figures' / 'cpu' / 'attack_hist.png').exists()

# 4. figures where users look: README.md and the stage notebook

def test_readme_embeds_every_figure(train_only, every_stage):
    for written, _ in (train_only, every_stage):
        text = readme(written)
        for f in pngs(written):
            assert re.search(rf'^!\[[^\]\n]+\]\({re.escape(f.name)}\)$', text, re.M), f.name   # a path relative to README.md

def test_stage_notebook_draws_the_last_preset_and_shows_each_figure(tmp_path):
    "papermill with no `preset`: the notebook draws `default_preset()` (here the recorded 'cpu'), says so, and displays every PNG."
    from eprobust.core import record_preset
    from eprobust.pipeline import run_stage as run_notebook
    paths = get_paths(results_copy(tmp_path))
    record_preset('cpu', paths)
    nb = json.loads(run_notebook('figures', dict(out_dir=str(paths.root)), paths, progress=False).read_text())
    params, = [c for c in nb['cells'] if 'parameters' in c['metadata'].get('tags', [])]
    assert ''.join(params['source']).startswith('preset = None')
    outputs = [o for c in nb['cells'] if c['cell_type'] == 'code' for o in c['outputs']]
    text = ''.join(''.join(o.get('text', '')) for o in outputs)
    assert "preset 'cpu'" in text and '--stages attacks' in text, text
    shown = sum('image/png' in o.get('data', {}) for o in outputs)
    assert shown == len(list((paths.figures / 'cpu').glob('*.png'))) == 3
