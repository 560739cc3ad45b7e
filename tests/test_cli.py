"""`m3d-zoo` commands: train, extract, evaluate (table + CMC PNG), list, export, push, and their input errors."""
import json
import math
import re
from dataclasses import fields

import pytest
import torch
from PIL import Image
from huggingface_hub import HfApi, hf_hub_download

import m3d_zoo
from m3d_zoo.cli import build_parser, main
from m3d_zoo.data import make_synthetic_gait
from m3d_zoo.engine import evaluate_dataset, load_embeddings, save_embeddings
from m3d_zoo.engine.recipes import TrainRecipe
from m3d_zoo.utils import default_num_workers

TRAIN = ['--dataset', 'folder', '--epochs', '1', '--batch-size', '4', '--num-instances', '2', '--num-frames', '4',
         '--img-size', '32', '16', '--workers', '0', '--no-progress', '--device', 'cpu', '--eval-interval', '1',
         '--eval-max-clips', '1', '--model-kwargs', 'temporal_strides=1,1,1,1']


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_engine.py
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def gait(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli') / 'gait'
    make_synthetic_gait(str(root), num_ids=8, num_train_ids=4, tracklets_per_id=3, length=8, size=(32, 16), seed=1)
    return str(root)


@pytest.fixture(scope='module')
def trained(gait, tmp_path_factory):
    out = tmp_path_factory.mktemp('cli') / 'run'
    assert main(['train', '--model', 'm3d_resnet18', '--root', gait, '--output', str(out)] + TRAIN) == 0
    return out


def test_train_writes_checkpoints_metrics_and_eval(trained):
    for name in ('last.safetensors', 'best.safetensors', 'eval.json', 'best_eval.json', 'metrics.jsonl',
                 'recipe.json'):
        assert (trained / name).is_file(), name
    events = [json.loads(line)['event'] for line in (trained / 'metrics.jsonl').read_text().splitlines()]
    assert events == ['config', 'epoch', 'eval', 'done']
    res = json.loads((trained / 'eval.json').read_text())
    # the run evaluated the folder's test split: 4 query tracklets (ids 5-8, camera 1), 8 gallery ones; the values
    # themselves are checked against `m3d-zoo extract` + `evaluate` in test_extract_and_evaluate
    assert res['num_queries'] == res['num_valid_queries'] == 4 and res['num_gallery'] == 8 and res['epoch'] == 1
    assert 0 <= res['mAP'] <= 1 and res['ap_mode'] == 'standard' and len(res['cmc']) == 20


def test_training_curves_of_the_run(trained, tmp_path):
    """The run's metrics.jsonl, as `m3d-zoo train` writes it, draws (tests/test_plot.py checks the picture)."""
    from m3d_zoo.engine.plot import save_training_curves
    with Image.open(save_training_curves(trained / 'metrics.jsonl', tmp_path / 'curves.png')) as im:
        assert im.format == 'PNG' and len(im.convert('RGB').getcolors(maxcolors=1 << 16)) > 3


def test_extract_and_evaluate(trained, gait, tmp_path, capsys):
    emb = tmp_path / 'emb.safetensors'
    assert main(['extract', '--model', str(trained / 'last.safetensors'), '--dataset', 'folder', '--root', gait,
                 '--output', str(emb), '--workers', '0', '--device', 'cpu', '--img-size', '32', '16',
                 '--max-clips', '1']) == 0
    err = capsys.readouterr().err  # a progress bar per split, by default
    assert re.search(r'query: clips embedded: 100%.*4/4', err) and re.search(r'gallery: clips embedded: 100%.*8/8', err)
    data = load_embeddings(emb)
    assert data['embeddings'].shape == (12, 512) and data['pids'].shape == data['camids'].shape == (12,)
    assert (data['split'] == 0).sum() == 4 and (data['split'] == 1).sum() == 8
    assert json.loads(data['metadata']['tracklets'])[0].endswith('c1_t001')

    png = tmp_path / 'cmc.png'
    results = tmp_path / 'res.json'
    capsys.readouterr()
    assert main(['evaluate', str(emb), '--cmc-png', str(png), '--results', str(results)]) == 0
    text = capsys.readouterr().out
    assert '| mAP (%) | Rank-1 (%) |' in text and 'non-interpolated AP' in text
    with Image.open(png) as im:  # tests/test_plot.py checks the pictures' contents
        assert im.format == 'PNG' and im.size[0] >= 400 and im.size[1] >= 300
    # the file's numbers are those of the run's own evaluation (same model, protocol and clips), and those printed
    res = json.loads(results.read_text())
    assert res['mAP'] == pytest.approx(json.loads((trained / 'eval.json').read_text())['mAP'], abs=1e-6)
    assert f'| emb.safetensors | {100 * res["mAP"]:.1f} | {100 * res["rank1"]:.1f} |' in text

    # plain tracklet folders, and the query/gallery given as two files
    q = tmp_path / 'q.safetensors'
    assert main(['extract', '--model', str(trained), '--tracklets', f'{gait}/query', '--output', str(q),
                 '--workers', '0', '--device', 'cpu', '--img-size', '32', '16', '--no-progress']) == 0
    assert 'clips embedded' not in capsys.readouterr().err
    qd = load_embeddings(q)
    assert qd['pids'].tolist() == [5, 6, 7, 8] and qd['camids'].tolist() == [1, 1, 1, 1]
    assert (qd['split'] == -1).all()
    g = tmp_path / 'g.safetensors'
    assert main(['extract', '--model', str(trained), '--tracklets', f'{gait}/gallery', '--output', str(g),
                 '--workers', '0', '--device', 'cpu', '--img-size', '32', '16']) == 0
    assert main(['evaluate', str(q), '--gallery', str(g), '--cmc-png', str(tmp_path / 'c2.png')]) == 0


def test_evaluation_shows_progress_only_when_asked(gait, capsys):
    """Library calls are quiet unless asked (the trainer asks, unless --no-progress)."""
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=0)
    dataset = m3d_zoo.create_dataset('folder', gait)
    kwargs = dict(num_frames=4, input_size=(32, 16), max_clips=1)
    quiet = evaluate_dataset(model, dataset, **kwargs)
    assert capsys.readouterr().err == ''
    shown = evaluate_dataset(model, dataset, progress=True, **kwargs)
    err = capsys.readouterr().err
    assert re.search(r'query: clips embedded: 100%.*4/4', err) and re.search(r'gallery: clips embedded: 100%.*8/8', err)
    assert shown['mAP'] == quiet['mAP']


