"""The test Hub server speaks the protocol of the real huggingface_hub client, and the loopback guard holds."""
import os
import textwrap

import pytest
from conftest import check_loopback_endpoint, is_loopback_url
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture()
def api(hub_server):
    return HfApi()


def _folder(tmp_path, files):
    for name, data in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def test_create_repo_answers_409_with_url_when_it_exists(api, hub_repo_id, hub_server):
    url = api.create_repo(hub_repo_id)
    assert url.repo_id == hub_repo_id and url.startswith(hub_server.endpoint)
    with pytest.raises(Exception) as e:
        api.create_repo(hub_repo_id)
    assert e.value.response.status_code == 409 and e.value.response.json()['url'] == url
    assert api.create_repo(hub_repo_id, exist_ok=True).repo_id == hub_repo_id


def test_upload_download_snapshot_and_revisions(api, hub_repo_id, hub_server, tmp_path):
    api.create_repo(hub_repo_id)
    big = os.urandom(3_000_000)
    first = api.upload_folder(repo_id=hub_repo_id, folder_path=_folder(tmp_path / 'a', {
        'a.txt': b'one', 'sub/b.bin': big}), commit_message='first')
    second = api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b'two', path_in_repo='a.txt',
                             commit_message='second')
    # the client was told to send content inline: no LFS batch or Xet calls
    assert not [p for _, p in hub_server.requests if 'lfs' in p or 'xet' in p]
    assert _read(hf_hub_download(hub_repo_id, 'a.txt')) == b'two'
    assert _read(hf_hub_download(hub_repo_id, 'a.txt', revision=first.oid)) == b'one'
    assert _read(hf_hub_download(hub_repo_id, 'sub/b.bin')) == big
    snap = snapshot_download(hub_repo_id, revision=first.oid)
    assert sorted(os.listdir(snap)) == ['.gitattributes', 'a.txt', 'sub']
    info = api.model_info(hub_repo_id)
    assert info.sha == second.oid
    assert {s.rfilename for s in info.siblings} == {'.gitattributes', 'a.txt', 'sub/b.bin'}
    tree = {f.path for f in api.list_repo_tree(hub_repo_id)}
    assert tree == {'.gitattributes', 'a.txt', 'sub'}
    api.create_branch(hub_repo_id, branch='dev', revision=first.oid)
    api.create_tag(hub_repo_id, tag='v1', revision=first.oid)
    assert _read(hf_hub_download(hub_repo_id, 'a.txt', revision='dev')) == b'one'
    assert _read(hf_hub_download(hub_repo_id, 'a.txt', revision='v1')) == b'one'
    # unchanged content makes no new commit
    assert api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b'two', path_in_repo='a.txt').oid == second.oid
    api.delete_file('sub/b.bin', repo_id=hub_repo_id)
    assert not api.file_exists(hub_repo_id, 'sub/b.bin') and api.file_exists(hub_repo_id, 'a.txt')


def test_not_found_error_codes(api, hub_repo_id):
    api.create_repo(hub_repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download('m3d-zoo/does-not-exist', 'a.txt')
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(hub_repo_id, 'missing.txt')
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(hub_repo_id, '.gitattributes', revision='no-such-branch')
    with pytest.raises(RepositoryNotFoundError):
        api.model_info('m3d-zoo/does-not-exist')


def test_loopback_detection():
    assert is_loopback_url('http://127.0.0.1:1234') and is_loopback_url('http://localhost')
    assert is_loopback_url('http://[::1]:80') and is_loopback_url('http://127.0.0.2')
    assert not is_loopback_url('https://huggingface.co') and not is_loopback_url('http://10.0.0.1')
    check_loopback_endpoint()  # the session's own endpoint


def test_guard_fails_a_test_whose_endpoint_is_not_loopback(pytester):
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ('conftest.py', 'hub_server.py'):
        pytester.makefile('.py', **{name[:-3]: _read(os.path.join(here, name)).decode()})
    pytester.makepyfile(test_guarded=textwrap.dedent("""
        import huggingface_hub.constants as c

        def test_changes_endpoint(monkeypatch):
            monkeypatch.setattr(c, 'ENDPOINT', 'https://huggingface.co')

        def test_stays_on_loopback():
            pass
    """))
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider')
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(['*Hub endpoint is not loopback*huggingface.co*'])
