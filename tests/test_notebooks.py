"Every parameterized notebook keeps its papermill `parameters` tag through nbdev-clean, and can run under papermill."
import copy, json
from pathlib import Path
import pytest
from nbdev.clean import clean_nb
from nbdev.config import get_config
from conftest import ROOT

NBS = sorted((ROOT / 'nbs').glob('*.ipynb'))

def tagged(nb): return [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]

def test_stage_notebooks_have_one_parameters_cell():
    from eprobust.pipeline import STAGES
    for nb_name, _ in STAGES.values():
        nb = json.loads((ROOT / 'nbs' / nb_name).read_text())
        assert len(tagged(nb)) == 1, f'{nb_name} must have exactly one cell tagged "parameters"'
        assert nb['metadata'].get('kernelspec', {}).get('language') == 'python', f'{nb_name}: papermill needs a kernelspec'

@pytest.mark.parametrize('path', NBS, ids=[p.name for p in NBS])
def test_parameters_tag_survives_nbdev_clean(path):
    nb = json.loads(path.read_text())
    before = tagged(nb)
    cfg = get_config(ROOT)
    assert list(cfg.allowed_cell_metadata_keys) == ['tags'], 'allowed_cell_metadata_keys must be the TOML list ["tags"]'
    cleaned = copy.deepcopy(nb)
    clean_nb(cleaned, allowed_cell_metadata_keys=cfg.allowed_cell_metadata_keys)
    assert [c['source'] for c in tagged(cleaned)] == [c['source'] for c in before]

def test_clean_without_the_setting_would_strip_the_tag():
    "The check above can fail: nbdev-clean with its defaults strips the tag."
    nb = json.loads((ROOT / 'nbs' / '03_train.ipynb').read_text())
    clean_nb(nb)
    assert not tagged(nb)
