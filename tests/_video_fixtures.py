""" Small videos with known boxes, written by the tests themselves (PyAV encodes them).

Each person is a solid block of its own colour on a grey background, moving right by one pixel a frame; the track
file holds their exact boxes, so a crop's colour says whether the right pixels were cut.
"""
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

WIDTH, HEIGHT = 160, 120
BACKGROUND = (90, 90, 90)
# track id -> (colour, first frame, last frame, left at the first frame, top, width, height)
PEOPLE: Dict[int, Tuple[Tuple[int, int, int], int, int, int, int, int, int]] = {
    1: ((230, 30, 30), 1, 24, 5, 20, 20, 60),
    2: ((30, 200, 30), 6, 40, 40, 30, 24, 70),
    3: ((40, 60, 230), 12, 20, 90, 10, 16, 40),
}


# the same three people seen by a second camera, at other places and times, under other track ids
PEOPLE_CAM2: Dict[int, Tuple[Tuple[int, int, int], int, int, int, int, int, int]] = {
    11: ((40, 60, 230), 2, 30, 10, 30, 18, 50),
    12: ((230, 30, 30), 10, 38, 70, 15, 22, 64),
    13: ((30, 200, 30), 20, 40, 120, 20, 20, 66),
}


def box(track_id: int, frame: int, people=PEOPLE) -> Tuple[int, int, int, int]:
    _, first, _, left, top, w, h = people[track_id]
    return left + (frame - first), top, w, h


def frame_array(frame: int, people=PEOPLE) -> np.ndarray:
    img = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    for tid, (colour, first, last, *_rest) in people.items():
        if first <= frame <= last:
            x, y, w, h = box(tid, frame, people)
            img[y:y + h, x:x + w] = colour
    return img


def write_video(path: Path, num_frames: int = 40, fps: int = 10, people=PEOPLE) -> Path:
    import av
    with av.open(str(path), mode='w') as out:
        stream = out.add_stream('mpeg4', rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, 'yuv420p'
        stream.bit_rate = 4_000_000  # near-lossless: solid colours stay solid
        for f in range(1, num_frames + 1):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_array(f, people), format='rgb24')):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def track_lines(people=PEOPLE) -> List[str]:
    lines = []
    for tid, (_, first, last, *_rest) in people.items():
        for f in range(first, last + 1):
            x, y, w, h = box(tid, f, people)
            lines.append(f'{f},{tid},{x},{y},{w},{h},1,-1,-1,-1')
    return sorted(lines, key=lambda s: int(s.split(',')[0]))


def write_tracks(path: Path, lines=None, people=PEOPLE) -> Path:
    path.write_text('\n'.join(track_lines(people) if lines is None else lines) + '\n')
    return path
