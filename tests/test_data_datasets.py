""" Dataset loaders on small copies in the real layouts: counts, splits, temporal order, and clear errors. """
import json
import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from m3d_zoo.data import (
    DatasetError, create_dataset, hold_out_identities, load_ilidsvid, load_mars, load_prid2011, load_tracklet_folder,
    validation_dataset, verify_images)
from _fake_datasets import (
    frame_order_value, write_fake_folder, write_fake_ilidsvid, write_fake_mars, write_fake_prid2011)


def _assert_temporal_order(tracklets, n=None):
    for t in tracklets[:n]:
        reds = [int(np.asarray(Image.open(p))[..., 0].mean().round()) for p in t.paths]
        expected = [frame_order_value(i) for i in range(len(t.paths))]
        assert np.abs(np.array(reds) - np.array(expected)).max() <= 3, (t.paths, reds)


@pytest.fixture(scope='module')
def mars_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('mars'))
    return root, write_fake_mars(root)


def test_mars_torchreid_gallery(mars_root):
    root, exp = mars_root
    ds = load_mars(root)
    assert ds.num_train_pids == exp['num_train_pids']
    assert sorted({t.pid for t in ds.train}) == list(range(exp['num_train_pids']))  # relabelled
    assert len(ds.train) == exp['num_train_tracklets']
    assert sum(t.num_frames for t in ds.train) == exp['num_train_frames']
    assert len(ds.query) == exp['num_query'] and len(ds.gallery) == exp['num_gallery_torchreid']
    assert all(t.camid == 0 for t in ds.query)  # the builder's queries are camera 1, 0-based here
    assert -1 not in {t.pid for t in ds.gallery} and 0 in {t.pid for t in ds.gallery}  # distractors out, junk in
    assert not set(t.paths for t in ds.query) & set(t.paths for t in ds.gallery)
    assert 'torchreid' in ds.gallery_mode and 'torchreid' in ds.summary()
    _assert_temporal_order(ds.train + ds.query + ds.gallery)


def test_mars_official_gallery_and_factory(mars_root):
    root, exp = mars_root
    ds = create_dataset('mars', root, gallery_mode='official')
    assert len(ds.gallery) == exp['num_gallery_official'] and len(ds.query) == exp['num_query']
    assert {t.paths for t in ds.query} <= {t.paths for t in ds.gallery}
    assert -1 in {t.pid for t in ds.gallery} and 'official' in ds.gallery_mode
    with pytest.raises(ValueError, match='gallery_mode'):
        load_mars(root, gallery_mode='all')


def test_mars_evaluation_conventions_agree_on_perfect_features(mars_root):
    # with identity-perfect features both galleries give rank-1 = 1 and ignore the query itself and distractors
    from m3d_zoo.data import tracklet_labels
    from m3d_zoo.eval import evaluate_embeddings
    root, _ = mars_root
    for mode in ('torchreid', 'official'):
        ds = load_mars(root, gallery_mode=mode)
        (qp, qc), (gp, gc) = tracklet_labels(ds.query), tracklet_labels(ds.gallery)
        emb = lambda pids: np.eye(64)[np.asarray(pids) % 64]  # noqa: E731
        res = evaluate_embeddings(emb(qp), emb(gp), qp, gp, qc, gc, gallery_mode=ds.gallery_mode)
        assert res['rank1'] == 1.0 and res['mAP'] == 1.0


def test_mars_skips_empty_tracks_with_warning(tmp_path):
    exp = write_fake_mars(str(tmp_path), empty_train_rows=2)
    with pytest.warns(UserWarning, match='skipped 2 empty tracklets'):
        ds = load_mars(str(tmp_path))
    assert ds.num_skipped == 2 and len(ds.train) == exp['num_train_tracklets']


