""" Who is who across cameras: tracks matched into global identities from their embeddings.

    from m3d_zoo.engine import match_tracks
    result = match_tracks(embeddings, cameras, track_ids, first_frames, last_frames, threshold=0.35)
    result.global_ids     # one global identity per input row's track

The input rows are tracklets (several may come from one track: the same camera and track id); each track's
embedding is the mean of its tracklets' (L2-normalised). Distances are cosine distances (1 - cos, 0..2).

1. Re-link within a camera: a tracker that loses a person and finds them again starts a new track. A track that
   ends before another starts (at most `max_gap` frames earlier) may be its continuation; the pairs are chosen by an
   optimal assignment (`scipy.optimize.linear_sum_assignment`) among pairs closer than `relink_threshold`, and
   chained.
2. Across cameras, in the order given: the identities found so far are matched one to one with the next camera's
   (re-linked) tracks by an optimal assignment; a pair farther apart than `threshold` is no match, and the track
   becomes a new identity. An identity is the mean of its tracks' embeddings.

One person is never in two tracks of one camera at overlapping times: re-linking joins only tracks that do not
overlap, and each identity takes at most one (re-linked) track from each camera.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['MatchResult', 'match_tracks', 'cosine_distance', 'match_embeddings_file', 'write_matches']

_NO_MATCH = 1e6  # a cost above every allowed pair, for the forbidden ones


@dataclass
class MatchResult:
    """ The matching of tracks, one entry per track (camera, track id), in (camera, track id) order.

    Attributes:
        cameras, track_ids, first_frames, last_frames: int64 (M,), the tracks.
        global_ids: int64 (M,), the global identity of each track, 1-based, numbered in order of first appearance.
        row_global_ids: int64 (N,), the global identity of each input row (tracklet).
        links: (camera, earlier track, later track, distance) of every within-camera re-link.
        matches: (global id, camera, track, distance) of every cross-camera match.
    """
    cameras: np.ndarray
    track_ids: np.ndarray
    first_frames: np.ndarray
    last_frames: np.ndarray
    global_ids: np.ndarray
    row_global_ids: np.ndarray
    links: List[Tuple[int, int, int, float]]
    matches: List[Tuple[int, int, int, float]]

    @property
    def num_identities(self) -> int:
        return len(np.unique(self.global_ids))

    def table(self) -> List[Dict[str, int]]:
        """ One dict per track: camera, track_id, global_id, first_frame, last_frame. """
        return [{'camera': int(c), 'track_id': int(t), 'global_id': int(g), 'first_frame': int(f),
                 'last_frame': int(l)} for c, t, g, f, l in zip(
            self.cameras, self.track_ids, self.global_ids, self.first_frames, self.last_frames)]


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ 1 - cos between the rows of a (M, D) and b (N, D): (M, N), in 0..2. """
    return np.clip(1. - _normalise(a) @ _normalise(b).T, 0., 2.)


def _assign(cost: np.ndarray, threshold: float) -> List[Tuple[int, int, float]]:
    """ The optimal one-to-one pairs (i, j, cost) among those with cost <= threshold. """
    from scipy.optimize import linear_sum_assignment
    if cost.size == 0:
        return []
    allowed = cost <= threshold
    # pairs above the threshold cost more than any set of allowed pairs, so they are only taken where nothing
    # allowed competes, and then dropped
    rows, cols = linear_sum_assignment(np.where(allowed, cost, _NO_MATCH))
    return [(int(i), int(j), float(cost[i, j])) for i, j in zip(rows, cols) if allowed[i, j]]


def _tracks(cameras, track_ids, first_frames, last_frames, embeddings):
    keys = sorted(set(zip(cameras.tolist(), track_ids.tolist())))
    index = {k: i for i, k in enumerate(keys)}
    row_track = np.array([index[k] for k in zip(cameras.tolist(), track_ids.tolist())], dtype=np.int64)
    m = len(keys)
    emb = np.zeros((m, embeddings.shape[1]))
    np.add.at(emb, row_track, _normalise(embeddings.astype(np.float64)))
    first = np.full(m, np.iinfo(np.int64).max)
    last = np.full(m, np.iinfo(np.int64).min)
    np.minimum.at(first, row_track, first_frames)
    np.maximum.at(last, row_track, last_frames)
    cam = np.array([k[0] for k in keys], dtype=np.int64)
    tid = np.array([k[1] for k in keys], dtype=np.int64)
    return cam, tid, first, last, _normalise(emb), row_track


