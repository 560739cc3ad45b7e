""" From videos and track files to matched identities and pictures, through the command line.

Two cameras see the same three people (solid blocks of one colour each) under other track ids: their crops are
nearly identical across cameras, so even an untrained network's embeddings must pair them up.
"""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from m3d_zoo.cli import main
from m3d_zoo.engine import load_embeddings

from _video_fixtures import PEOPLE, PEOPLE_CAM2, write_tracks, write_video

pytest.importorskip('av')

MODEL = ['--model', 'c2d_resnet18', '--img-size', '32', '16', '--num-frames', '4', '--device', 'cpu']


@pytest.fixture(scope='module')
def cams(tmp_path_factory):
    d = tmp_path_factory.mktemp('cams')
    return [(write_video(d / 'left.mp4'), write_tracks(d / 'left.txt')),
            (write_video(d / 'right.mp4', people=PEOPLE_CAM2), write_tracks(d / 'right.txt', people=PEOPLE_CAM2))]


def _video_args(cams):
    return [a for v, t in cams for a in ('--video', str(v), '--tracks', str(t))]


@pytest.fixture(scope='module')
def embeddings(cams, tmp_path_factory):
    out = tmp_path_factory.mktemp('emb') / 'emb.safetensors'
    assert main(['extract', *MODEL, *_video_args(cams), '--min-len', '4', '--max-len', '16', '-o', str(out)]) == 0
    return out


def test_extract_writes_a_row_per_tracklet_with_its_camera_track_and_frames(embeddings):
    data = load_embeddings(embeddings)
    spans = sorted(zip(data['camids'].tolist(), data['track_ids'].tolist(), data['first_frames'].tolist(),
                       data['last_frames'].tolist()))
    # left: track 1 (24 frames) -> 2 pieces, 2 (35) -> 3, 3 (9) -> 1; right: 29, 29 and 21 frames -> 2 pieces each
    assert [s[:2] for s in spans] == [(0, 1)] * 2 + [(0, 2)] * 3 + [(0, 3)] + [(1, 11)] * 2 + [(1, 12)] * 2 + \
        [(1, 13)] * 2
    assert spans[0][2:] == (1, 12) and spans[1][2:] == (13, 24)
    assert data['thumbnails'].shape == (12, 128, 64, 3) and (data['pids'] == -1).all()
    cams = json.loads(data['metadata']['cameras'])
    assert [c['name'] for c in cams] == ['left', 'right'] and cams[0]['tracklets'] == 6
    np.testing.assert_allclose(data['thumbnails'][0].float().mean((0, 1)).numpy(), PEOPLE[1][0], atol=15)


def test_crop_cache_gives_the_same_embeddings_without_decoding(cams, embeddings, tmp_path, capsys):
    args = ['extract', *MODEL, *_video_args(cams), '--min-len', '4', '--max-len', '16', '--crop-cache',
            str(tmp_path / 'cache')]
    assert main(args + ['-o', str(tmp_path / 'a.safetensors')]) == 0
    assert 'from the cache' not in capsys.readouterr().out
    assert main(args + ['-o', str(tmp_path / 'b.safetensors')]) == 0
    assert capsys.readouterr().out.count('[crops from the cache]') == 2
    a, b = load_embeddings(tmp_path / 'a.safetensors'), load_embeddings(tmp_path / 'b.safetensors')
    assert np.array_equal(a['embeddings'].numpy(), b['embeddings'].numpy())
    assert np.array_equal(a['embeddings'].numpy(), load_embeddings(embeddings)['embeddings'].numpy())
    assert sorted(p.name for p in (tmp_path / 'cache').iterdir()) == ['left', 'right']