def test_mars_errors(tmp_path):
    with pytest.raises(DatasetError, match='bbox_train.*\n.*Expected layout') as e:
        load_mars(str(tmp_path))
    assert 'zheng-lab' in str(e.value)
    with pytest.raises(DatasetError, match='folder not found'):
        load_mars(str(tmp_path / 'nowhere'))
    root = str(tmp_path / 'm')
    write_fake_mars(root)
    # a file name that does not parse
    names = os.path.join(root, 'info', 'test_name.txt')
    lines = open(names).read().splitlines()
    bad = lines.copy()
    bad[0] = 'frame_0001.jpg'
    open(names, 'w').write('\n'.join(bad))
    with pytest.raises(DatasetError, match="cannot parse file name 'frame_0001.jpg'"):
        load_mars(root)
    open(names, 'w').write('\n'.join(lines))
    # a listed frame missing on disk
    victim = lines[3]
    os.remove(os.path.join(root, 'bbox_test', victim[:4], victim))
    with pytest.raises(DatasetError, match=f'frame file missing: .*{victim}'):
        load_mars(root)
    assert len(load_mars(root, check_files=False).query) > 0
    # query_IDX pointing past the track list
    savemat(os.path.join(root, 'info', 'query_IDX.mat'), {'query_IDX': np.array([1, 999.])})
    with pytest.raises(DatasetError, match='do not belong together'):
        load_mars(root)
    # wrong variable name in a .mat file
    savemat(os.path.join(root, 'info', 'query_IDX.mat'), {'query_idx': np.array([1.])})
    with pytest.raises(DatasetError, match="no variable 'query_IDX'"):
        load_mars(root)


def test_corrupt_image_names_the_file(mars_root, tmp_path):
    root, _ = mars_root
    ds = load_mars(root)
    t = ds.train[0]
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(open(t.paths[0], 'rb').read()[:40])  # truncated JPEG
    from m3d_zoo.data import read_image
    with pytest.raises(DatasetError, match='broken.jpg'):
        read_image(str(bad))
    with pytest.raises(DatasetError, match='broken.jpg'):
        verify_images([t._replace(paths=t.paths + (str(bad),))])
    assert verify_images(ds.query) == sum(q.num_frames for q in ds.query)


def test_prid2011_splits_reproducible_and_checked(tmp_path):
    root = str(tmp_path)
    exp = write_fake_prid2011(root)
    ds = load_prid2011(root, split_id=0)
    assert ds.extra['num_persons'] == exp['num_persons']
    assert ds.num_train_pids == exp['num_train_pids'] and len(ds.train) == 2 * exp['num_train_pids']
    assert len(ds.query) == len(ds.gallery) == exp['num_test_pids']
    assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}
    assert [t.pid for t in ds.query] == [t.pid for t in ds.gallery]
    assert all(t.num_frames >= 22 for t in ds.query + ds.gallery)
    frames = exp['frames']
    assert [t.num_frames for t in ds.query] == [frames[('cam_a', t.pid)] for t in ds.query]
    assert [t.num_frames for t in ds.gallery] == [frames[('cam_b', t.pid)] for t in ds.gallery]
    train_persons = set(range(1, exp['num_persons'] + 1)) - {t.pid for t in ds.query}
    assert sum(t.num_frames for t in ds.train) == sum(frames[(c, p)] for p in train_persons for c in ('cam_a', 'cam_b'))
    _assert_temporal_order(ds.query + ds.gallery)
    split_file = os.path.join(root, 'prid_2011', 'splits_prid2011_seed0.json')
    data = json.load(open(split_file))
    assert data['num_splits'] == 10 and data['seed'] == 0 and len(data['persons']) == exp['num_persons']
    # every split is a partition of the eligible persons, and the splits differ
    for s in data['splits']:
        assert sorted(s['train'] + s['test']) == sorted(data['persons'])
    assert len({tuple(s['test']) for s in data['splits']}) > 1
    # regenerating from the same seed elsewhere gives the same splits
    other = str(tmp_path / 'copy.json')
    ds2 = load_prid2011(root, split_id=3, split_file=other)
    assert json.load(open(other))['splits'] == data['splits']
    assert sorted(t.pid for t in ds2.query) == sorted(int(p.split('_')[1]) for p in data['splits'][3]['test'])
    # a split file made from another seed is refused
    with pytest.raises(DatasetError, match='seed=0, not 4'):
        load_prid2011(root, split_file=split_file, seed=4)
    # the split file no longer matches the folders
    shutil.rmtree(os.path.join(root, 'prid_2011', 'multi_shot', 'cam_b', 'person_0001'))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(DatasetError, match='does not match the folders'):
            load_prid2011(root)
    with pytest.raises(ValueError, match='split_id'):
        load_prid2011(root, split_id=10, split_file=str(tmp_path / 'fresh.json'))


