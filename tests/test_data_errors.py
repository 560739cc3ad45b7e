""" Bad input to the data package: malformed split files, clip lengths and P x K batch shapes give a `ValueError`
(`DatasetError` for files on disk) that says what is wrong and what to do, instead of a crash, a hang or an empty
result. """
import json
import os
import re
import warnings

import numpy as np
import pytest
from scipy.io import savemat

from m3d_zoo.data import (
    ClipDataset, DatasetError, EvalClipDataset, PKBatchSampler, eval_clip_indices, load_ilidsvid, load_prid2011,
    load_tracklet_folder, sample_train_indices)
from _fake_datasets import write_fake_folder, write_fake_ilidsvid, write_fake_prid2011


@pytest.fixture(scope='module')
def prid(tmp_path_factory):
    """ A PRID-2011 copy with its generated split file, and an iLIDS-VID copy with its own. """
    root = str(tmp_path_factory.mktemp('prid'))
    write_fake_prid2011(root)
    load_prid2011(root)
    ilids = str(tmp_path_factory.mktemp('ilids'))
    write_fake_ilidsvid(ilids, with_mat=False)
    load_ilidsvid(ilids)
    split_file = os.path.join(root, 'prid_2011', 'splits_prid2011_seed0.json')
    return root, split_file, open(split_file).read(), os.path.join(ilids, 'splits_ilidsvid_seed0.json'), ilids


def _edited(text, edit):
    data = json.loads(text)
    edit(data)
    return json.dumps(data)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _set_split(i, key, value):
    return lambda d: d['splits'][i].__setitem__(key, value)


