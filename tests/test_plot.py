"""Charts with matplotlib: CMC curves overlaid (`m3d-zoo evaluate a b --cmc-png`), a run's training curves, legends
that are never cut, and a clear error where matplotlib (the `plot` extra) is missing."""
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from m3d_zoo.cli import main
from m3d_zoo.engine import save_embeddings
from m3d_zoo.engine.plot import MatplotlibMissingError, save_cmc_png, save_training_curves

# matplotlib's default colour cycle: C0 .. C5
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
LONG = 'runs/m3d_resnet50_modern_recipe_240_epochs_lr_3.5e-4_batch_64_seed_0_on_my_cameras_with_a_long_name/best'


def _pixels(png) -> np.ndarray:
    with Image.open(png) as im:
        assert im.format == 'PNG'
        return np.asarray(im.convert('RGB')).astype(int)


def _assert_nothing_cut(img: np.ndarray):
    """Every edge of the picture is background: no text or line runs off it (a cut legend would)."""
    edges = np.concatenate([img[:3].reshape(-1, 3), img[-3:].reshape(-1, 3), img[:, :3].reshape(-1, 3),
                            img[:, -3:].reshape(-1, 3)])
    assert (edges == 255).all()


def _drawn(img: np.ndarray, colour, min_pixels: int = 30) -> bool:
    """Whether a line of `colour` is drawn (antialiased edges aside)."""
    return int((np.abs(img - np.array(colour)).max(-1) <= 12).sum()) >= min_pixels


def _embeddings(path, seed: int, noise: float):
    """An embeddings file: 5 people, each with a query (camera 0) and 2 gallery tracklets (camera 1); `noise` sets
    how far a tracklet's embedding strays from its person's."""
    g = torch.Generator().manual_seed(seed)
    people = torch.randn(5, 16, generator=g)
    pids = torch.tensor(list(range(5)) * 3)
    feats = people[pids] + noise * torch.randn(15, 16, generator=g)
    save_embeddings(path, feats, pids, torch.tensor([0] * 5 + [1] * 10), torch.tensor([0] * 5 + [1] * 10))
    return path


def test_cmc_curves_of_several_files_overlaid_with_a_legend_that_is_not_cut(tmp_path, capsys):
    good = _embeddings(tmp_path / 'trained.safetensors', 0, 0.1)
    bad = _embeddings(tmp_path / f'{"x" * 150}.safetensors', 0, 3.0)  # a long name: a long legend entry
    png, results = tmp_path / 'cmp.png', tmp_path / 'r.json'
    assert main(['evaluate', str(good), str(bad), '--cmc-png', str(png), '--results', str(results)]) == 0
    out = capsys.readouterr().out
    res = json.loads(results.read_text())
    assert list(res) == ['trained.safetensors', f'{"x" * 150}.safetensors']
    assert res['trained.safetensors']['mAP'] == 1.0 and res[f'{"x" * 150}.safetensors']['mAP'] < 1
    for name, r in res.items():  # one table row per file
        assert f'| {name} | {100 * r["mAP"]:.1f} | {100 * r["rank1"]:.1f} |' in out
    assert out.count('non-interpolated AP') == 1 and f'CMC curves: {png}' in out
    img = _pixels(png)
    assert _drawn(img, COLOURS[0]) and _drawn(img, COLOURS[1])
    _assert_nothing_cut(img)


@pytest.mark.parametrize('argv, message', [
    (['--gallery', '{a}'], '--gallery goes with one embeddings file'),
    (['--ranked-png', '{tmp}/ranked'], '--ranked-png goes with one embeddings file'),
])
def test_several_files_refuse_single_file_options(argv, message, tmp_path, capsys):
    a, b = _embeddings(tmp_path / 'a.safetensors', 0, 0.1), _embeddings(tmp_path / 'b.safetensors', 1, 0.1)
    argv = [x.replace('{a}', str(a)).replace('{tmp}', str(tmp_path)) for x in argv]
    assert main(['evaluate', str(a), str(b)] + argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'ranked').exists() and not (tmp_path / 'a_cmc.png').exists()