def test_prid2011_missing_camera_and_bad_names(tmp_path):
    root = str(tmp_path)
    with pytest.raises(DatasetError, match='multi_shot/cam_a[\\s\\S]*Expected layout[\\s\\S]*tugraz'):
        os.makedirs(os.path.join(root, 'prid_2011'))
        load_prid2011(root)
    write_fake_prid2011(root, num_both=4, num_short=0, num_a_only=0, num_b_only=0)
    Image.new('RGB', (8, 16)).save(os.path.join(root, 'prid_2011', 'multi_shot', 'cam_a', 'person_0001', 'x.png'))
    with pytest.raises(DatasetError, match="cannot parse frame file name 'x.png'"):
        load_prid2011(root)
    os.remove(os.path.join(root, 'prid_2011', 'multi_shot', 'cam_a', 'person_0001', 'x.png'))
    os.makedirs(os.path.join(root, 'prid_2011', 'multi_shot', 'cam_a', 'someone'))
    with pytest.raises(DatasetError, match='person folder name'):
        load_prid2011(root)
    os.rmdir(os.path.join(root, 'prid_2011', 'multi_shot', 'cam_a', 'someone'))
    os.makedirs(os.path.join(root, 'prid_2011', 'multi_shot', 'cam_b', 'person_0099'))
    with pytest.warns(UserWarning, match='skipped 1 empty'):
        ds = load_prid2011(root)
    assert ds.num_skipped == 1


def test_ilidsvid_official_mat_split(tmp_path):
    root = str(tmp_path)
    exp = write_fake_ilidsvid(root)
    ids = exp['person_ids']
    for split_id in (0, 7):
        ds = load_ilidsvid(root, split_id=split_id)
        row = exp['ls_set'][split_id].astype(int)
        half = len(ids) // 2
        assert sorted(t.pid for t in ds.query) == sorted(ids[i - 1] for i in row[:half])  # first half: test
        assert ds.num_train_pids == exp['num_train_pids'] and len(ds.train) == 2 * exp['num_train_pids']
        assert len(ds.gallery) == exp['num_test_pids']
        assert 'official' in ds.extra['split_source']
    _assert_temporal_order(ds.query + ds.gallery)
    assert json.load(open(os.path.join(root, 'splits_ilidsvid.json')))['source'].startswith('official')


def test_ilidsvid_random_splits_and_mismatched_mat(tmp_path):
    root = str(tmp_path)
    write_fake_ilidsvid(root, with_mat=False)
    ds = create_dataset('ilids-vid', root, split_id=9, seed=5)
    assert os.path.isfile(os.path.join(root, 'splits_ilidsvid_seed5.json')) and ds.split_id == 9
    assert len(ds.query) == 4
    # an official split file for another number of persons is rejected
    d = os.path.join(root, 'train-test people splits')
    os.makedirs(d)
    savemat(os.path.join(d, 'train_test_splits_ilidsvid.mat'), {'ls_set': np.tile(np.arange(1, 11.), (10, 1))})
    with pytest.raises(DatasetError, match='does not match the folders'):
        load_ilidsvid(root)
    # a frame that belongs to another folder
    p = os.path.join(root, 'i-LIDS-VID', 'sequences', 'cam1', 'person001')
    Image.new('RGB', (8, 16)).save(os.path.join(p, 'cam2_person001_00001.png'))
    with pytest.raises(DatasetError, match='cam2_person001_00001.png'):
        load_ilidsvid(root, use_official_splits=False)