def test_match_pairs_each_person_across_cameras_and_rewrites_the_track_files(cams, embeddings, tmp_path, capsys):
    out = tmp_path / 'match'
    assert main(['match', str(embeddings), '-o', str(out), '--threshold', '2', '--video-out']) == 0
    with open(out / 'identities.csv') as f:
        table = list(csv.DictReader(f))
    gid = {(r['camera_name'], int(r['track_id'])): int(r['global_id']) for r in table}
    assert len(gid) == 6 and len(set(gid.values())) == 3
    colour = {('left', t): p[0] for t, p in PEOPLE.items()} | {('right', t): p[0] for t, p in PEOPLE_CAM2.items()}
    for a in gid:
        for b in gid:
            assert (gid[a] == gid[b]) == (colour[a] == colour[b]), (a, b)
    summary = json.loads((out / 'identities.json').read_text())
    assert summary['num_identities'] == 3 and len(summary['matches']) == 3 and summary['settings']['threshold'] == 2
    lines = (out / 'tracks' / 'right.txt').read_text().split()
    assert len(lines) == sum(p[2] - p[1] + 1 for p in PEOPLE_CAM2.values())
    assert {int(line.split(',')[1]) for line in lines} == {gid[('right', t)] for t in PEOPLE_CAM2}
    sheet = Image.open(out / 'identities.png')
    assert sheet.height == 3 * (128 + 14 + 6)  # one row per identity
    assert (out / 'left_identities.mp4').stat().st_size > 0 and (out / 'right_identities.mp4').stat().st_size > 0
    assert '6 tracks -> 3 identities' in capsys.readouterr().out


def test_a_strict_threshold_keeps_people_apart(embeddings, tmp_path):
    assert main(['match', str(embeddings), '-o', str(tmp_path), '--threshold', '0', '--no-relink']) == 0
    assert json.loads((tmp_path / 'identities.json').read_text())['num_identities'] == 6


def test_ranked_lists_from_a_dataset(tmp_path, capsys):
    from m3d_zoo.data import make_synthetic_gait
    root = make_synthetic_gait(tmp_path / 'gait', num_ids=8, tracklets_per_id=2, length=8, size=(32, 16))['root']
    emb = tmp_path / 'e.safetensors'
    assert main(['extract', *MODEL, '--dataset', 'folder', '--root', str(root), '-o', str(emb), '--workers', '0']) == 0
    assert main(['evaluate', str(emb), '--ranked-png', str(tmp_path / 'ranked'), '--ranked-num', '3', '--ranked-k',
                 '2', '--cmc-png', str(tmp_path / 'cmc.png')]) == 0
    pngs = sorted((tmp_path / 'ranked').glob('rank_*.png'))
    assert len(pngs) == 3 and 'ranked lists: 3 pictures' in capsys.readouterr().out
    img = Image.open(pngs[0])
    assert img.height == 3 * (128 + 8 + 14) + 2 * 6  # the query and its 2 gallery tracklets, one strip each


@pytest.mark.parametrize('args, message', [
    (['--video', 'v.mp4'], 'each --video needs its --tracks file'),
    (['--tracklets', 'x', '--tracks', 't.txt'], '--tracks goes with --video'),
    (['--video', 'a.mp4', '--tracks', 'a.txt', '--camera-names', 'a', 'b'], 'one name per --video'),
])
def test_video_options_errors(args, message, tmp_path, capsys):
    assert main(['extract', *MODEL, *args, '-o', str(tmp_path / 'e.safetensors')]) == 2
    assert message in capsys.readouterr().err


def test_bad_video_inputs_are_clear_errors(cams, tmp_path, capsys):
    short = write_video(tmp_path / 'short.mp4', num_frames=10)
    text = tmp_path / 'text.mp4'
    text.write_text('not a video')
    bad_line = tmp_path / 'bad.txt'
    bad_line.write_text('1,1,5,5,10,10\n2,1,5,5,10\n')
    out = ['-o', str(tmp_path / 'e.safetensors')]
    for video, tracks, message in [(short, cams[0][1], 'up to frame 40'), (text, cams[0][1], 'as a video'),
                                   (cams[0][0], bad_line, 'bad.txt, line 2')]:
        assert main(['extract', *MODEL, '--video', str(video), '--tracks', str(tracks), *out]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / 'e.safetensors').exists()  # nothing half-written


def test_match_refuses_embeddings_not_from_videos_and_a_file_as_folder(tmp_path, capsys):
    from m3d_zoo.engine import save_embeddings
    import torch
    emb = tmp_path / 'plain.safetensors'
    save_embeddings(emb, torch.zeros(2, 4), torch.tensor([1, 2]), torch.tensor([0, 1]))
    assert main(['match', str(emb), '-o', str(tmp_path / 'm')]) == 2
    assert 'not extracted from videos' in capsys.readouterr().err
    (tmp_path / 'file').write_text('x')
    assert main(['match', str(emb), '-o', str(tmp_path / 'file')]) == 2
    assert 'is a file; give a folder' in capsys.readouterr().err