def test_evaluate_same_camera(tmp_path, capsys):
    """Single-camera data is refused with the advice to pass --same-camera, and evaluated with it; a query tracklet
    the gallery also holds (the same folder) does not match itself."""
    feats = torch.tensor([[0., 0], [10, 0], [0, 0], [3, 0], [1, 0]])  # queries 1, 2; gallery: query 1 again, 1, 2
    folders = ['1/c0_q', '2/c0_q', '1/c0_q', '1/c0_g', '2/c0_g']
    emb = tmp_path / 'one_camera.safetensors'
    save_embeddings(emb, feats, torch.tensor([1, 2, 1, 1, 2]), torch.zeros(5, dtype=torch.int64),
                    torch.tensor([0, 0, 1, 1, 1]), {'tracklets': folders})
    argv = ['evaluate', str(emb), '--cmc-png', str(tmp_path / 'c.png'), '--results', str(tmp_path / 'r.json')]
    assert main(argv) == 2
    assert 'for data from a single camera, pass same_camera=True, or --same-camera' in capsys.readouterr().err
    assert main(argv + ['--same-camera']) == 0
    assert 'same-camera matches counted' in capsys.readouterr().out
    res = json.loads((tmp_path / 'r.json').read_text())
    # each query's nearest other tracklet is someone else, its match second (counting itself: q1 50% Rank-1)
    assert res['rank1'] == 0 and res['mAP'] == pytest.approx(0.5) and res['same_camera'] is True