def test_tracklet_folder(tmp_path):
    root = str(tmp_path)
    counts = write_fake_folder(root, empty=['gallery/0005/c2_t9'])
    with pytest.warns(UserWarning, match='skipped 1 empty tracklets'):
        ds = load_tracklet_folder(root)
    assert ds.stats() == counts and ds.num_skipped == 1
    assert sorted({t.pid for t in ds.train}) == [0, 1, 2]
    assert {t.pid for t in ds.query} == {3, 4, -1} and {t.camid for t in ds.gallery} == {1, 2, 3}
    _assert_temporal_order(ds.train + ds.query + ds.gallery)  # f1..f12: natural order, not f1, f10, f11, f2
    # non-numeric identity names map to the same integer in query and gallery
    root2 = str(tmp_path / 'named')
    write_fake_folder(root2, train={}, query={'alice': [(1, 3)]}, gallery={'alice': [(2, 3)], 'bob': [(1, 2)]})
    ds2 = create_dataset('folder', root2)
    assert ds2.query[0].pid == ds2.gallery[0].pid != ds2.gallery[1].pid and ds2.train == []
    os.makedirs(os.path.join(root2, 'query', 'carol', 'front'))
    with pytest.raises(DatasetError, match='must start with the camera'):
        load_tracklet_folder(root2)
    with pytest.raises(DatasetError, match='folder not found: .*query[\\s\\S]*Expected layout'):
        load_tracklet_folder(str(tmp_path / 'named' / 'query'))
    with pytest.raises(ValueError, match='Unknown dataset'):
        create_dataset('duke', root)


def _pid_by_folder(tracklets):
    """ {person folder name: pid} of `tracklets` (the folder above each tracklet folder). """
    return {os.path.basename(os.path.dirname(os.path.dirname(t.paths[0]))): t.pid for t in tracklets}


def test_tracklet_folder_named_persons_keep_distractor_and_junk_ids(tmp_path):
    # one named person among integer folders must not renumber the integers: -1 stays a distractor, 0 stays 0
    root = str(tmp_path)
    write_fake_folder(root, train={'0001': [(1, 3)], '0002': [(1, 3)], 'carol': [(2, 3)]},
                      query={'0003': [(1, 3)], '-1': [(2, 3)], 'bob': [(1, 3)]},
                      gallery={'0003': [(2, 3)], '0': [(1, 3)], 'bob': [(2, 3)], '-1': [(3, 3)], '0007': [(1, 3)]})
    ds = load_tracklet_folder(root)
    q, g = _pid_by_folder(ds.query), _pid_by_folder(ds.gallery)
    assert q['-1'] == g['-1'] == -1 and g['0'] == 0 and q['0003'] == g['0003'] == 3 and g['0007'] == 7
    # named folders get fresh ids above every integer id, in name order, the same in query and gallery
    assert q['bob'] == g['bob'] == 8 and ds.extra['pid_names'][9] == 'carol'
    assert ds.extra['pid_names'][-1] == '-1' and ds.extra['pid_names'][8] == 'bob'
    assert sorted({t.pid for t in ds.train}) == [0, 1, 2] and ds.num_train_pids == 3
    # only names: fresh ids start at 1, so that no person takes MARS's junk id 0
    root2 = str(tmp_path / 'named')
    write_fake_folder(root2, train={}, query={'alice': [(1, 3)]}, gallery={'alice': [(2, 3)], 'bob': [(1, 2)]})
    assert _pid_by_folder(load_tracklet_folder(root2).gallery) == {'alice': 1, 'bob': 2}