def _relink(idx: np.ndarray, emb, first, last, threshold: float, max_gap: Optional[int]):
    """ Chains of one camera's tracks (indices into the track arrays) joined by an optimal assignment. """
    cost = cosine_distance(emb[idx], emb[idx])
    gap = first[idx][None, :] - last[idx][:, None]  # earlier track i ends before later track j starts
    ok = gap > 0
    if max_gap is not None:
        ok &= gap <= max_gap
    pairs = _assign(np.where(ok, cost, np.inf), threshold)
    nxt = {i: j for i, j, _ in pairs}
    has_prev = {j for _, j, _ in pairs}
    chains = []
    for start in range(len(idx)):
        if start in has_prev:
            continue
        chain = [start]
        while chain[-1] in nxt:
            chain.append(nxt[chain[-1]])
        chains.append([int(idx[i]) for i in chain])
    links = [(int(idx[i]), int(idx[j]), d) for i, j, d in pairs]
    return chains, links


def match_tracks(
        embeddings: np.ndarray,
        cameras: Sequence[int],
        track_ids: Sequence[int],
        first_frames: Sequence[int],
        last_frames: Sequence[int],
        threshold: float = 0.3,
        relink: bool = True,
        relink_threshold: Optional[float] = None,
        max_gap: Optional[int] = None,
) -> MatchResult:
    """ Global identities for tracks (see the module docstring).

    Args:
        embeddings: (N, D) tracklet embeddings.
        cameras, track_ids, first_frames, last_frames: (N,) each row's camera, track id and frame span.
        threshold: Largest cosine distance at which two tracks of different cameras may be one person.
        relink: Re-link broken tracks within each camera.
        relink_threshold: Largest distance for a re-link (default: `threshold`).
        max_gap: Most frames between a track's end and its continuation's start (None: any).

    Raises:
        ValueError: The arrays disagree in length, or the threshold is not a distance (0..2).
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    cols = [np.asarray(c, dtype=np.int64) for c in (cameras, track_ids, first_frames, last_frames)]
    if embeddings.ndim != 2 or any(c.shape != (len(embeddings),) for c in cols):
        raise ValueError(f'embeddings must be (N, D) with one camera, track id, first and last frame per row; got '
                         f'{embeddings.shape} and {[c.shape for c in cols]}.')
    for name, t in (('threshold', threshold), ('relink_threshold', relink_threshold)):
        if t is not None and not 0 <= t <= 2:
            raise ValueError(f'{name} is a cosine distance, 0..2; got {t}.')
    cam, tid, first, last, emb, row_track = _tracks(*cols, embeddings)
    relink_threshold = threshold if relink_threshold is None else relink_threshold

    units, links = [], []  # units: lists of track indices that are one person in one camera
    for c in np.unique(cam):
        idx = np.flatnonzero(cam == c)
        if relink:
            chains, found = _relink(idx, emb, first, last, relink_threshold, max_gap)
            units += chains
            links += [(int(c), int(tid[i]), int(tid[j]), d) for i, j, d in found]
        else:
            units += [[int(i)] for i in idx]

    global_of_track = np.zeros(len(cam), dtype=np.int64)
    identities: List[np.ndarray] = []  # sum of the member units' embeddings
    matches = []
    unit_emb = [_normalise(emb[u].sum(0)) for u in units]
    for c in np.unique(cam):
        todo = [k for k, u in enumerate(units) if cam[u[0]] == c]
        pairs = []
        if identities:
            cost = cosine_distance(np.stack(identities), np.stack([unit_emb[k] for k in todo]))
            pairs = _assign(cost, threshold)
        taken = {j: (i, d) for i, j, d in pairs}
        for j, k in enumerate(todo):
            if j in taken:
                g, d = taken[j]
                identities[g] = identities[g] + unit_emb[k]
                matches.append((g + 1, int(c), int(tid[units[k][0]]), d))
            else:
                g = len(identities)
                identities.append(unit_emb[k].copy())
            global_of_track[units[k]] = g + 1
    new_id = _renumbering(global_of_track, first, cam)
    gids = np.array([new_id[g] for g in global_of_track.tolist()], dtype=np.int64)
    matches = [(new_id[g], c, t, d) for g, c, t, d in matches]
    return MatchResult(cam, tid, first, last, gids, gids[row_track], links, matches)


def _renumbering(ids: np.ndarray, first: np.ndarray, cam: np.ndarray) -> Dict[int, int]:
    """ Old id -> 1-based id in order of first appearance (frame, then camera), so the numbering reads naturally. """
    new: Dict[int, int] = {}
    for i in np.lexsort((cam, first)):
        new.setdefault(int(ids[i]), len(new) + 1)
    return new


def match_embeddings_file(path, threshold: float = 0.3, relink: bool = True, relink_threshold: Optional[float] = None,
                          max_gap: Optional[int] = None) -> Tuple[MatchResult, Dict]:
    """`match_tracks` on an embeddings file written by `extract_videos` (`m3d-zoo extract --video ... --tracks ...`).

    Returns:
        The matching, and the file's contents (`load_embeddings`).
    """
    from .extract import EmbeddingsError, load_embeddings
    data = load_embeddings(path)
    missing = [k for k in ('track_ids', 'first_frames', 'last_frames') if k not in data]
    if missing or 'cameras' not in data['metadata']:
        raise EmbeddingsError(f'{path} was not extracted from videos (it lacks {missing or ["cameras"]}): matching '
                              f'needs m3d-zoo extract --video V --tracks T [--video V2 --tracks T2 ...] -o FILE.')
    result = match_tracks(data['embeddings'].numpy(), data['camids'].numpy(), data['track_ids'].numpy(),
                          data['first_frames'].numpy(), data['last_frames'].numpy(), threshold=threshold, relink=relink,
                          relink_threshold=relink_threshold, max_gap=max_gap)
    return result, data


def _global_ids_for_file(result: MatchResult, camera: int, tracks, next_id: int) -> Tuple[np.ndarray, int]:
    """Each box's global identity; tracks that were not matched (too short, filtered) get fresh ones from next_id."""
    known = {int(t): int(g) for c, t, g in zip(result.cameras, result.track_ids, result.global_ids) if c == camera}
    for tid in np.unique(tracks.track_id):
        if int(tid) not in known:
            known[int(tid)] = next_id
            next_id += 1
    return np.array([known[int(t)] for t in tracks.track_id], dtype=np.int64), next_id


