""" Real pedestrians in real video: two MOT15 sequences (TUD-Campus, TUD-Stadtmitte) with their ground-truth boxes.

The data's licence (CC BY-NC-SA 3.0) keeps it out of the repository: it is read from `../shared/data/mot15` beside
the checkout (or `$M3D_ZOO_MOT15`), and these tests skip where it is absent. Each sequence is one camera in which
nobody leaves and comes back, so the re-identification check splits every person's track in time: the earlier half
is the query (camera 0), the later half the gallery (camera 1).
"""
import os
from pathlib import Path

import numpy as np
import pytest

from m3d_zoo.data.tracks import TrackletBoxes, read_tracks, split_tracks
from m3d_zoo.data.video import check_tracks_fit_video, probe_video, stream_tracklets

MOT15 = Path(os.environ.get('M3D_ZOO_MOT15', Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'mot15'))
SEQUENCES = {'TUD-Campus': (71, 8, 359), 'TUD-Stadtmitte': (179, 10, 1156)}  # frames, identities, boxes

pytestmark = [
    pytest.mark.skipif(not MOT15.is_dir(), reason=f'MOT15 sequences not found at {MOT15} (licence keeps them out of '
                                                  f'the repository; set M3D_ZOO_MOT15 to their folder)'),
    pytest.mark.filterwarnings('ignore:.*randomly initialised'),
]
pytest.importorskip('av')


def _paths(seq):
    return str(MOT15 / seq / f'{seq}.mp4'), str(MOT15 / seq / 'gt' / 'gt.txt')


def _halves(pieces):
    """Each track's earlier half (camera 0) and later half (camera 1)."""
    out = []
    for p in pieces:
        h = len(p) // 2
        out += [TrackletBoxes(0, p.track_id, p.frames[:h], p.boxes[:h]),
                TrackletBoxes(1, p.track_id, p.frames[h:], p.boxes[h:])]
    return out


@pytest.mark.parametrize('seq', sorted(SEQUENCES))
def test_decode_and_crop_real_tracks(seq):
    video, gt = _paths(seq)
    frames, ids, boxes = SEQUENCES[seq]
    info = probe_video(video)
    tracks = read_tracks(gt)
    assert (info.num_frames, info.width, info.height) == (frames, 640, 480)
    assert len(tracks) == boxes and len(np.unique(tracks.track_id)) == ids
    check_tracks_fit_video(tracks, info)
    pieces, stats = split_tracks(tracks, frame_size=(info.width, info.height), min_len=1, max_len=10 ** 6)
    assert len(pieces) == ids and stats.kept_boxes <= boxes
    n = 0
    for t in stream_tracklets(video, pieces, size=(128, 64)):
        assert t.crops.shape == (len(t.frames), 128, 64, 3)
        # image content: a person cut from inside the frame is never one flat colour (nor black padding)
        assert (t.crops.reshape(len(t.frames), -1, 3).std(1) > 8).all(), t.track_id
        n += len(t.frames)
    assert n == stats.kept_boxes


def test_extract_and_evaluate_a_temporal_split():
    import torch
    import m3d_zoo
    from m3d_zoo.data import VideoTransform
    from m3d_zoo.data.video import CropClipDataset
    from m3d_zoo.engine import extract_embeddings
    from m3d_zoo.eval import evaluate_embeddings
    video, gt = _paths('TUD-Campus')
    info = probe_video(video)
    pieces, _ = split_tracks(read_tracks(gt), frame_size=(info.width, info.height), min_len=8, max_len=10 ** 6)
    tracklets = list(stream_tracklets(video, _halves(pieces), size=(64, 32)))
    torch.manual_seed(0)
    model = m3d_zoo.create_model('c2d_resnet18', num_frames=4).eval()
    ds = CropClipDataset(tracklets, num_frames=4, transform=VideoTransform((64, 32)))
    emb = extract_embeddings(model, ds, batch_size=8)
    cams = np.array([t.camera for t in tracklets])
    pids = np.array([t.track_id for t in tracklets])
    q, g = cams == 0, cams == 1
    res = evaluate_embeddings(emb[q], emb[g], pids[q], pids[g], cams[q], cams[g])
    assert res['num_queries'] == res['num_valid_queries'] == 8
    # 8 people, one true match each: chance mAP is the mean of 1/rank over uniform ranks, H_8 / 8 = 0.34. Even an
    # untrained network's features keep the clothes' colours, so the halves of one person match above chance; crops
    # cut from the wrong place or frames would not
    chance = sum(1 / r for r in range(1, 9)) / 8
    assert res['mAP'] > chance + 0.1 and np.isfinite(res['cmc']).all()