def test_tracklet_folder_refuses_ambiguous_or_unusable_person_folders(tmp_path):
    # '0001' and '1' in one subset are one id: merging two folders into one person must be an error
    root = str(tmp_path / 'twice')
    write_fake_folder(root, train={'0001': [(1, 3)], '1': [(2, 3)], '0002': [(1, 3)]})
    with pytest.raises(DatasetError, match=r"train/ has person folders '0001' and '1'.*same person id 1.*[Rr]ename"):
        load_tracklet_folder(root)
    root = str(tmp_path / 'zero')
    write_fake_folder(root, query={'0': [(1, 3)], '-0': [(1, 3)], '-1': [(1, 2)], '0003': [(1, 3)]})
    with pytest.raises(DatasetError, match=r"query/ has person folders '0' and '-0'.*same person id 0"):
        load_tracklet_folder(root)
    # the same integer spelled differently in two subsets is one person, as integer ids always were
    root = str(tmp_path / 'across')
    write_fake_folder(root, query={'0003': [(1, 3)]}, gallery={'3': [(2, 3)], '0004': [(1, 3)]})
    ds = load_tracklet_folder(root)
    assert ds.query[0].pid == _pid_by_folder(ds.gallery)['3'] == 3 and ds.extra['pid_names'][3] == '0003'
    # a distractor folder in train/ would become one training identity made of many people
    root = str(tmp_path / 'train_distractor')
    write_fake_folder(root, train={'0001': [(1, 3)], '0002': [(1, 3)], '-1': [(2, 3)]})
    with pytest.raises(DatasetError, match=r"train/-1.*distractor.*not a training identity"):
        load_tracklet_folder(root)
    # an id that does not fit the int64 label arrays
    root = str(tmp_path / 'huge')
    write_fake_folder(root, query={'0003': [(1, 3)]}, gallery={'0003': [(2, 3)], '9' * 25: [(1, 3)]})
    with pytest.raises(DatasetError, match=r"gallery/9{25}.*too large"):
        load_tracklet_folder(root)


_LABELS_SCRIPT = """
import json, os, sys
from m3d_zoo.data import load_tracklet_folder
ds = load_tracklet_folder(sys.argv[1])
name = lambda t: os.path.basename(os.path.dirname(os.path.dirname(t.paths[0])))
print(json.dumps({'train': sorted((name(t), t.pid) for t in ds.train),
                  'test': sorted((name(t), t.pid) for t in ds.query + ds.gallery)}))
"""