def write_matches(out_dir, result: MatchResult, data: Dict, settings: Dict, video: bool = False) -> List[str]:
    """Write what `m3d-zoo match` gives: the identity table (CSV, JSON), each camera's track file with global
    identities, a contact sheet, and (`video`) each camera's video with the boxes labelled.

    Returns:
        The files written.
    """
    import csv
    import io
    import json
    import logging
    from pathlib import Path
    from m3d_zoo._io import atomic_write_text
    from m3d_zoo.data.tracks import read_tracks, write_tracks
    from m3d_zoo.pictures import contact_sheet, draw_identities_video, save_png
    out_dir = Path(out_dir)
    cameras = json.loads(data['metadata']['cameras'])
    table = [dict(camera_name=cameras[r['camera']]['name'], **r) for r in result.table()]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    written = [str(atomic_write_text(out_dir / 'identities.csv', buf.getvalue()))]
    summary = {'settings': settings, 'num_tracks': len(table), 'num_identities': result.num_identities,
               'tracks': table, 'relinks': [dict(zip(('camera', 'earlier_track', 'later_track', 'distance'), x))
                                            for x in result.links],
               'matches': [dict(zip(('global_id', 'camera', 'track_id', 'distance'), x)) for x in result.matches]}
    written.append(str(atomic_write_text(out_dir / 'identities.json', json.dumps(summary, indent=1) + '\n')))
    next_id = int(result.global_ids.max()) + 1
    for camera, cam in enumerate(cameras):
        if not os.path.isfile(cam['tracks']):
            logging.getLogger(__name__).warning(f'{cam["tracks"]} is gone: its track file is not rewritten.')
            continue
        tracks = read_tracks(cam['tracks'])
        ids, next_id = _global_ids_for_file(result, camera, tracks, next_id)
        target = out_dir / 'tracks' / f'{cam["name"]}.txt'
        write_tracks(str(target), tracks, ids)
        written.append(str(target))
        if video:
            target = out_dir / f'{cam["name"]}_identities.mp4'
            boxes: Dict[int, list] = {}
            for f, g, b in zip(tracks.frame, ids, tracks.boxes):
                boxes.setdefault(int(f), []).append((int(g), b))
            draw_identities_video(cam['video'], str(target), boxes)
            written.append(str(target))
    written.append(save_png(contact_sheet(_sheet_rows(result, data, cameras)), out_dir / 'identities.png'))
    return written


def _sheet_rows(result: MatchResult, data: Dict, cameras: List[Dict]) -> List[Tuple[str, list]]:
    """One row per global identity: the middle tracklet's thumbnail of each of its tracks."""
    thumbs = data['thumbnails'].numpy()
    rows = []
    for g in np.unique(result.global_ids):
        items = []
        for k in np.flatnonzero(result.global_ids == g):
            c, t = result.cameras[k], result.track_ids[k]
            members = np.flatnonzero((data['camids'].numpy() == c) & (data['track_ids'].numpy() == t))
            items.append((f'{cameras[c]["name"][:10]} t{t}', thumbs[members[len(members) // 2]]))
        rows.append((f'id {g}', items))
    return rows
