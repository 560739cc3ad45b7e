""" Pictures of results: ranked lists, contact sheets of matched identities, videos with global identities.

    ranked_list_image(query, gallery, ...)    a query tracklet as a strip of frames, its top-k gallery strips below,
                                              bordered green (same person) or red (another), grey where unknown
    save_ranked_lists(out_dir, ...)           those pictures for evaluated embeddings, ranked as the metrics rank
    contact_sheet(rows)                       one row per global identity, a crop from each of its tracks
    draw_identities_video(video, ...)         the video with each box drawn and labelled with its global identity

Frames are RGB `PIL.Image`s or uint8 (H, W, 3) arrays; every picture is a `PIL.Image` to save as PNG.
"""
import colorsys
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['ranked_list_image', 'save_ranked_lists', 'contact_sheet', 'draw_identities_video', 'strip', 'save_png',
           'identity_colour', 'CORRECT', 'WRONG', 'UNKNOWN']

Frame = Union[Image.Image, np.ndarray]

CORRECT, WRONG, UNKNOWN = (0, 170, 0), (210, 0, 0), (150, 150, 150)
_BORDER = 4
_GAP = 6
_LABEL_H = 14


def _image(frame: Frame) -> Image.Image:
    return frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))


def _spread(frames: Sequence[Frame], n: int) -> List[Frame]:
    """ n frames evenly spread over the sequence (all of them if it is shorter). """
    if len(frames) <= n:
        return list(frames)
    return [frames[int(i)] for i in np.linspace(0, len(frames) - 1, n).round()]


def strip(frames: Sequence[Frame], num: int = 6, size: Tuple[int, int] = (128, 64),
          border: Optional[Tuple[int, int, int]] = None, label: str = '') -> Image.Image:
    """ `num` frames of a tracklet side by side at size (H, W), in a coloured border, with a label above. """
    h, w = size
    shown = [_image(f).convert('RGB').resize((w, h), Image.Resampling.BILINEAR) for f in _spread(frames, num)]
    width = len(shown) * w + (len(shown) - 1) * 2 + 2 * _BORDER
    img = Image.new('RGB', (width, h + 2 * _BORDER + _LABEL_H), 'white')
    draw = ImageDraw.Draw(img)
    if border is not None:
        draw.rectangle([0, _LABEL_H, width - 1, _LABEL_H + h + 2 * _BORDER - 1], fill=border)
    for i, f in enumerate(shown):
        img.paste(f, (_BORDER + i * (w + 2), _LABEL_H + _BORDER))
    draw.text((2, 1), label, fill='black')
    return img


def _stack(rows: Sequence[Image.Image], gap: int = _GAP) -> Image.Image:
    width = max(r.width for r in rows)
    out = Image.new('RGB', (width, sum(r.height for r in rows) + gap * (len(rows) - 1)), 'white')
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + gap
    return out


def ranked_list_image(
        query: Sequence[Frame],
        gallery: Sequence[Sequence[Frame]],
        query_label: str = 'query',
        gallery_labels: Optional[Sequence[str]] = None,
        correct: Optional[Sequence[Optional[bool]]] = None,
        num_frames: int = 6,
        size: Tuple[int, int] = (128, 64),
) -> Image.Image:
    """ The query tracklet as a strip of frames, and its ranked gallery tracklets below it, best first.

    Args:
        query: The query's frames.
        gallery: The top-k gallery tracklets' frames, in rank order.
        query_label: Text above the query strip.
        gallery_labels: Text above each gallery strip (default: its rank).
        correct: Per gallery tracklet: True (same person: green border), False (red), None (unknown: grey).
        num_frames: Frames shown per tracklet.
        size: (H, W) of each frame.
    """
    labels = gallery_labels or [f'rank {i + 1}' for i in range(len(gallery))]
    correct = correct if correct is not None else [None] * len(gallery)
    if not len(labels) == len(correct) == len(gallery):
        raise ValueError(f'{len(gallery)} gallery tracklets but {len(labels)} labels and {len(correct)} flags.')
    rows = [strip(query, num_frames, size, border=(40, 40, 40), label=query_label)]
    colour = {True: CORRECT, False: WRONG, None: UNKNOWN}
    rows += [strip(g, num_frames, size, border=colour[c], label=lab) for g, lab, c in zip(gallery, labels, correct)]
    return _stack(rows)


