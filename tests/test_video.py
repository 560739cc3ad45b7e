""" Video + track file -> tracklets: track-file parsing, box filters, streaming crops, the crop cache. """
import numpy as np
import pytest

from m3d_zoo.data.tracks import TrackFileError, read_tracks, split_tracks
from m3d_zoo.data.video import (
    CropClipDataset, VideoError, check_tracks_fit_video, crop_box, iter_frames, probe_video, read_crop_cache,
    stream_tracklets, write_crop_cache)

from _video_fixtures import HEIGHT, PEOPLE, WIDTH, write_tracks as write_track_file, write_video

pytest.importorskip('av')


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp('video')
    return write_video(d / 'cam1.mp4'), write_track_file(d / 'cam1.txt')


def _colour(crop: np.ndarray) -> np.ndarray:
    h, w = crop.shape[:2]
    return crop[h // 4:3 * h // 4, w // 4:3 * w // 4].reshape(-1, 3).mean(0)


def test_read_tracks_sorts_by_track_and_frame(clip):
    tracks = read_tracks(str(clip[1]))
    assert len(tracks) == sum(p[2] - p[1] + 1 for p in PEOPLE.values())
    assert list(np.unique(tracks.track_id)) == [1, 2, 3] and tracks.last_frame == 40
    first = tracks.track_id == 2
    assert tracks.frame[first][0] == 6 and np.all(np.diff(tracks.frame[first]) == 1)
    np.testing.assert_array_equal(tracks.boxes[first][0], [40, 30, 24, 70])
    assert np.all(tracks.conf == 1) and np.all(tracks.visibility == 1)


@pytest.mark.parametrize('line, match', [
    ('1,2,3', 'line 2: .* 3 fields'),
    ('1,2,a,4,5,6,1,-1,-1,-1', 'line 2: .*not a number'),
    ('0,2,3,4,5,6,1,-1,-1,-1', 'line 2: frame 0'),
    ('1,-1,3,4,5,6,1,-1,-1,-1', 'line 2: .*untracked detection'),
    ('1,2,3,4,0,6,1,-1,-1,-1', 'line 2: .*must be positive'),
    ('1,2,3,4,nan,6,1,-1,-1,-1', 'line 2: .*NaN'),
    ('1,7,3,4,5,6', 'lines 1 and 2: track 7 has two boxes in frame 1'),
])
def test_malformed_track_lines_name_the_line(tmp_path, line, match):
    path = write_track_file(tmp_path / 't.txt', ['1,7,1,1,5,5,1,-1,-1,-1', line])
    with pytest.raises(TrackFileError, match=match):
        read_tracks(str(path))


def test_empty_and_missing_track_files(tmp_path):
    with pytest.raises(TrackFileError, match='not found'):
        read_tracks(str(tmp_path / 'nope.txt'))
    (tmp_path / 'empty.txt').write_text('\n# nothing\n')
    with pytest.raises(TrackFileError, match='holds no boxes'):
        read_tracks(str(tmp_path / 'empty.txt'))


def test_six_field_and_mot17_visibility_lines(tmp_path):
    path = write_track_file(tmp_path / 't.txt', ['1,1,0,0,10,20', '2,1,0,0,10,20,1,1,0.25'])
    tracks = read_tracks(str(path))
    np.testing.assert_allclose(tracks.visibility, [1, .25])
    _, stats = split_tracks(tracks, min_len=1, max_len=5, min_visibility=0.5)
    assert stats.kept_boxes == 1 and stats.skipped == {'visibility below min_visibility': 1}


def test_split_tracks_filters_and_cuts_into_near_equal_pieces(clip):
    tracks = read_tracks(str(clip[1]))
    pieces, stats = split_tracks(tracks, camera=3, frame_size=(WIDTH, HEIGHT), min_len=10, max_len=16)
    # track 1: 24 frames -> 12 + 12; track 2: 35 -> 12 + 12 + 11 (never a 3-frame leftover); track 3: 9 < 10, dropped
    assert [(p.track_id, len(p)) for p in pieces] == [(1, 12), (1, 12), (2, 12), (2, 11), (2, 12)]
    assert {p.camera for p in pieces} == {3} and stats.short_tracks == 1 and stats.tracklets == len(pieces) == 5
    assert all(np.all(np.diff(p.frames) > 0) for p in pieces)
    assert sum(len(p) for p in pieces if p.track_id == 2) == 35
    _, stats = split_tracks(tracks, min_len=1, max_len=64, min_height=50)
    assert stats.skipped == {'lower than min_height': 9}  # track 3 is 40 px high, the others 60 and 70
    _, stats = split_tracks(tracks, min_len=1, min_conf=2.)
    assert stats.skipped == {'confidence below min_conf': len(tracks)} and stats.tracklets == 0


def test_boxes_outside_the_frame_are_counted_and_a_foreign_track_file_refused(tmp_path, clip):
    lines = ['1,1,10,10,20,40', '2,1,500,10,20,40', '3,1,-30,10,20,40', '4,1,150,10,20,40']
    tracks = read_tracks(str(write_track_file(tmp_path / 't.txt', lines)))
    pieces, stats = split_tracks(tracks, frame_size=(WIDTH, HEIGHT), min_len=1)
    assert stats.skipped == {'outside the frame': 2} and len(pieces[0]) == 2
    info = probe_video(str(clip[0]))
    with pytest.raises(TrackFileError, match='outside the 160x120 frames'):
        check_tracks_fit_video(read_tracks(str(write_track_file(tmp_path / 'u.txt', lines[1:3]))), info)
    with pytest.raises(TrackFileError, match='up to frame 99 .*40 frames'):
        check_tracks_fit_video(read_tracks(str(write_track_file(tmp_path / 'v.txt', ['99,1,1,1,5,5']))), info)


def test_probe_and_decode(clip, tmp_path):
    info = probe_video(str(clip[0]))
    assert (info.num_frames, info.width, info.height, info.fps) == (40, WIDTH, HEIGHT, 10)
    assert [n for n, _ in iter_frames(str(clip[0]))] == list(range(1, 41))
    bad = tmp_path / 'bad.mp4'
    bad.write_text('not a video')
    with pytest.raises(VideoError, match='Cannot open .*bad.mp4 as a video'):
        probe_video(str(bad))
    with pytest.raises(VideoError, match='not found'):
        probe_video(str(tmp_path / 'missing.mp4'))


def test_crops_hold_the_right_person_and_tracklets_stream_out_when_complete(clip):
    tracks = read_tracks(str(clip[1]))
    pieces, _ = split_tracks(tracks, frame_size=(WIDTH, HEIGHT), min_len=1, max_len=100)
    out = list(stream_tracklets(str(clip[0]), pieces, size=(64, 32)))
    # yielded in the order their last frames are decoded: track 3 (frame 20), 1 (24), 2 (40)
    assert [t.track_id for t in out] == [3, 1, 2]
    for t in out:
        assert t.crops.shape == (len(t.frames), 64, 32, 3) and t.crops.dtype == np.uint8
        for crop in t.crops[::5]:
            np.testing.assert_allclose(_colour(crop), PEOPLE[t.track_id][0], atol=12)
        assert t.as_tracklet().num_frames == len(t.frames) and t.as_tracklet().camid == 0


def test_a_video_shorter_than_its_track_file_is_an_error(tmp_path, clip):
    short = write_video(tmp_path / 'short.mp4', num_frames=10)
    pieces, _ = split_tracks(read_tracks(str(clip[1])), min_len=1)
    with pytest.raises(VideoError, match='ends at frame 10.*up to frame 40'):
        list(stream_tracklets(str(short), pieces))


def test_crop_box_clips_to_the_frame_and_pads_keeping_the_aspect():
    from PIL import Image
    frame = Image.new('RGB', (100, 100), (255, 255, 255))
    crop = crop_box(frame, (-50, -50, 100, 100), (64, 32))  # only the top-left quarter is inside: all white
    assert crop.shape == (64, 32, 3) and crop.min() == 255
    padded = crop_box(frame, (0, 0, 50, 50), (64, 32), mode='pad')  # square box in a 2:1 crop: black above/below
    assert padded[:16].max() == 0 and padded[-16:].max() == 0 and padded[24:40].min() == 255
    with pytest.raises(ValueError, match='outside'):
        crop_box(frame, (200, 200, 10, 10))
    with pytest.raises(ValueError, match='crop mode'):
        crop_box(frame, (0, 0, 10, 10), mode='zoom')


def test_crop_cache_round_trip_and_invalidation(tmp_path, clip):
    pieces, _ = split_tracks(read_tracks(str(clip[1])), min_len=1)
    key = {'video': 'cam1.mp4', 'size': [64, 32]}
    written = list(write_crop_cache(str(tmp_path / 'cache'), key, stream_tracklets(str(clip[0]), pieces, (64, 32))))
    cached = read_crop_cache(str(tmp_path / 'cache'), key)
    assert [c.name for c in cached] == [w.name for w in written]
    for c, w in zip(cached, written):
        assert np.array_equal(c.crops, w.crops) and np.array_equal(c.frames, w.frames)  # lossless
    assert read_crop_cache(str(tmp_path / 'cache'), dict(key, size=[128, 64])) is None
    from m3d_zoo.engine.extract import find_tracklet_folders
    folders = find_tracklet_folders([str(tmp_path / 'cache')])  # the cache is plain tracklet folders
    assert sorted((t.pid, t.camid, t.num_frames) for t in folders) == sorted((w.track_id, 0, len(w.frames))
                                                                             for w in written)
    # a cache cut short (no manifest) is not used
    gen = write_crop_cache(str(tmp_path / 'cut'), key, stream_tracklets(str(clip[0]), pieces, (64, 32)))
    next(gen)
    gen.close()
    assert read_crop_cache(str(tmp_path / 'cut'), key) is None


def test_crop_clip_dataset_gives_the_eval_clips(clip):
    from m3d_zoo.data import VideoTransform
    pieces, _ = split_tracks(read_tracks(str(clip[1])), min_len=1)
    ts = list(stream_tracklets(str(clip[0]), pieces, (32, 16)))
    ds = CropClipDataset(ts, num_frames=8, transform=VideoTransform((32, 16), mean=(0,) * 3, std=(1,) * 3))
    assert len(ds) == sum(max(1, len(t.frames) // 8) for t in ts)
    x, ti = ds[0]
    assert x.shape == (3, 8, 32, 16) and ti == 0
    np.testing.assert_allclose(x[:, 0, 16, 8].numpy() * 255, PEOPLE[ts[0].track_id][0], atol=12)
