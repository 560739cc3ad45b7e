""" Pictures: ranked lists, contact sheets and identity videos, checked by size, layout and colour. """
import numpy as np
import pytest

from m3d_zoo.pictures import CORRECT, UNKNOWN, WRONG, contact_sheet, identity_colour, ranked_list_image, strip


def _frames(colour, n=10, hw=(40, 20)):
    return [np.full(hw + (3,), colour, dtype=np.uint8)] * n


def test_strip_layout():
    s = strip(_frames((10, 20, 30)), num=4, size=(32, 16), border=CORRECT, label='x')
    # 4 frames of 16 px, 2 px between them, a 4 px border each side; a 14 px label band above
    assert s.size == (4 * 16 + 3 * 2 + 8, 32 + 8 + 14)
    a = np.asarray(s)
    assert tuple(a[14, 0]) == CORRECT and tuple(a[14 + 4 + 5, 4 + 5]) == (10, 20, 30)


def test_ranked_list_rows_and_borders():
    q = _frames((200, 200, 0))
    gallery = [_frames((0, 0, 200)), _frames((0, 200, 200)), _frames((50, 50, 50), n=3)]
    img = ranked_list_image(q, gallery, correct=[True, False, None], num_frames=5, size=(32, 16))
    row_h = 32 + 8 + 14
    assert img.size == (5 * 16 + 4 * 2 + 8, 4 * row_h + 3 * 6)
    a = np.asarray(img)
    for rank, colour in enumerate([CORRECT, WRONG, UNKNOWN], 1):
        y = rank * (row_h + 6) + 14  # the top edge of the border of this rank's strip
        assert tuple(a[y, 1]) == colour
    # the 3-frame tracklet shows its 3 frames, the rest of its row is blank
    y3 = 3 * (row_h + 6) + 14 + 4 + 10
    assert tuple(a[y3, 4 + 2 * 18 + 5]) == (50, 50, 50) and tuple(a[y3, 4 + 4 * 18 + 5]) == (255, 255, 255)
    with pytest.raises(ValueError, match='3 gallery tracklets but 2 labels'):
        ranked_list_image(q, gallery, gallery_labels=['a', 'b'])


def test_contact_sheet_one_row_per_identity():
    rows = [('id 1', [('cam0', _frames((255, 0, 0))[0]), ('cam1', _frames((0, 255, 0))[0])]),
            ('id 2', [('cam1', _frames((0, 0, 255))[0])])]
    sheet = contact_sheet(rows, size=(32, 16))
    assert sheet.size == (70 + 2 * (16 + 6), 2 * (32 + 14 + 6))
    a = np.asarray(sheet)
    assert tuple(a[14 + 5, 70 + 5]) == (255, 0, 0) and tuple(a[14 + 5, 70 + 22 + 5]) == (0, 255, 0)
    assert tuple(a[52 + 14 + 5, 70 + 5]) == (0, 0, 255) and tuple(a[52 + 14 + 5, 70 + 22 + 5]) == (255, 255, 255)
    with pytest.raises(ValueError, match='at least one identity'):
        contact_sheet([])


def test_identity_colours_differ_for_neighbours():
    colours = [identity_colour(i) for i in range(1, 30)]
    assert len(set(colours)) == len(colours)
    assert min(np.abs(np.subtract(a, b)).sum() for a, b in zip(colours, colours[1:])) > 100


def test_identity_video_draws_each_box_in_its_identity_colour(tmp_path):
    pytest.importorskip('av')
    from _video_fixtures import box, write_video
    from m3d_zoo.data.video import iter_frames
    from m3d_zoo.pictures import draw_identities_video
    video = write_video(tmp_path / 'v.mp4', num_frames=12)
    boxes = {f: [(7, box(1, f))] for f in range(1, 13)}
    n = draw_identities_video(str(video), str(tmp_path / 'out.mp4'), boxes)
    assert n == 12 and not list(tmp_path.glob('.out.mp4.tmp-*'))
    frames = dict(iter_frames(str(tmp_path / 'out.mp4')))
    assert len(frames) == 12
    x, y, w, h = box(1, 5)
    edge = np.asarray(frames[5])[y + h // 2, x + 1].astype(int)  # the middle of the box's 3 px left edge
    assert np.abs(edge - identity_colour(7)).max() < 40