def test_tracklet_folder_labels_do_not_depend_on_the_hash_seed(tmp_path, monkeypatch, capsys):
    # names whose natural sort keys tie ('Alice'/'alice', 'p1'/'p01'): a resumed run must get the same labels
    import subprocess
    import sys
    import m3d_zoo
    root = str(tmp_path)
    tied = ('alice', 'Alice', 'bob', 'Bob', 'p1', 'p01', 'x_2', 'X_02')
    write_fake_folder(root, train={n: [(1, 2)] for n in tied}, query={'Carol': [(1, 2)], 'carol': [(1, 2)]},
                      gallery={'carol': [(2, 2)], 'Carol': [(2, 2)]})
    repo = os.path.dirname(os.path.dirname(os.path.abspath(m3d_zoo.__file__)))
    # this process's labels against a process with another hash seed (which orders a set of these names differently)
    ours = os.environ.get('PYTHONHASHSEED', 'random')
    other = str(int(ours) + 1) if ours.isdigit() else '0'
    env = dict(os.environ, PYTHONHASHSEED=other, PYTHONPATH=os.pathsep.join(
        [repo] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])))
    r = subprocess.run([sys.executable, '-c', _LABELS_SCRIPT, root], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    monkeypatch.setattr(sys, 'argv', ['-c', root])
    capsys.readouterr()
    exec(_LABELS_SCRIPT, {'__name__': 'labels'})  # the same script, in this process
    outs = [json.loads(capsys.readouterr().out), json.loads(r.stdout.strip().splitlines()[-1])]
    assert outs[0] == outs[1]
    # the order is natural order with the raw name as tie-break (upper case before lower case)
    order = ['Alice', 'alice', 'Bob', 'bob', 'p01', 'p1', 'X_02', 'x_2']
    assert dict(outs[0]['train']) == {n: i for i, n in enumerate(order)}
    assert dict(outs[0]['test'])['Carol'] < dict(outs[0]['test'])['carol']


# ---------------------------------------------------------------------------------------------------------------------
# Validation splits


def test_tracklet_folder_val_subset_is_split_into_query_and_gallery(tmp_path):
    """val/ holds identities of their own; each becomes one query with its matches in the gallery: across cameras
    where it has two, else split in time with the later tracklets in a camera of their own."""
    root = str(tmp_path / 'f')
    write_fake_folder(root, val={'0020': [(1, 6), (2, 6), (2, 6)], '0021': [(3, 6), (3, 6), (3, 6)],
                                 '0022': [(1, 6)]})
    ds = load_tracklet_folder(root)
    assert sorted({t.pid for t in ds.val}) == [20, 21, 22] and ds.stats()['val'] == (3, 7, 42)
    assert ds.num_train_pids == 3 and ds.stats()['query'] == (3, 3, 21)  # the other subsets as before
    val = validation_dataset(ds.val, 'v', seed=0)
    assert sorted(t.pid for t in val.query) == [20, 21]  # 22 has one tracklet: a gallery distractor
    assert len(val.gallery) == 5 and sum(t.pid == 22 for t in val.gallery) == 1
    q20 = next(t for t in val.query if t.pid == 20)
    assert any(t.pid == 20 and t.camid != q20.camid for t in val.gallery)  # a true match in another camera
    q21 = next(t for t in val.query if t.pid == 21)
    assert q21.paths[0].endswith(os.path.join('c3_t1', 'f1.jpg'))  # the first tracklet is the query
    later = [t for t in val.gallery if t.pid == 21]
    assert len(later) == 2 and len({t.camid for t in later}) == 1  # a camera that no validation tracklet has
    assert {t.camid for t in later}.isdisjoint({t.camid for t in ds.val})
    assert 'split in time' in val.gallery_mode
    assert validation_dataset(ds.val, 'v', seed=0) == val  # the seed decides
    with pytest.raises(DatasetError, match=r'v: none of the 1 validation identities has two tracklets'):
        validation_dataset([t for t in ds.val if t.pid == 22], 'v')
    write_fake_folder(str(tmp_path / 'g'), val={'-1': [(1, 4)]})
    with pytest.raises(DatasetError, match='person folder val/-1: a negative id marks distractors'):
        load_tracklet_folder(str(tmp_path / 'g'))


def test_held_out_identities_leave_the_training_set(tmp_path):
    root = str(tmp_path / 'f')
    write_fake_folder(root, train={f'{p:04d}': [(1, 5), (2, 5)] for p in range(1, 11)})
    ds = load_tracklet_folder(root)
    held = hold_out_identities(ds, 3, seed=0)
    assert held.num_train_pids == 7 and {t.pid for t in held.train} == set(range(7))  # relabelled 0..6
    assert len({t.pid for t in held.val}) == 3 and len(held.val) == 6 and held.extra['val_held_out'] == 3
    assert held.query == ds.query and held.gallery == ds.gallery  # the test protocol is unchanged
    assert hold_out_identities(ds, 3, seed=0).val == held.val  # deterministic
    assert hold_out_identities(ds, 3, seed=1).val != held.val
    assert len({t.pid for t in hold_out_identities(ds, 0.2).val}) == 2  # a fraction of the identities
    for bad in (0, 10, 11):
        with pytest.raises(DatasetError, match=rf'cannot hold out {bad} of its 10 training identities.*between 1 '
                                               rf'and 9'):
            hold_out_identities(ds, bad)
    with pytest.raises(ValueError, match='a validation fraction must be in'):
        hold_out_identities(ds, 1.5)