# Each command's minimal arguments, the options left at None, and every other option's default: the flags and
# defaults users and scripts rely on. --workers fits the machine (tests/test_utils.py checks how).
WORKERS = default_num_workers()
OPTIONS = {
    'train': (['--dataset', 'd'], 'amp amp_dtype batch_size ce_weight clip_sampling dataset_kwargs decay_epochs '
              'decay_rate device dist_timeout epochs eval_interval eval_max_clips gallery_mode grad_clip head '
              'head_lr_mult hflip img_size label_smoothing lr max_steps model model_kwargs momentum num_frames '
              'noise_std num_instances opt pad pretrained_file push_to_hub re_prob resume root sampler seed split_id '
              'temporal_lr_mult time_budget triplet_margin triplet_weight val_ids val_split warmup_epochs '
              'warmup_lr_init weight_decay',
              {'dataset': 'd', 'eval_batch_size': 16, 'eval_test': False, 'force_unlock': False,
               'grad_checkpointing': False, 'no_progress': False, 'output': 'output/train', 'overwrite': False,
               'pretrained': False, 'recipe': 'modern', 'save_interval': 1, 'sync_bn': False, 'workers': WORKERS}),
    'extract': (['--model', 'm', '--dataset', 'd', '-o', 'o'], 'amp camera_names crop_cache dataset_kwargs device '
                'gallery_mode img_size max_clips model_kwargs num_frames pretrained_file root split_id tracklets '
                'tracks video',
                {'batch_size': 16, 'dataset': 'd', 'model': 'm', 'output': 'o', 'pretrained': False,
                 'splits': ['query', 'gallery'], 'workers': WORKERS, 'crop_mode': 'stretch', 'min_len': 8,
                 'max_len': 64, 'min_height': 0., 'min_conf': -math.inf, 'min_visibility': 0., 'seed': 0,
                 'no_progress': False}),
    'match': (['e', '-o', 'o'], 'max_gap relink_threshold',
              {'embeddings': 'e', 'output': 'o', 'threshold': 0.3, 'no_relink': False, 'video_out': False}),
    'evaluate': ([], 'cmc_png dataset dataset_kwargs device gallery gallery_mode img_size max_clips model '
                 'model_kwargs num_frames pretrained_file ranked_png results root split_id',
                 {'embeddings': [], 'ap_mode': 'standard', 'batch_size': 16, 'max_rank': 20, 'metric': 'euclidean',
                  'pretrained': False, 'rerank': False, 'workers': WORKERS, 'ranked_num': 10, 'ranked_k': 5, 'seed': 0,
                  'no_progress': False, 'same_camera': False}),
    'list': ([], '', {'filter': '', 'pretrained': False}),
    'export': (['--model', 'm', '-o', 'o'], 'model_kwargs num_frames pretrained_file',
               {'batch_size': 2, 'format': 'onnx', 'img_size': (256, 128), 'model': 'm', 'no_fuse': False,
                'opset': 18, 'output': 'o', 'pretrained': False, 'static_batch': False, 'verify': False, 'seed': 0}),
    'push': (['--repo-id', 'r'], 'checkpoint commit_message dataset model results revision',
             {'drop_classifier': False, 'private': False, 'repo_id': 'r'}),
}


@pytest.mark.parametrize('command', OPTIONS)
def test_each_command_keeps_its_options_and_defaults(command, capsys):
    argv, unset, defaults = OPTIONS[command]
    parsed = vars(build_parser().parse_args([command] + argv))
    assert parsed.pop('command') == command and parsed.pop('func').__name__ == f'cmd_{command}'
    parsed.pop('debug')
    overrides = parsed.pop('recipe_overrides', None)
    if command == 'train':  # every recipe field but the name, nesterov and input_size (--img-size) is a flag's dest
        assert set(overrides) | {'name', 'nesterov', 'input_size'} == {f.name for f in fields(TrainRecipe)}
    assert parsed == dict(dict.fromkeys(unset.split()), **defaults)
    with pytest.raises(SystemExit) as e:
        main([command, '--help'])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for dest in parsed:
        if dest not in ('embeddings', 'filter'):  # positional
            assert re.search(f'--{dest.replace("_", "-")}(?![\\w-])', text), dest
    with pytest.raises(SystemExit):
        main(['--help'])
    assert command in capsys.readouterr().out


