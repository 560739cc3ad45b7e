""" CMC curves as PNG, drawn with PIL (which torchvision brings), so plotting needs no matplotlib. """
from pathlib import Path
from typing import Dict, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._io import atomic_path

__all__ = ['save_cmc_png']

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def save_cmc_png(
        path: Union[str, Path],
        curves: Dict[str, Sequence[float]],
        title: str = 'CMC',
        size: Sequence[int] = (640, 480),
) -> Path:
    """Draw CMC curves (fractions in [0, 1] at ranks 1..R) on one chart and save it as PNG.

    Args:
        path: Output file.
        curves: Legend label -> CMC values.
        title: Chart title.
        size: (width, height) in pixels.
    """
    if not curves:
        raise ValueError('no CMC curve to draw')
    w, h = int(size[0]), int(size[1])
    img = Image.new('RGB', (w, h), 'white')
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 60, 20, 40, 50
    x0, x1, y0, y1 = left, w - right, h - bottom, top  # y grows downwards: y0 is the axis at 0 %
    max_rank = max(len(c) for c in curves.values())

    def px(rank: float, value: float):
        fx = (rank - 1) / max(max_rank - 1, 1)
        return x0 + fx * (x1 - x0), y0 + value * (y1 - y0)

    # grid and y ticks every 10 %
    for i in range(11):
        _, y = px(1, i / 10)
        d.line([x0, y, x1, y], fill=(225, 225, 225) if i else (0, 0, 0))
        d.text((x0 - 8, y), f'{i * 10}', fill='black', font=font, anchor='rm')
    step = max(1, int(np.ceil(max_rank / 10)))
    ticks = sorted({1, max_rank, *range(step, max_rank + 1, step)})
    for r in ticks:
        x, _ = px(r, 0)
        d.line([x, y0, x, y0 + 4], fill='black')
        d.text((x, y0 + 6), str(r), fill='black', font=font, anchor='mt')
    d.line([x0, y0, x0, y1], fill='black')
    d.text(((x0 + x1) / 2, h - 18), 'rank', fill='black', font=font, anchor='mm')
    d.text((12, (y0 + y1) / 2), '%', fill='black', font=font, anchor='mm')
    d.text((w / 2, 16), title, fill='black', font=font, anchor='mm')

    for i, (label, cmc) in enumerate(curves.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = [px(r + 1, float(v)) for r, v in enumerate(np.asarray(cmc, dtype=np.float64))]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for x, y in pts:
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        # legend, bottom right inside the axes (CMC curves rise, so the corner above rank R's low end is free)
        ly = y0 - 18 * (len(curves) - i)
        d.line([x1 - 150, ly, x1 - 130, ly], fill=colour, width=3)
        r1 = f' (R1 {100 * float(cmc[0]):.1f}%)' if len(cmc) else ''
        d.text((x1 - 125, ly), f'{label}{r1}', fill='black', font=font, anchor='lm')
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format='PNG')
    return path