def test_same_file_names_are_labelled_by_path(tmp_path, capsys):
    (tmp_path / 'run1').mkdir()
    (tmp_path / 'run2').mkdir()
    a = _embeddings(tmp_path / 'run1' / 'emb.safetensors', 0, 0.1)
    b = _embeddings(tmp_path / 'run2' / 'emb.safetensors', 1, 3.0)
    assert main(['evaluate', str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f'| {a} |' in out and f'| {b} |' in out
    assert (tmp_path / 'run1' / 'emb_cmc.png').is_file()  # by default next to the first file


def test_training_curves_from_metrics_jsonl(tmp_path):
    """Loss, accuracy, and the validation and test mAP / Rank-1 against the step; the evaluation of the best weights
    after the run and a line cut by a kill are left out."""
    records = [{'event': 'config', 'model': 'm3d_resnet18'}]
    for epoch in range(1, 7):
        step = 25 * epoch
        records.append({'event': 'epoch', 'epoch': epoch, 'step': step, 'loss': 4 / epoch, 'acc': 1 - 1 / (epoch + 1)})
        if epoch % 2 == 0:
            records.append({'event': 'eval', 'split': 'val', 'epoch': epoch, 'step': step, 'mAP': 0.1 * epoch,
                            'rank1': 0.12 * epoch, 'weights': 'last'})
    records.append({'event': 'eval', 'split': 'test', 'epoch': 6, 'step': 150, 'mAP': 0.5, 'rank1': 0.6,
                    'weights': 'last'})
    records.append({'event': 'eval', 'split': 'test', 'epoch': 4, 'step': 100, 'mAP': 0.4, 'rank1': 0.5,
                    'weights': 'best'})
    metrics = tmp_path / 'run' / 'metrics.jsonl'
    metrics.parent.mkdir()
    metrics.write_text(''.join(json.dumps(r) + '\n' for r in records) + '{"event": "epo')
    png = save_training_curves(metrics, tmp_path / 'curves.png')
    img = _pixels(png)
    for colour in COLOURS[:4]:  # loss, accuracy, validation mAP and Rank-1
        assert _drawn(img, colour), colour
    assert _drawn(img, COLOURS[4], min_pixels=10)  # the test mAP: one point
    _assert_nothing_cut(img)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match='metrics.jsonl that m3d-zoo train writes'):
        save_training_curves(tmp_path / 'metrics.jsonl', tmp_path / 'c.png')
    (tmp_path / 'metrics.jsonl').write_text('{"event": "config"}\n')
    with pytest.raises(ValueError, match='holds no epoch yet'):
        save_training_curves(tmp_path / 'metrics.jsonl', tmp_path / 'c.png')
    with pytest.raises(ValueError, match='no CMC curve'):
        save_cmc_png(tmp_path / 'c.png', {})
    assert not (tmp_path / 'c.png').exists()


def test_without_matplotlib(monkeypatch, tmp_path, capsys):
    """The charts need the `plot` extra: a clear error where asked for, and `evaluate` without --cmc-png still
    prints its results."""
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import matplotlib now raises ImportError
    emb = _embeddings(tmp_path / 'e.safetensors', 0, 0.1)
    with pytest.raises(MatplotlibMissingError, match=r'pip install "m3d_zoo\[plot\]"'):
        save_cmc_png(tmp_path / 'c.png', {'a': [0.5, 1.0]})
    with pytest.raises(ImportError, match=r'pip install "m3d_zoo\[plot\]"'):  # what the trainer catches
        save_training_curves(tmp_path / 'metrics.jsonl', tmp_path / 'c.png')
    assert main(['evaluate', str(emb), '--cmc-png', str(tmp_path / 'c.png'), '--results', str(tmp_path / 'r.json')]) \
        == 2
    err = capsys.readouterr().err
    assert '--cmc-png needs matplotlib, which is not installed: pip install "m3d_zoo[plot]"' in err, err
    assert not (tmp_path / 'r.json').exists()  # refused before the work
    assert main(['evaluate', str(emb)]) == 0
    out = capsys.readouterr().out
    assert '| e.safetensors | 100.0 | 100.0 |' in out and 'no CMC curve: The CMC curve needs matplotlib' in out
    assert not list(tmp_path.glob('*.png'))