def test_extract_uses_the_frame_size_and_clip_length_the_model_was_trained_with(trained, gait, tmp_path):
    """The run trained at 32x16 on 4-frame clips: extraction from its checkpoint does so without being told, and
    --img-size / --num-frames still override."""
    def extract(name, *flags):
        out = tmp_path / name
        assert main(['extract', '--model', str(trained / 'last.safetensors'), '--tracklets', f'{gait}/query',
                     '--output', str(out), '--workers', '0', '--device', 'cpu', *flags]) == 0
        return load_embeddings(out)
    default, told = extract('d.safetensors'), extract('t.safetensors', '--img-size', '32', '16', '--num-frames', '4')
    assert json.loads(default['metadata']['input_size']) == [32, 16]
    assert json.loads(default['metadata']['num_frames']) == 4
    assert torch.equal(default['embeddings'], told['embeddings'])
    bigger = extract('b.safetensors', '--img-size', '64', '32', '--num-frames', '8')
    assert json.loads(bigger['metadata']['input_size']) == [64, 32]
    assert not torch.allclose(bigger['embeddings'], default['embeddings'])


def test_train_help_shows_each_recipes_default(capsys, monkeypatch):
    """Every recipe override names each recipe's value, read from the recipes (a changed recipe shows)."""
    from m3d_zoo.engine.recipes import RECIPES
    monkeypatch.setitem(RECIPES, 'modern', RECIPES['modern'].replace(epochs=77))
    with pytest.raises(SystemExit):
        main(['train', '--help'])
    text = ' '.join(capsys.readouterr().out.split())  # argparse wraps the lines
    group = next(g for g in build_parser()._subparsers._group_actions[0].choices['train']._action_groups
                 if g.title == 'recipe overrides')
    helps = {action.option_strings[0]: action.help for action in group._group_actions}
    for flag, shown in (('--epochs', 'default: modern 77, paper 400'),
                        ('--warmup-epochs', 'default: modern 10, paper 0'),
                        ('--decay-epochs', 'default: modern 40 70, paper 300'),
                        ('--batch-size', 'default: modern 32, paper 24'),
                        ('--lr', 'default: modern 0.00035, paper 0.01'), ('--num-frames', 'default: 8'),
                        ('--img-size', 'default: 256 128'), ('--grad-clip', 'default: none')):
        assert helps[flag].endswith(shown) and shown in text, (flag, helps[flag])
    assert set(helps) == {'--img-size'} | {'--' + dest.replace('_', '-') for dest in
                                           build_parser().parse_args(['train', '--dataset', 'd']).recipe_overrides}
    assert all('default: ' in h for h in helps.values())


def test_list(capsys):
    assert main(['list', 'm3d_resnet*']) == 0
    assert sorted(capsys.readouterr().out.split()) == ['m3d_resnet101', 'm3d_resnet18', 'm3d_resnet34',
                                                       'm3d_resnet50']
    assert main(['list']) == 0
    out = capsys.readouterr().out
    assert 'two_stream_m3d' in out and 'recipes: modern, paper' in out


