""" Clip sampling, clip transforms, the P x K sampler, clip datasets and per-tracklet embedding extraction. """
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from m3d_zoo.data import (
    ClipDataset, DatasetError, PKBatchSampler, EvalClipDataset, RandomBatchSampler, VideoTransform,
    create_video_transform, load_tracklet_folder, read_frame, resolve_video_data_config, sample_train_indices,
    eval_clip_indices)
from m3d_zoo.engine import extract_embeddings
from _fake_datasets import frame_order_value, write_fake_folder


def test_train_sampling_consecutive_and_segments():
    rng = random.Random(0)
    starts = set()
    for _ in range(200):
        idx = sample_train_indices(20, 8, 'consecutive', rng)
        assert idx == list(range(idx[0], idx[0] + 8))
        starts.add(idx[0])
    assert starts == set(range(13))  # every start 0..L-T is reachable
    assert sample_train_indices(3, 8, 'consecutive', rng) == [0, 1, 2, 0, 1, 2, 0, 1]  # short: looped
    for _ in range(50):
        idx = sample_train_indices(40, 8, 'segments', rng)
        assert [i // 5 for i in idx] == list(range(8))  # one frame in each of 8 equal segments
    idx = sample_train_indices(5, 8, 'segments', rng)
    assert idx == sorted(idx) and len(idx) == 8 and max(idx) <= 4
    with pytest.raises(ValueError, match='mode'):
        sample_train_indices(10, 4, 'random')


def test_eval_clip_indices():
    assert eval_clip_indices(17, 8) == [list(range(8)), list(range(8, 16))]  # floor(L/T) clips, tail dropped
    assert eval_clip_indices(5, 8) == [[0, 1, 2, 3, 4, 0, 1, 2]]
    clips = eval_clip_indices(100, 4, max_clips=3)
    assert [c[0] for c in clips] == [0, 48, 96]


def test_transform_from_pretrained_cfg_and_model():
    cfg = {'input_size': (3, 32, 16), 'mean': (0.5, 0.5, 0.5), 'std': (0.25, 0.25, 0.25), 'interpolation': 'bicubic'}
    assert resolve_video_data_config(cfg)['input_size'] == (3, 32, 16)
    model = torch.nn.Linear(1, 1)
    model.pretrained_cfg = cfg
    t = create_video_transform(model)
    assert t.size == (32, 16) and t.interpolation == 'bicubic'
    d = resolve_video_data_config()
    assert d['input_size'] == (3, 256, 128) and d['mean'] == pytest.approx((0.485, 0.456, 0.406))
    frames = [Image.new('RGB', (10, 20), (128, 64, 255)) for _ in range(4)]
    x = t(frames)
    assert x.shape == (3, 4, 32, 16) and x.dtype == torch.float32
    np.testing.assert_allclose(x[:, 0, 0, 0].numpy(), [(128 / 255 - .5) / .25, (64 / 255 - .5) / .25, 2.], atol=1e-5)
    assert create_video_transform(cfg, input_size=(64, 32)).size == (64, 32)
    with pytest.raises(ValueError, match='input_size'):
        resolve_video_data_config({'input_size': (1, 2, 3, 4)})


def test_train_augmentation_identical_on_every_frame():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8))
    frames = [base] * 6
    t = VideoTransform((32, 16), is_training=True, hflip=0.5, pad=2, re_prob=1.0)
    ref = VideoTransform((32, 16))(frames)
    flipped = 0
    for _ in range(20):
        x = t(frames)
        assert x.shape == (3, 6, 32, 16) and not torch.equal(x, ref)
        for i in range(1, 6):  # same crop, flip, erased patch and fill on every frame
            assert torch.equal(x[:, i], x[:, 0])
    tf = VideoTransform((32, 16), is_training=True, hflip=0.5)
    for _ in range(20):
        x = tf(frames)
        flipped += int(torch.equal(x, ref.flip(-1)))
        assert torch.equal(x, ref) or torch.equal(x, ref.flip(-1))
    assert 0 < flipped < 20
    with pytest.raises(ValueError, match='re_mode'):
        VideoTransform(re_mode='noise')