# (case, file content from the good file's text, what the message must say besides the file name)
_MALFORMED = [
    ('truncated', lambda t: t[:len(t) // 2], 'not valid JSON'),
    ('empty', lambda t: '', 'not valid JSON'),
    ('binary', lambda t: b'\xff\xfe\x00\x81' * 8, 'not a UTF-8 text file'),
    ('a list', lambda t: '[1, 2]', 'not a split file written by m3d_zoo'),
    ('another JSON', lambda t: json.dumps({'model': 'm3d_resnet50', 'epochs': 3}), 'not a split file'),
    ('splits null', lambda t: _edited(t, _set('splits', None)), '"splits" must be a non-empty list.*found null'),
    ('splits empty', lambda t: _edited(t, _set('splits', [])), '"splits" must be a non-empty list.*empty list'),
    ('splits a dict', lambda t: _edited(t, lambda d: d.__setitem__('splits', d['splits'][0])),
     '"splits" must be a non-empty list.*found a dict'),
    ('split a string', lambda t: _edited(t, _set('splits', ['person_0001'])),
     'split 0 must be an object with "train" and "test".*found a str'),
    ('no test key', lambda t: _edited(t, lambda d: d['splits'][1].pop('test')),
     'split 1 must be an object with "train" and "test"'),
    ('train a string', lambda t: _edited(t, _set_split(0, 'train', 'person_0001')),
     'split 0 "train" must be a list of person folder names.*found a str'),
    ('train indices', lambda t: _edited(t, _set_split(2, 'train', [0, 1, 2])),
     'split 2 "train" must be a list of person folder names.*0 \\(int\\)'),
    ('train nested', lambda t: _edited(t, _set_split(0, 'test', [['person_0001']])),
     'split 0 "test" must be a list of person folder names.*list'),
    ('persons a string', lambda t: _edited(t, _set('persons', 'person_0001')),
     '"persons" must be a list of person folder names.*found a str'),
    ('persons null', lambda t: _edited(t, _set('persons', None)), '"persons" must be a list.*found null'),
    ('persons dicts', lambda t: _edited(t, _set('persons', [{}])), '"persons" must be a list.*dict'),
    ('version text', lambda t: _edited(t, _set('format_version', 'one')), '"format_version" must be an integer'),
]


@pytest.mark.parametrize('case,content,message', _MALFORMED, ids=[c[0] for c in _MALFORMED])
def test_malformed_split_file(prid, tmp_path, case, content, message):
    root, _, good, _, _ = prid
    path = str(tmp_path / 'splits.json')
    text = content(good)
    with open(path, 'wb' if isinstance(text, bytes) else 'w') as f:
        f.write(text)
    with pytest.raises(DatasetError, match=message) as e:
        load_prid2011(root, split_file=path)
    msg = str(e.value)
    assert msg.startswith('PRID-2011: ') and path in msg
    # what to do: a damaged split file can be deleted; a file that is not one must not be (it may be the user's)
    if 'not a split file' in message:
        assert 'split_file=' in msg and 'Delete' not in msg
    else:
        assert f'Delete {path} to regenerate' in msg


def test_split_file_content_that_does_not_fit(prid, tmp_path):
    root, _, good, _, _ = prid
    path = str(tmp_path / 'splits.json')

    def load(text, **kw):
        with open(path, 'w') as f:
            f.write(text)
        return load_prid2011(root, split_file=path, **kw)

    # a split naming persons that are not among the folders, overlapping, or empty: says which
    with pytest.raises(DatasetError, match=rf"split 1 of {re.escape(path)} names persons that are not among the "
                                           rf"eligible folders: \['person_0099'\].*Delete"):
        load(_edited(good, lambda d: d['splits'][1]['test'].append('person_0099')))
    with pytest.raises(DatasetError, match=r"split 0 .* in both train and test: \['person_000\d'\]"):
        load(_edited(good, lambda d: d['splits'][0]['test'].append(d['splits'][0]['train'][0])))
    with pytest.raises(DatasetError, match=r'split 3 .* has no test persons'):
        load(_edited(good, _set_split(3, 'test', [])))
    # fewer splits in the file than split_id needs: the valid range and how to get more
    with pytest.raises(DatasetError, match=r'has 2 splits \(split_id 0\.\.1\), split_id 5 requested: pick one'
                                           r'.*delete .* to regenerate 10 splits'):
        load(_edited(good, lambda d: d.__setitem__('splits', d['splits'][:2])), split_id=5)
    # a newer format is not guessed at
    with pytest.raises(DatasetError, match=r'format version 99.*reads version 1.*[Uu]pgrade m3d_zoo'):
        load(_edited(good, _set('format_version', 99)))
    # the unchanged file still loads
    assert load(good, split_id=5).split_id == 5


def test_split_file_of_another_dataset(prid):
    root, split_file, _, ilids_file, ilids_root = prid
    before = open(split_file).read(), open(ilids_file).read()
    with pytest.raises(DatasetError, match=r'^PRID-2011: split file .*splits_ilidsvid_seed0\.json was written for '
                                           r'iLIDS-VID, not PRID-2011: pass a split file made for PRID-2011'):
        load_prid2011(root, split_file=ilids_file)
    with pytest.raises(DatasetError, match=r'^iLIDS-VID: split file .*splits_prid2011_seed0\.json was written for '
                                           r'PRID-2011, not iLIDS-VID') as e:
        load_ilidsvid(ilids_root, split_file=split_file)
    assert 'delete' not in str(e.value).lower()  # the file is right for the other dataset
    assert (open(split_file).read(), open(ilids_file).read()) == before


@pytest.mark.parametrize('kw,message', [
    (dict(split_id='0'), r"split_id must be an integer, got '0'"),
    (dict(split_id=1.0), r'split_id must be an integer, got 1\.0'),
    (dict(split_id=-1), r'split_id must be in \[0, 10\), got -1'),
    (dict(seed='abc'), r"seed must be an integer, got 'abc'"),
    (dict(num_splits=0), r'num_splits must be an integer >= 1, got 0'),
    (dict(min_frames='22'), r"min_frames must be an integer, got '22'"),
])
def test_split_arguments(prid, kw, message):
    with pytest.raises(ValueError, match=r'^PRID-2011: ' + message):
        load_prid2011(prid[0], **kw)


@pytest.mark.parametrize('ls_set,message', [
    ([[1.5, 2, 3, 4, 5, 6, 7, 8]], 'non-integer'),
    (np.zeros((0, 8)), 'no rows'),
    ([[0, 1, 2, 3, 4, 5, 6, 7]], r'indices 0\.\.7'),
    ([[1, 2, 3, 4, 5, 6, 7, 9]], r'indices 1\.\.9'),
])
def test_ilidsvid_official_split_indices(tmp_path, ls_set, message):
    root = str(tmp_path)
    write_fake_ilidsvid(root, with_mat=False)
    d = os.path.join(root, 'train-test people splits')
    os.makedirs(d)
    mat = os.path.join(d, 'train_test_splits_ilidsvid.mat')
    savemat(mat, {'ls_set': np.asarray(ls_set, dtype=float)})
    with pytest.raises(DatasetError, match=message) as e:
        load_ilidsvid(root)
    assert mat in str(e.value) and 'use_official_splits=False' in str(e.value)


@pytest.fixture(scope='module')
def folder_ds(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('folder'))
    write_fake_folder(root)
    return load_tracklet_folder(root)


_T_MESSAGE = r'num_frames \(the clip length T\) must be an integer >= 1, got {}'


@pytest.mark.parametrize('num_frames', [0, -2, 2.5, '8', True])
def test_clip_length(folder_ds, num_frames):
    msg = _T_MESSAGE.format(re.escape(repr(num_frames)))
    for mode in ('consecutive', 'segments'):
        with pytest.raises(ValueError, match=msg):
            sample_train_indices(10, num_frames, mode)
    with pytest.raises(ValueError, match=msg):
        eval_clip_indices(10, num_frames)
    with pytest.raises(ValueError, match=msg):
        ClipDataset(folder_ds.train, num_frames=num_frames)
    with pytest.raises(ValueError, match=msg):
        EvalClipDataset(folder_ds.query, num_frames=num_frames)
    with pytest.raises(ValueError, match=msg):
        EvalClipDataset([], num_frames=num_frames)  # checked even when there is nothing to cut


@pytest.mark.parametrize('max_clips', [0, -1, 1.5])
def test_max_clips(folder_ds, max_clips):
    msg = rf'max_clips must be None \(all clips\) or an integer >= 1, got {re.escape(repr(max_clips))}'
    with pytest.raises(ValueError, match=msg):
        eval_clip_indices(10, 2, max_clips=max_clips)
    with pytest.raises(ValueError, match=msg):
        EvalClipDataset(folder_ds.query, num_frames=2, max_clips=max_clips)


_PIDS = [0] * 4 + [1] * 4 + [2] * 4


@pytest.mark.parametrize('kw,message', [
    (dict(num_pids=2, num_instances=0), r'num_instances \(K, tracklets per identity\) must be an integer >= 1, got 0'),
    (dict(num_pids=2, num_instances=-1), r'num_instances .* must be an integer >= 1, got -1'),
    (dict(num_pids=2, num_instances=2.0), r'num_instances .* must be an integer >= 1, got 2\.0'),
    (dict(num_pids=0, num_instances=2), r'num_pids \(P, identities per batch\) must be an integer >= 1, got 0'),
    (dict(num_pids=-1, num_instances=2), r'num_pids .* must be an integer >= 1, got -1'),
    (dict(batch_size=10, num_instances=4),
     r'batch_size=10 is not a multiple of num_instances=4.*use batch_size=8 or 12, or another num_instances'),
    (dict(batch_size=3, num_instances=4), r'batch_size=3 is not a multiple of num_instances=4.*use batch_size=4'),
    (dict(batch_size=0, num_instances=2), r'batch_size must be an integer >= 1, got 0'),
    (dict(batch_size=8, num_pids=3, num_instances=2), r'num_pids=3 and batch_size=8 disagree'),
    (dict(num_pids=4, num_instances=2), r'P=4 identities per batch requested, the dataset has 3'),
    (dict(num_pids=2, num_instances=2, num_replicas=0), r'num_replicas must be an integer >= 1, got 0'),
    (dict(num_pids=2, num_instances=2, num_replicas=2, rank=2), r'rank must be an integer in \[0, 2\)'),
    (dict(num_pids=3, num_instances=2, num_replicas=2, rank=0), r'P .* = 3 identities cannot be split evenly'),
])
def test_pk_sampler_arguments(kw, message):
    # unchecked, num_pids=0 loops forever and num_instances=0 divides by zero
    with pytest.raises(ValueError, match=message):
        PKBatchSampler(_PIDS, **kw)


def test_pk_sampler_from_batch_size():
    s = PKBatchSampler(_PIDS, batch_size=6, num_instances=2, seed=1)
    assert s.num_pids == 3 and s.batch_size == 6
    assert list(s) == list(PKBatchSampler(_PIDS, 3, 2, seed=1))
    assert PKBatchSampler(list(range(8)) * 4).num_pids == 8  # P defaults to 8 without a batch size


def test_split_file_errors_reach_the_cli_without_a_traceback(prid, tmp_path, capsys):
    from m3d_zoo.cli import main
    root = prid[0]
    bad = tmp_path / 'cut.json'
    bad.write_text(prid[2][:100])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rc = main(['extract', '--model', 'c2d_resnet18', '--dataset', 'prid2011', '--root', root, '--output',
                   str(tmp_path / 'e.safetensors'), '--dataset-kwargs', f'split_file={bad}', '--device', 'cpu'])
    err = capsys.readouterr().err
    assert rc == 2 and 'Traceback' not in err and f'{bad}' in err and 'not valid JSON' in err
