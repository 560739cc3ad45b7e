""" Synthetic temporal ("gait") ReID set, order-only by construction: the paper's Fig. 1(a) made testable.

Every identity is the same figure with the same appearance, walking through the same cycle of `cycle` poses; an
identity differs from the others only in the cyclic order of those poses. A tracklet of length L (a multiple of
the cycle) starts at a random phase and shows every pose exactly L/cycle times, with small per-frame pixel noise
and position jitter drawn from the same distribution for all identities. Hence the multiset of frames of every
tracklet is the same up to noise, any model that averages per-frame features is blind (at chance), and only a
model that looks at the order of frames (temporal convolutions) can identify people.

The output is written in the generic tracklet-folder layout (`m3d_zoo.data.load_tracklet_folder`):
train identities under `train/`, test identities with their first tracklet (camera 1) under `query/` and the
others (cameras 2.., cycling) under `gallery/`.
"""
import itertools
import json
import math
import os
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['make_synthetic_gait', 'render_pose_templates', 'identity_orders']

_BG = (110, 110, 110)
_SKIN = (230, 190, 160)
_SHIRT = (40, 90, 200)
_TROUSERS = (50, 50, 60)
_SHOES = (150, 70, 30)
_SLEEVE = (240, 230, 60)


def render_pose_templates(cycle: int = 8, size: Tuple[int, int] = (256, 128)) -> np.ndarray:
    """ The `cycle` clean pose images, uint8 (cycle, H, W, 3).

    Pose k is a figure at gait phase 2*pi*k/cycle: leg and arm angles follow (sin, cos) of the phase, so all poses
    differ (a plain sin would repeat poses k and cycle/2-k).
    """
    h, w = size
    # draw on a canvas of at least 256x128 and downsample, so small outputs keep smooth, distinct limbs
    scale = max(1, math.ceil(256 / h))
    ch, cw = h * scale, w * scale
    out = []
    for k in range(cycle):
        phi = 2 * math.pi * k / cycle
        img = Image.new('RGB', (cw, ch), _BG)
        d = ImageDraw.Draw(img)
        cx = cw / 2
        head_r, neck, hip = 0.07 * ch, 0.2 * ch, 0.55 * ch
        lw = max(2, int(0.045 * ch))
        d.ellipse([cx - head_r, neck - 2 * head_r, cx + head_r, neck], fill=_SKIN)
        d.rectangle([cx - 0.16 * cw, neck, cx + 0.16 * cw, hip], fill=_SHIRT)
        leg = 0.4 * ch
        arm = 0.3 * ch
        # left and right limbs start at different points and have different colours: otherwise swapping the two
        # angles (phase phi <-> pi/2 - phi) would draw the same picture and two poses would coincide
        dx = 0.08 * cw
        for ang, colour, length, x0, y0 in (
                (35 * math.sin(phi), _TROUSERS, leg, cx - dx, hip),  # left leg
                (35 * math.cos(phi), _SHOES, leg, cx + dx, hip),  # right leg
                (-40 * math.sin(phi), _SKIN, arm, cx - 2 * dx, neck + 0.02 * ch),  # left arm
                (-40 * math.cos(phi), _SLEEVE, arm, cx + 2 * dx, neck + 0.02 * ch),  # right arm
        ):
            a = math.radians(ang)
            d.line([x0, y0, x0 + length * math.sin(a), y0 + length * math.cos(a)], fill=colour, width=lw)
        if scale > 1:
            img = img.resize((w, h), Image.Resampling.LANCZOS)
        out.append(np.asarray(img))
    return np.stack(out)


def identity_orders(num_ids: int, cycle: int = 8, seed: int = 0) -> List[Tuple[int, ...]]:
    """ `num_ids` distinct cyclic orders of the poses 0..cycle-1 (each starting with pose 0, so that no two are
    rotations of each other). """
    if num_ids > math.factorial(cycle - 1):
        raise ValueError(f'a cycle of {cycle} poses has only {math.factorial(cycle - 1)} distinct cyclic orders, '
                         f'{num_ids} identities requested; use a longer cycle')
    rng = np.random.default_rng(seed)
    seen, orders = set(), []
    if math.factorial(cycle - 1) <= 4 * num_ids:
        # few orders available: enumerate them all and pick without replacement
        allp = [(0,) + p for p in itertools.permutations(range(1, cycle))]
        return [allp[i] for i in rng.permutation(len(allp))[:num_ids]]
    while len(orders) < num_ids:
        o = (0,) + tuple(int(x) + 1 for x in rng.permutation(cycle - 1))
        if o not in seen:
            seen.add(o)
            orders.append(o)
    return orders