def test_pixel_noise_is_fresh_per_pixel_frame_and_clip_and_only_in_training():
    """noise_std: every pixel of every frame gets its own draw, every clip new ones, clipped to the pixel range; the
    eval transform and noise_std=0 leave the pixels alone; erasing still covers the same patch on every frame."""
    torch.manual_seed(0)
    frames = [Image.new('RGB', (16, 32), (128, 128, 128))] * 4  # mid grey: no clipping at this std
    plain = dict(mean=(0,) * 3, std=(1,) * 3, hflip=0)
    ref = VideoTransform((32, 16), **plain)(frames)
    t = VideoTransform((32, 16), is_training=True, noise_std=0.05, **plain)
    a, b = t(frames), t(frames)
    for x in (a, b):
        d = x - ref
        assert abs(d.std().item() - 0.05) < 0.005 and abs(d.mean().item()) < 0.005
        assert not torch.equal(d[:, 0], d[:, 1])  # each frame its own noise
    assert not torch.equal(a, b)  # each clip its own noise
    white = VideoTransform((32, 16), is_training=True, noise_std=0.5, **plain)([Image.new('RGB', (16, 32), 'white')])
    assert white.max() == 1 and white.min() >= 0  # clipped to the pixel range
    assert torch.equal(VideoTransform((32, 16), noise_std=0.05, **plain)(frames), ref)  # eval: no noise
    assert torch.equal(VideoTransform((32, 16), is_training=True, **plain)(frames), ref)  # noise_std=0: none
    erased = VideoTransform((32, 16), is_training=True, noise_std=0.05, re_prob=1., re_mode='const', **plain)(frames)
    patch = (erased == 0).all(0)
    assert patch.any() and all(torch.equal(patch[i], patch[0]) for i in range(4))
    assert 'noise_std=0.05' in repr(t)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match='noise_std must be in'):
            VideoTransform(noise_std=bad)