def test_export_writes_the_trained_embedding_model(trained, tmp_path):
    """`m3d-zoo export` of a training checkpoint: an ONNX graph of that model's embedding (classifier dropped), with
    the clip length, frame size and static batch asked for, computing what PyTorch computes."""
    import onnxruntime  # a test dependency (setup.cfg's test extra)
    ckpt = trained / 'best.safetensors'
    out = tmp_path / 'm.onnx'
    # trained on 4-frame clips with temporal strides 1: an 8-frame graph is valid, and shows --num-frames is used
    assert main(['export', '--model', str(ckpt), '--output', str(out), '--num-frames', '8', '--img-size', '32', '16',
                 '--batch-size', '1', '--static-batch']) == 0
    session = onnxruntime.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    inp = session.get_inputs()[0]
    assert inp.shape == [1, 3, 8, 32, 16]
    x = torch.randn(1, 3, 8, 32, 16, generator=torch.Generator().manual_seed(0))
    (got,) = session.run(None, {inp.name: x.numpy()})
    model = m3d_zoo.engine.model_from_checkpoint(ckpt).eval()
    assert model.num_classes == 4  # the checkpoint has a classifier; the export must not
    with torch.no_grad():
        emb = model.forward_head(model.forward_features(x), pre_logits=True)
    assert got.shape == (1, 512)
    torch.testing.assert_close(torch.from_numpy(got), emb, rtol=1e-4, atol=1e-4)


def test_push_to_hub_after_training(gait, tmp_path, hub_server, hub_repo_id):
    out = tmp_path / 'run'
    assert main(['train', '--model', 'c2d_resnet18', '--root', gait, '--output', str(out),
                 '--push-to-hub', hub_repo_id] + TRAIN[:-2]) == 0
    files = HfApi().list_repo_files(hub_repo_id)
    assert {'config.json', 'model.safetensors', 'README.md'} <= set(files)
    loaded = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True).eval()
    best = m3d_zoo.engine.model_from_checkpoint(out / 'best.safetensors').eval()
    x = torch.randn(1, 3, 4, 32, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), best(x))
    with open(hf_hub_download(hub_repo_id, 'README.md')) as f:
        card = f.read()
    assert 'Rank-1 (%)' in card and 'batch-hard triplet' in card and 'random initialisation' in card


def test_push_command(trained, hub_server, hub_repo_id):
    assert main(['push', '--checkpoint', str(trained / 'best.safetensors'), '--repo-id', hub_repo_id,
                 '--results', str(trained / 'best_eval.json'), '--drop-classifier']) == 0
    loaded = m3d_zoo.create_model(f'hf-hub:{hub_repo_id}', pretrained=True).eval()
    assert loaded.num_classes == 0
    # the checkpoint's weights, without the classifier: the checkpoint model's embedding
    best = m3d_zoo.engine.model_from_checkpoint(trained / 'best.safetensors').eval()
    x = torch.randn(1, 3, 4, 32, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), best.forward_head(best.forward_features(x), pre_logits=True))


@pytest.mark.parametrize('argv, message', [
    (['train', '--model', 'm3d_resnet18', '--root', '/nonexistent/data'] + TRAIN, 'folder not found: /nonexistent'),
    (['train', '--model', 'm3d_resnet18', '--recipe', 'fast', '--root', '.'] + TRAIN, "Unknown recipe 'fast'"),
    (['train', '--model', 'm3d_resnt18', '--root', '{gait}'] + TRAIN, "Unknown m3d_zoo model 'm3d_resnt18'"),
    (['train', '--model', 'm3d_resnet18', '--root', '{gait}'] + TRAIN + ['--batch-size', '12'],
     'needs P = 6 identities per batch, but gait has 4 training identities'),
    (['train', '--root', '{gait}'] + TRAIN, 'train needs --model NAME'),
    (['train', '--model', 'm3d_resnet18', '--resume', '/nonexistent/last.safetensors', '--root', '{gait}'] + TRAIN,
     'Checkpoint /nonexistent/last.safetensors does not exist'),
    (['evaluate'], 'evaluate needs an embeddings file'),
    (['extract', '--model', 'm3d_resnet18', '--dataset', 'mars', '--root', '/nonexistent', '-o', 'x.safetensors'],
     'MARS'),
])
def test_input_errors_are_one_clear_message(argv, message, gait, capsys):
    argv = [a.replace('{gait}', gait) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and 'Traceback' not in err, err