def _frame(template: np.ndarray, rng: np.random.Generator, noise: float, jitter: int) -> np.ndarray:
    img = template
    if jitter:
        dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
        img = np.roll(img, (dy, dx), axis=(0, 1))
        # fill the wrapped border with background, so jitter moves the figure and adds nothing else
        if dy > 0:
            img[:dy] = _BG
        elif dy < 0:
            img[dy:] = _BG
        if dx > 0:
            img[:, :dx] = _BG
        elif dx < 0:
            img[:, dx:] = _BG
    if noise:
        img = np.clip(img.astype(np.float32) + rng.normal(0, 255 * noise, img.shape), 0, 255).astype(np.uint8)
    return img


def make_synthetic_gait(
        root: Union[str, os.PathLike],
        num_ids: int = 100,
        tracklets_per_id: int = 4,
        length: int = 16,
        size: Tuple[int, int] = (256, 128),
        seed: int = 0,
        cycle: int = 8,
        num_train_ids: Optional[int] = None,
        num_cams: int = 2,
        noise: float = 0.,
        jitter: int = 0,
        fmt: str = 'png',
) -> Dict:
    """ Write an order-only synthetic video ReID set in the generic tracklet-folder layout.

    Args:
        root: Output folder (created; must not already hold a `train/`, `query/` or `gallery/` folder).
        num_ids: Identities in total (train + test).
        tracklets_per_id: Tracklets per identity (>= 2, so every test identity has a query and a gallery tracklet).
        length: Frames per tracklet, a multiple of `cycle` (so every tracklet holds each pose equally often).
        size: Frame (H, W).
        seed: Seed for the orders, phases, noise and jitter.
        cycle: Poses per gait cycle (use the clip length T: then any T consecutive frames hold every pose once).
        num_train_ids: Identities under `train/` (default: half); the rest are query/gallery identities.
        num_cams: Cameras; tracklet j of an identity is seen by camera j % num_cams + 1.
        noise: Std of the Gaussian pixel noise, as a fraction of 255. Off by default: noise drawn once is saved into
            the files, so every training frame becomes unique and a model can memorise frames instead of learning
            order; what it learns then does not carry over to new identities (benchmarks/RESULTS.md).
        jitter: Maximum figure shift in pixels, per frame. Off by default: on small frames (32x16) a 1-pixel jitter
            is a large displacement, and M3D stays near chance within a CPU training budget.
        fmt: 'png' (lossless) or 'jpg'.

    Returns:
        Summary dict: root, counts, size, cycle, seed, and each identity's pose order (also saved to
        `<root>/synthetic_gait.json`).
    """
    if length % cycle:
        raise ValueError(f'length ({length}) must be a multiple of cycle ({cycle}) for an order-only set')
    if tracklets_per_id < 2 or num_cams < 2:
        raise ValueError('need tracklets_per_id >= 2 and num_cams >= 2 for query/gallery splits')
    num_train_ids = num_ids // 2 if num_train_ids is None else num_train_ids
    if not 0 <= num_train_ids < num_ids:
        raise ValueError(f'num_train_ids must be in [0, {num_ids}), got {num_train_ids}')
    root = os.fspath(root)  # a Path too: the summary is JSON
    fmt = fmt.lower().lstrip('.')
    if fmt not in ('png', 'jpg', 'jpeg'):
        raise ValueError(f'fmt must be png or jpg, got {fmt!r}')
    for sub in ('train', 'query', 'gallery'):
        if os.path.exists(os.path.join(root, sub)):
            raise FileExistsError(f'{os.path.join(root, sub)} exists; write the synthetic set to an empty folder')

    templates = render_pose_templates(cycle, size)
    orders = identity_orders(num_ids, cycle, seed)
    rng = np.random.default_rng([seed, 1])
    num_frames = 0
    for i, order in enumerate(orders):
        pid = f'{i + 1:04d}'
        for j in range(tracklets_per_id):
            cam = j % num_cams + 1
            if i < num_train_ids:
                subset = 'train'
            else:
                subset = 'query' if j == 0 else 'gallery'
            tdir = os.path.join(root, subset, pid, f'c{cam}_t{j + 1:03d}')
            os.makedirs(tdir)
            phase = int(rng.integers(cycle))
            for f in range(length):
                img = _frame(templates[order[(phase + f) % cycle]], rng, noise, jitter)
                Image.fromarray(img).save(os.path.join(tdir, f'{f + 1:06d}.{fmt}'))
                num_frames += 1
    summary = {
        'root': root, 'num_ids': num_ids, 'num_train_ids': num_train_ids, 'num_test_ids': num_ids - num_train_ids,
        'tracklets_per_id': tracklets_per_id, 'num_tracklets': num_ids * tracklets_per_id, 'num_frames': num_frames,
        'length': length, 'size': list(size), 'cycle': cycle, 'num_cams': num_cams, 'noise': noise,
        'jitter': jitter, 'seed': seed, 'orders': {f'{i + 1:04d}': list(o) for i, o in enumerate(orders)},
    }
    with open(os.path.join(root, 'synthetic_gait.json'), 'w') as fh:
        json.dump(summary, fh, indent=1)
    return summary