def test_resize_matches_pil_and_takes_frames_of_any_size():
    # the published weights were evaluated on PIL-resized crops: the tensor resize must give the same pixels
    rng = np.random.default_rng(1)
    t = VideoTransform((64, 32), mean=(0,) * 3, std=(1,) * 3)
    for hw in [(32, 16), (128, 64), (64, 32), (100, 37)]:
        img = Image.fromarray(rng.integers(0, 255, hw + (3,), dtype=np.uint8))
        ref = np.asarray(img.resize((32, 64), Image.Resampling.BILINEAR)).astype(np.float32) / 255
        got = t([img, img])[:, 1].permute(1, 2, 0).numpy()
        assert np.abs(got - ref).max() <= 1.5 / 255, hw
    frames = [Image.new('RGB', (16, 32), (255, 0, 0)), Image.new('L', (40, 90), 255)]  # a tracker's varying boxes
    x = t(frames)
    assert x.shape == (3, 2, 64, 32)
    np.testing.assert_allclose(x[:, 0, 10, 10].numpy(), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(x[:, 1, 10, 10].numpy(), [1, 1, 1], atol=1e-6)


def test_random_erasing_modes_and_bad_options():
    torch.manual_seed(0)
    frames = [Image.new('RGB', (16, 32), (200, 100, 50))] * 3
    x = VideoTransform((32, 16), mean=(0,) * 3, std=(1,) * 3, is_training=True, hflip=0, re_prob=1., re_mode='const')(
        frames)
    erased = (x == 0).all(0)  # (T, H, W): the zero patch, the same on every frame
    assert erased.any() and torch.equal(erased[1], erased[0]) and torch.equal(erased[2], erased[0])
    with pytest.raises(ValueError, match='interpolation'):
        VideoTransform(interpolation='cubic')
    with pytest.raises(ValueError, match='mean'):
        resolve_video_data_config(mean=(0.5, 0.5))
    with pytest.raises(ValueError, match='input_size'):
        resolve_video_data_config(input_size=(0, 128))


def test_pk_batch_sampler():
    pids = [0] * 10 + [1] * 3 + [2] * 5 + [3] * 1 + [4] * 8 + [5] * 4
    s = PKBatchSampler(pids, num_pids=3, num_instances=4, seed=1)
    batches = list(s)
    assert len(batches) == len(s) > 0
    for b in batches:
        assert len(b) == 12
        ids = [pids[i] for i in b]
        assert len(set(ids)) == 3 and all(ids.count(p) == 4 for p in set(ids))
    assert batches == list(PKBatchSampler(pids, 3, 4, seed=1))  # reproducible
    s.set_epoch(1)
    assert list(s) != batches
    with pytest.raises(ValueError, match='identities'):
        PKBatchSampler(pids, num_pids=7)


def test_pk_sampler_splits_each_global_batch_by_identity():
    pids = [i // 3 for i in range(24)]  # 8 identities, 3 tracklets each
    full = PKBatchSampler(pids, 4, 2, seed=1)
    ranks = [PKBatchSampler(pids, 4, 2, seed=1, num_replicas=2, rank=r) for r in range(2)]
    for epoch in (0, 1):
        for s in [full] + ranks:
            s.set_epoch(epoch)
        assert len(ranks[0]) == len(ranks[1]) == len(full) > 0
        for batch, a, b in zip(full, *ranks):
            assert a + b == batch and len(a) == 4  # the global batch is the same as with one process
            ids_a, ids_b = {pids[i] for i in a}, {pids[i] for i in b}
            assert len(ids_a) == 2 and not ids_a & ids_b  # whole identities (K tracklets each) per rank
    with pytest.raises(ValueError, match='P .* = 3 identities cannot be split evenly across 2 processes'):
        PKBatchSampler(pids, 3, 2, num_replicas=2, rank=0)


def test_random_sampler_splits_each_global_batch():
    full = RandomBatchSampler(10, 4, seed=2)
    ranks = [RandomBatchSampler(10, 4, seed=2, num_replicas=2, rank=r) for r in range(2)]
    batches = list(full)
    assert len(batches) == len(full) == 2 and all(len(b) == 4 for b in batches)  # the incomplete batch is dropped
    assert len(set(sum(batches, []))) == 8
    assert [a + b for a, b in zip(*ranks)] == batches
    assert batches == list(RandomBatchSampler(10, 4, seed=2))  # reproducible
    full.set_epoch(1)
    assert list(full) != batches
    with pytest.raises(ValueError, match='batch size = 6 clips cannot be split evenly across 4 processes'):
        RandomBatchSampler(10, 6, num_replicas=4, rank=0)


def test_samplers_start_an_epoch_after_the_batches_a_stopped_run_did():
    pids = [0] * 10 + [1] * 3 + [2] * 5 + [3] * 1 + [4] * 8 + [5] * 4
    for sampler in (PKBatchSampler(pids, 2, 2, seed=3), RandomBatchSampler(len(pids), 4, seed=3)):
        sampler.set_epoch(2)
        epoch = list(sampler)
        sampler.set_epoch(2, start=2)
        assert list(sampler) == epoch[2:] and len(sampler) == len(epoch) - 2
        sampler.set_epoch(3)
        assert len(sampler) == len(list(sampler)) > 0  # the next epoch starts at its first batch again


@pytest.fixture(scope='module')
def folder_ds(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('folder'))
    write_fake_folder(root)
    return load_tracklet_folder(root)


def test_clip_dataset_with_dataloader(folder_ds):
    ds = ClipDataset(folder_ds.train, num_frames=4, transform=create_video_transform(
        {'input_size': (3, 16, 8)}, is_training=True))
    sampler = PKBatchSampler(ds.pids, num_pids=2, num_instances=2)
    clips, pids, camids = next(iter(DataLoader(ds, batch_sampler=sampler)))
    assert clips.shape == (4, 3, 4, 16, 8) and pids.dtype == torch.int64 and camids.shape == (4,)
    # the red channel encodes the frame position: a clip is consecutive frames in temporal order
    ds_eval = ClipDataset(folder_ds.train, num_frames=4, transform=VideoTransform((16, 8), mean=(0,) * 3, std=(1,) * 3))
    for i in range(len(ds_eval)):
        clip, _, _ = ds_eval[i]
        red = (clip[0, :, 0, 0] * 255).round().numpy()
        n = folder_ds.train[i].num_frames
        pos = [int(np.abs(np.array([frame_order_value(j) for j in range(n)]) - r).argmin()) for r in red]
        assert pos == [(pos[0] + k) % n for k in range(4)]
    with pytest.raises(ValueError, match='sampling'):
        ClipDataset(folder_ds.train, sampling='dense')


def test_test_clips_and_averaged_embeddings(folder_ds):
    tracklets = folder_ds.query + folder_ds.gallery
    ds = EvalClipDataset(tracklets, num_frames=4, transform=VideoTransform((16, 8), mean=(0,) * 3, std=(1,) * 3))
    expected_clips = [max(1, t.num_frames // 4) for t in tracklets]
    assert len(ds) == sum(expected_clips)
    assert [ti for ti, _ in ds.items] == sorted(ti for ti, _ in ds.items)

    class MeanRed(torch.nn.Module):  # embedding = mean red value of the clip and a constant
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            assert x.ndim == 5 and x.shape[1] == 3
            return torch.stack([x[:, 0].mean((1, 2, 3)), self.w.expand(x.shape[0])], 1)

    model = MeanRed().train()
    emb = extract_embeddings(model, ds, batch_size=3)
    assert model.training and emb.shape == (len(tracklets), 2)
    for i, t in enumerate(tracklets):
        idx = [j for c in ds.items if c[0] == i for j in c[1]]
        expected = np.mean([frame_order_value(j) for j in idx]) / 255
        assert emb[i, 0].item() == pytest.approx(expected, abs=3 / 255)
    np.testing.assert_allclose(emb[:, 1].numpy(), 1.0)
    # a plain callable works as well
    emb2 = extract_embeddings(lambda x: x.mean((2, 3, 4)), ds, batch_size=5)
    np.testing.assert_allclose(emb2[:, 0].numpy(), emb[:, 0].numpy(), atol=1e-6)


def _photo(h: int, w: int, seed: int = 0) -> Image.Image:
    """Blocks of colour with a little noise: what the frame decoders are compared on."""
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.random((h // 8, w // 8, 3)) * 220, np.ones((8, 8, 1)))
    return Image.fromarray((blocks + rng.normal(0, 3, (h, w, 3))).clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize('ext', ['.jpg', '.png', '.bmp'])
def test_frame_decoders_give_the_same_pixels(tmp_path, ext):
    path = str(tmp_path / f'frame{ext}')
    _photo(64, 32).save(path)
    ref = torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1)
    tv = read_frame(path, 'torchvision')
    if ext == '.bmp':  # a format torchvision.io does not decode: PIL's image
        tv = torch.from_numpy(np.array(tv)).permute(2, 0, 1)
    assert isinstance(tv, torch.Tensor) and tv.dtype == torch.uint8 and tv.shape == (3, 64, 32)
    assert torch.equal(tv, ref)  # libjpeg-turbo (and libpng) in both
    for decoder in ('pil', 'pil-draft'):
        frame = read_frame(path, decoder, (64, 32))
        assert isinstance(frame, Image.Image) and torch.equal(torch.from_numpy(np.array(frame)).permute(2, 0, 1), ref)
    with pytest.raises(ValueError, match='decoder must be one of'):
        read_frame(path, 'cv2')


def test_draft_decodes_a_large_jpeg_at_a_reduced_scale(tmp_path):
    path = str(tmp_path / 'large.jpg')
    _photo(512, 256).save(path, quality=90)
    assert read_frame(path, 'pil-draft', (128, 64)).size == (64, 128)  # 1/4 scale: still >= the output size
    assert read_frame(path, 'pil-draft', (200, 100)).size == (128, 256)  # 1/4 would be smaller than asked: 1/2
    assert read_frame(path, 'pil', (128, 64)).size == (256, 512)  # full decode


@pytest.mark.parametrize('decoder', ['torchvision', 'pil', 'pil-draft'])
def test_frame_decoders_name_a_broken_or_missing_file(tmp_path, decoder):
    good = tmp_path / 'good.jpg'
    _photo(64, 32).save(good)
    bad = tmp_path / 'truncated.jpg'
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DatasetError, match='truncated.jpg'):
        read_frame(str(bad), decoder, (64, 32))
    with pytest.raises(DatasetError, match='not found.*missing.jpg'):
        read_frame(str(tmp_path / 'missing.jpg'), decoder, (64, 32))


def test_clip_datasets_are_the_same_with_every_decoder(folder_ds):
    transform = VideoTransform((16, 8))
    clips = {}
    for decoder in ('torchvision', 'pil', 'pil-draft'):
        random.seed(0)
        clips[decoder] = (ClipDataset(folder_ds.train, 4, transform=transform, decoder=decoder)[0][0],
                          EvalClipDataset(folder_ds.query, 4, transform=transform, decoder=decoder)[0][0])
    for decoder in ('pil', 'pil-draft'):  # the fake frames are 16x8: draft has nothing to reduce
        assert all(torch.equal(a, b) for a, b in zip(clips[decoder], clips['torchvision']))
    with pytest.raises(ValueError, match='decoder must be one of'):
        ClipDataset(folder_ds.train, decoder='opencv')