def contact_sheet(rows: Sequence[Tuple[str, Sequence[Tuple[str, Frame]]]], size: Tuple[int, int] = (128, 64),
                  max_per_row: int = 12) -> Image.Image:
    """ One row per identity: its label, then (caption, crop) pairs, e.g. one crop from each of its tracks.

    Args:
        rows: (identity label, [(caption, crop), ...]) per identity.
        size: (H, W) of each crop.
        max_per_row: Crops shown per identity at most (the first ones).
    """
    if not rows:
        raise ValueError('a contact sheet needs at least one identity.')
    h, w = size
    label_w = 70
    cells = max(min(len(items), max_per_row) for _, items in rows)
    cell_w = w + _GAP
    row_h = h + _LABEL_H + _GAP
    sheet = Image.new('RGB', (label_w + max(cells, 1) * cell_w, len(rows) * row_h), 'white')
    draw = ImageDraw.Draw(sheet)
    for r, (label, items) in enumerate(rows):
        y = r * row_h
        draw.text((4, y + _LABEL_H + h // 2 - 6), label, fill='black')
        for c, (caption, crop) in enumerate(items[:max_per_row]):
            x = label_w + c * cell_w
            draw.text((x, y + 1), caption, fill='black')
            sheet.paste(_image(crop).convert('RGB').resize((w, h), Image.Resampling.BILINEAR), (x, y + _LABEL_H))
    return sheet


def identity_colour(identity: int) -> Tuple[int, int, int]:
    """ A bright colour per identity, far apart for consecutive ids (golden-ratio hues). """
    r, g, b = colorsys.hsv_to_rgb((identity * 0.618034) % 1., 0.85, 1.)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_identities_video(video: str, output: str, boxes: Dict[int, List[Tuple[int, Sequence[float]]]],
                          fps: Optional[float] = None) -> int:
    """ Write `video` again with each box drawn and labelled with its global identity.

    Args:
        video: The input video.
        output: The video to write (.mp4, H.264 where FFmpeg has it, else MPEG-4).
        boxes: frame number (1-based) -> [(global identity, (left, top, width, height)), ...].
        fps: Output frame rate (default: the input's).

    Returns:
        The number of frames written.
    """
    import av
    from m3d_zoo._io import atomic_path
    from m3d_zoo.data.video import probe_video
    info = probe_video(video)
    with atomic_path(output) as tmp, av.open(str(tmp), mode='w') as out:
        return _encode(out, video, info, boxes, fps)


def _encode(out, video: str, info, boxes, fps) -> int:
    import av
    from m3d_zoo.data.video import iter_frames
    codec = 'libx264' if 'libx264' in av.codecs_available else 'mpeg4'
    stream = out.add_stream(codec, rate=round(fps or info.fps or 25))
    stream.width, stream.height = info.width - info.width % 2, info.height - info.height % 2  # yuv420p: even sizes
    stream.pix_fmt = 'yuv420p'
    n = 0
    for frame_no, frame in iter_frames(video):
        _draw_boxes(frame, boxes.get(frame_no, ()))
        frame = frame.crop((0, 0, stream.width, stream.height))
        for packet in stream.encode(av.VideoFrame.from_image(frame)):
            out.mux(packet)
        n += 1
    for packet in stream.encode():  # flush the encoder
        out.mux(packet)
    return n


def _draw_boxes(frame: Image.Image, boxes) -> None:
    draw = ImageDraw.Draw(frame)
    for identity, (x, y, bw, bh) in boxes:
        colour = identity_colour(identity)
        draw.rectangle([x, y, x + bw, y + bh], outline=colour, width=3)
        draw.rectangle([x, y - _LABEL_H, x + 8 * len(str(identity)) + 6, y], fill=colour)
        draw.text((x + 3, y - _LABEL_H + 1), str(identity), fill='black')


def save_png(image: Image.Image, path) -> str:
    """ Save a picture as PNG atomically (a crash leaves no half-written file). """
    from m3d_zoo._io import atomic_path
    with atomic_path(path) as tmp:
        image.save(tmp, format='PNG')
    return str(path)


def save_ranked_lists(
        out_dir,
        q_feats, g_feats, q_pids, g_pids, q_camids, g_camids,
        q_frames: Callable[[int], Sequence[Frame]],
        g_frames: Callable[[int], Sequence[Frame]],
        metric: str = 'euclidean',
        num_queries: int = 10,
        top_k: int = 5,
        q_names: Optional[Sequence[str]] = None,
) -> List[str]:
    """ One ranked-list PNG per query, for `num_queries` queries spread evenly over the query set.

    The gallery is ranked as the evaluation ranks it: gallery tracklets of the query's person seen by the query's
    camera are left out, and so are junk tracklets (id 0 where the set has distractors at -1, MARS's convention).
    Borders are green for the query's person, red for another (a distractor too), grey where the query's id is
    unknown (-1).

    Args:
        out_dir: Folder for `rank_<query index>_id<pid>.png`.
        q_feats, g_feats, q_pids, g_pids, q_camids, g_camids: As for `m3d_zoo.eval.evaluate_embeddings`.
        q_frames, g_frames: Row index -> that tracklet's frames.
        metric: The evaluation's distance.
        num_queries: How many queries to draw.
        top_k: Gallery tracklets per query.
        q_names: Per query row, a name for its label (e.g. its folder).

    Returns:
        The files written.
    """
    import torch
    from pathlib import Path
    from m3d_zoo.eval import FeatureDistance
    q_pids, g_pids, q_camids, g_camids = (np.asarray(a) for a in (q_pids, g_pids, q_camids, g_camids))
    dist = FeatureDistance(torch.as_tensor(q_feats).float(), torch.as_tensor(g_feats).float(), metric)
    has_distractors = (g_pids == -1).any()
    out = []
    for qi in np.unique(np.linspace(0, len(q_pids) - 1, min(num_queries, len(q_pids))).round().astype(int)):
        d = dist[[int(qi)]][0].cpu().numpy()
        keep = ~((g_pids == q_pids[qi]) & (g_camids == q_camids[qi]))
        if has_distractors:
            keep &= g_pids != 0
        ranked = np.flatnonzero(keep)[np.argsort(d[keep], kind='stable')][:top_k]
        known = q_pids[qi] >= 0
        correct = [bool(g_pids[j] == q_pids[qi]) if known else None for j in ranked]
        labels = [f'{r + 1}: id {g_pids[j]} cam {g_camids[j]}  d={d[j]:.3f}' for r, j in enumerate(ranked)]
        qname = q_names[qi] if q_names is not None else f'query {qi}'
        img = ranked_list_image(q_frames(int(qi)), [g_frames(int(j)) for j in ranked],
                                query_label=f'{qname}: id {q_pids[qi]} cam {q_camids[qi]}', gallery_labels=labels,
                                correct=correct)
        out.append(save_png(img, Path(out_dir) / f'rank_{qi:05d}_id{q_pids[qi]}.png'))
    return out
