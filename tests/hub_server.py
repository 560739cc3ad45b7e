"""A small Hugging Face Hub-compatible HTTP server for tests (standard library only).

It implements the subset of the Hub's HTTP API that ``huggingface_hub`` 2.x and timm use to push and pull a model
repo, so that the real clients can be exercised end to end on 127.0.0.1 with no network:

    POST /api/repos/create                                   create a repo (409 + ``url`` when it exists)
    POST /api/repos/delete                                   delete a repo
    GET  /api/whoami-v2                                      the (fake) user owning the dummy token
    POST /api/validate-yaml                                  model card metadata check (always valid)
    GET  /api/{type}s/{repo}[/revision/{rev}]                repo info (``sha``, ``siblings``)
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}]             file listing (``recursive`` supported)
    POST /api/{type}s/{repo}/preupload/{rev}                 upload modes: always ``regular`` (inline content)
    POST /api/{type}s/{repo}/commit/{rev}                    NDJSON commit: header, file, deletedFile, deletedFolder
    POST /api/{type}s/{repo}/branch/{branch}                 create a branch (``startingPoint`` optional)
    POST /api/{type}s/{repo}/tag/{rev}                       create a tag
    HEAD/GET /{repo}/resolve/{rev}/{path}                    file download (``X-Repo-Commit``, ``ETag``, ranges)

Errors carry the ``X-Error-Code`` header the client maps to its exceptions (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``). Storage is in memory: every commit is a full snapshot of the repo's
files (path -> content), commits are addressed by 40-hex ids, branches and tags by name. Authentication is not
checked, but a request without a token is answered like the Hub answers a private repo (401 on writes).

Usage::

    server = HubServer().start()    # picks a free port on 127.0.0.1
    os.environ['HF_ENDPOINT'] = server.endpoint
    ...
    server.stop()

``UnreachableEndpoint`` stands for a Hub that cannot be reached: a port that refuses connections, or one that takes
them and never answers.
"""
import base64
import datetime
import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ['HubServer', 'HubStore', 'UnreachableEndpoint', 'git_blob_sha1']

DEFAULT_BRANCH = 'main'
FAKE_USER = 'test-user'
_COMMIT_RE = re.compile(r'^[0-9a-f]{40}$')
_REPO_TYPES = {'models': 'model', 'datasets': 'dataset', 'spaces': 'space'}
_GITATTRIBUTES = b'*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n'


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, what the Hub reports as a regular file's oid."""
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.000Z')


class HubError(Exception):
    """An HTTP error answer: status, the Hub's ``X-Error-Code`` and a message."""

    def __init__(self, status: int, message: str, code: Optional[str] = None, headers: Optional[Dict] = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class _Repo:
    def __init__(self, repo_id: str, repo_type: str, private: bool):
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.private = private
        self.created_at = _now()
        self.commits: Dict[str, Dict[str, Any]] = {}  # oid -> {parent, files: {path: bytes}, title, date}
        self.branches: Dict[str, str] = {}
        self.tags: Dict[str, str] = {}


class HubStore:
    """In-memory repos, commits, branches and tags; thread safe."""

    def __init__(self):
        self._lock = threading.RLock()
        self._repos: Dict[Tuple[str, str], _Repo] = {}
        self._counter = 0

    # repo management
    def create_repo(self, repo_id: str, repo_type: str = 'model', private: bool = False) -> bool:
        """Create a repo with an initial commit holding ``.gitattributes``, as the Hub does. False if it exists."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                return False
            repo = _Repo(repo_id, repo_type, private)
            self._repos[(repo_type, repo_id)] = repo
            oid = self._new_commit(repo, None, {'.gitattributes': _GITATTRIBUTES}, 'initial commit')
            repo.branches[DEFAULT_BRANCH] = oid
            return True

    def delete_repo(self, repo_id: str, repo_type: str = 'model'):
        with self._lock:
            if self._repos.pop((repo_type, repo_id), None) is None:
                raise HubError(404, f'Repository {repo_id} not found', 'RepoNotFound')

    def repo(self, repo_id: str, repo_type: str = 'model') -> _Repo:
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f'Repository not found: {repo_type} {repo_id}', 'RepoNotFound')
        return repo

    def resolve(self, repo: _Repo, revision: str) -> str:
        """Branch, tag or full commit id -> commit id; RevisionNotFound otherwise."""
        with self._lock:
            if revision in repo.branches:
                return repo.branches[revision]
            if revision in repo.tags:
                return repo.tags[revision]
            if _COMMIT_RE.match(revision) and revision in repo.commits:
                return revision
        raise HubError(404, f'Invalid rev id: {revision}', 'RevisionNotFound')

    def files(self, repo: _Repo, oid: str) -> Dict[str, bytes]:
        with self._lock:
            return dict(repo.commits[oid]['files'])

    def commit(
            self,
            repo_id: str,
            revision: str,
            additions: Dict[str, bytes],
            deletions: List[str] = (),
            message: str = 'update',
            parent_commit: Optional[str] = None,
            repo_type: str = 'model',
    ) -> str:
        """Add a commit on a branch; a deleted path ending with '/' removes a folder."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            if revision not in repo.branches:
                raise HubError(404, f'Invalid rev id: {revision} is not a branch', 'RevisionNotFound')
            head = repo.branches[revision]
            if parent_commit is not None and parent_commit != head:
                raise HubError(412, f'A commit has happened since {parent_commit}; the branch head is {head}')
            files = dict(repo.commits[head]['files'])
            for path in deletions:
                if path.endswith('/'):
                    gone = [p for p in files if p.startswith(path)]
                else:
                    gone = [path] if path in files else []
                if not gone:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", 'EntryNotFound')
                for p in gone:
                    del files[p]
            files.update(additions)
            oid = self._new_commit(repo, head, files, message)
            repo.branches[revision] = oid
            return oid

    def create_ref(self, repo: _Repo, kind: str, name: str, start: Optional[str]) -> None:
        with self._lock:
            refs = repo.branches if kind == 'branch' else repo.tags
            if name in refs:
                raise HubError(409, f'{kind.capitalize()} {name} already exists')
            refs[name] = self.resolve(repo, start or DEFAULT_BRANCH)

    def _new_commit(self, repo: _Repo, parent: Optional[str], files: Dict[str, bytes], title: str) -> str:
        self._counter += 1
        h = hashlib.sha1(f'{repo.repo_id}\0{parent}\0{title}\0{self._counter}'.encode())
        for path in sorted(files):
            h.update(path.encode() + b'\0' + hashlib.sha256(files[path]).digest())
        oid = h.hexdigest()
        repo.commits[oid] = dict(parent=parent, files=files, title=title, date=_now())
        return oid


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive, as the client expects from the Hub
    server: '_Server'

    def log_message(self, fmt, *args):  # keep test output clean; requests are recorded instead
        pass

    # dispatch
    def _dispatch(self, method: str):
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        self.server.hub.requests.append((method, self.path))
        body = b''
        length = int(self.headers.get('Content-Length') or 0)
        if length:
            body = self.rfile.read(length)
        try:
            self._route(method, path, query, body)
        except HubError as e:
            headers = dict(e.headers, **({'X-Error-Code': e.code} if e.code else {}))
            self._send_json({'error': e.message}, status=e.status, headers=headers, head=method == 'HEAD')
        except Exception as e:  # a bug in the server must show up as a 500, not a hung client
            self._send_json({'error': f'{type(e).__name__}: {e}'}, status=500, head=method == 'HEAD')

    def do_GET(self):
        self._dispatch('GET')

    def do_HEAD(self):
        self._dispatch('HEAD')

    def do_POST(self):
        self._dispatch('POST')

    def do_DELETE(self):
        self._dispatch('DELETE')

    def _route(self, method: str, path: str, query: Dict[str, List[str]], body: bytes):
        store: HubStore = self.server.hub.store
        if path == '/api/whoami-v2' and method == 'GET':
            return self._send_json({
                'type': 'user', 'name': FAKE_USER, 'fullname': 'Test User',
                'orgs': [{'type': 'org', 'name': n} for n in self.server.hub.orgs],
                'auth': {'type': 'access_token', 'accessToken': {'displayName': 'dummy', 'role': 'write'}},
            })
        if path == '/api/validate-yaml' and method == 'POST':
            return self._send_json({'errors': [], 'warnings': []})
        if path in ('/api/repos/create', '/api/repos/delete') and method == 'POST':
            self._require_token()
            payload = json.loads(body or b'{}')
            repo_type = payload.get('type') or 'model'
            repo_id = f"{payload.get('organization') or FAKE_USER}/{payload['name']}"
            url = self._repo_url(repo_id, repo_type)
            if path.endswith('delete'):
                store.delete_repo(repo_id, repo_type)
                return self._send_json({})
            private = payload.get('private') or payload.get('visibility') == 'private'
            if not store.create_repo(repo_id, repo_type, bool(private)):
                return self._send_json({'error': 'You already created this model repo', 'url': url}, status=409)
            return self._send_json({'url': url, 'name': repo_id, 'id': repo_id})

        m = re.match(r'^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$', path)
        if m:
            repo_type, repo_id, rest = _REPO_TYPES[m.group(1)], m.group(2), m.group(3) or ''
            repo = store.repo(repo_id, repo_type)
            action, _, arg = rest.partition('/')
            if method == 'GET' and action in ('', 'revision'):
                return self._send_json(self._repo_info(repo, unquote(arg) if action else DEFAULT_BRANCH))
            if method == 'GET' and action == 'tree':
                rev, _, sub = arg.partition('/')
                recursive = (query.get('recursive') or ['false'])[0].lower() in ('1', 'true')
                return self._send_json(self._tree(repo, unquote(rev), unquote(sub), recursive))
            if method == 'POST' and action == 'preupload':
                self._require_token()
                return self._send_json(self._preupload(repo, unquote(arg), json.loads(body or b'{}')))
            if method == 'POST' and action == 'commit':
                self._require_token()
                return self._send_json(self._commit(repo, unquote(arg), body))
            if method == 'POST' and action in ('branch', 'tag'):
                self._require_token()
                payload = json.loads(body or b'{}')
                if action == 'branch':
                    store.create_ref(repo, 'branch', unquote(arg), payload.get('startingPoint'))
                else:
                    store.create_ref(repo, 'tag', payload['tag'], unquote(arg))
                return self._send_json({})
            raise HubError(404, f'No route for {method} {path}')

        m = re.match(r'^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$', path)
        if m and method in ('GET', 'HEAD'):
            repo_type = _REPO_TYPES[m.group(1)] if m.group(1) else 'model'
            return self._resolve_file(store.repo(m.group(2), repo_type), unquote(m.group(3)), unquote(m.group(4)),
                                      head=method == 'HEAD')
        raise HubError(404, f'No route for {method} {path}')

    # handlers
    def _require_token(self):
        if not (self.headers.get('Authorization') or '').startswith('Bearer '):
            raise HubError(401, 'Invalid username or password.')

    def _repo_url(self, repo_id: str, repo_type: str) -> str:
        prefix = '' if repo_type == 'model' else f'{repo_type}s/'
        return f'{self.server.hub.endpoint}/{prefix}{repo_id}'

    def _repo_info(self, repo: _Repo, revision: str) -> Dict[str, Any]:
        store: HubStore = self.server.hub.store
        oid = store.resolve(repo, revision)
        files = store.files(repo, oid)
        return {
            '_id': hashlib.md5(repo.repo_id.encode()).hexdigest()[:24], 'id': repo.repo_id, 'modelId': repo.repo_id,
            'author': repo.repo_id.split('/')[0], 'sha': oid, 'private': repo.private, 'disabled': False,
            'gated': False, 'downloads': 0, 'likes': 0, 'tags': [], 'createdAt': repo.created_at,
            'lastModified': repo.commits[oid]['date'],
            'siblings': [
                {'rfilename': p, 'size': len(d), 'blobId': git_blob_sha1(d)} for p, d in sorted(files.items())],
        }

    def _tree(self, repo: _Repo, revision: str, sub: str, recursive: bool) -> List[Dict[str, Any]]:
        store: HubStore = self.server.hub.store
        files = store.files(repo, store.resolve(repo, revision))
        prefix = sub.strip('/') + '/' if sub.strip('/') else ''
        if prefix and not any(p.startswith(prefix) for p in files):
            raise HubError(404, f'{sub} does not exist on "{revision}"', 'EntryNotFound')
        entries, folders = [], set()
        for p, data in sorted(files.items()):
            if not p.startswith(prefix):
                continue
            rel_parts = p[len(prefix):].split('/')
            # every folder on the way is listed; files only at this level unless recursive
            for depth in range(1, len(rel_parts)):
                if depth > 1 and not recursive:
                    break
                folders.add(prefix + '/'.join(rel_parts[:depth]))
            if recursive or len(rel_parts) == 1:
                entries.append({'type': 'file', 'oid': git_blob_sha1(data), 'size': len(data), 'path': p})
        folder_entries = [
            {'type': 'directory', 'oid': hashlib.sha1(f.encode()).hexdigest(), 'size': 0, 'path': f}
            for f in sorted(folders)]
        return folder_entries + entries

    def _preupload(self, repo: _Repo, revision: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        store: HubStore = self.server.hub.store
        files = store.files(repo, store.resolve(repo, revision))
        # 'regular' for every file: the client then sends content inline in the commit and never takes the LFS
        # or Xet upload paths, which need storage services this server does not emulate.
        return {'files': [{
            'path': f['path'], 'uploadMode': 'regular', 'shouldIgnore': False,
            'oid': git_blob_sha1(files[f['path']]) if f['path'] in files else None,
        } for f in payload.get('files', [])]}

    def _commit(self, repo: _Repo, revision: str, body: bytes) -> Dict[str, Any]:
        store: HubStore = self.server.hub.store
        header, additions, deletions = {}, {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item['key'], item['value']
            if key == 'header':
                header = value
            elif key == 'file':
                if value.get('encoding', 'base64') != 'base64':
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')}")
                additions[value['path']] = base64.b64decode(value['content'])
            elif key == 'deletedFile':
                deletions.append(value['path'])
            elif key == 'deletedFolder':
                deletions.append(value['path'].rstrip('/') + '/')
            else:  # lfsFile: preupload never asks for LFS, so a client sending it is a bug worth seeing
                raise HubError(400, f'Unsupported commit operation {key!r} (this test Hub only takes regular files)')
        store.resolve(repo, revision)  # RevisionNotFound before anything else
        oid = store.commit(
            repo.repo_id, revision, additions, deletions, message=header.get('summary') or 'update',
            parent_commit=header.get('parentCommit'), repo_type=repo.repo_type)
        return {'commitUrl': f'{self._repo_url(repo.repo_id, repo.repo_type)}/commit/{oid}', 'commitOid': oid,
                'success': True, 'pullRequestUrl': None}

    def _resolve_file(self, repo: _Repo, revision: str, filename: str, head: bool):
        store: HubStore = self.server.hub.store
        oid = store.resolve(repo, revision)
        files = store.files(repo, oid)
        if filename not in files:
            # with the commit id, as the Hub does: the client caches the file's absence under it
            raise HubError(404, f'Entry not found: {filename}', 'EntryNotFound', headers={'X-Repo-Commit': oid})
        data = files[filename]
        headers = {
            'X-Repo-Commit': oid,
            'ETag': f'"{hashlib.sha256(data).hexdigest()}"',  # content addressed, like an LFS file's sha256
            'Accept-Ranges': 'bytes',
            'Content-Type': 'application/octet-stream',
        }
        status, start = 200, 0
        rng = self.headers.get('Range')
        if rng and not head:
            m = re.match(r'^bytes=(\d+)-(\d*)$', rng.strip())
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                headers['Content-Range'] = f'bytes {start}-{end}/{len(data)}'
                data, status = data[start:end + 1], 206
        self._send(status, data, headers, head=head)

    # responses
    def _send_json(self, obj: Any, status: int = 200, headers: Optional[Dict[str, str]] = None, head: bool = False):
        self._send(status, json.dumps(obj).encode(), dict(headers or {}, **{'Content-Type': 'application/json'}), head)

    def _send(self, status: int, data: bytes, headers: Dict[str, str], head: bool = False):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: 'HubServer'


class HubServer:
    """A Hub-compatible server on 127.0.0.1; ``endpoint`` is what ``HF_ENDPOINT`` should be set to.

    Args:
        port: 0 picks a free port.
        store: Share repos with another server (e.g. restart on another port); a new empty store by default.
        orgs: Organisations the fake user belongs to (reported by whoami).
    """

    def __init__(self, port: int = 0, store: Optional[HubStore] = None, orgs=('m3d-zoo', 'timm')):
        self.store = store or HubStore()
        self.orgs = tuple(orgs)
        self.requests: List[Tuple[str, str]] = []
        # bind now so that the port (and so the endpoint) is known before the clients are imported; listen on start
        self._httpd = _Server(('127.0.0.1', port), _Handler, bind_and_activate=False)
        self._httpd.server_bind()
        self._httpd.hub = self
        self._thread: Optional[threading.Thread] = None
        self._listening = False

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def start(self) -> 'HubServer':
        if not self._listening:
            self._httpd.server_activate()
            self._listening = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name='hub-server', daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self):
        """Stop serving and close the socket; the store is kept (pass it to a new server to restart)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == '__main__':  # a manual check: python tests/hub_server.py [port]
    import sys
    srv = HubServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(f'Hub-compatible test server on {srv.endpoint} (Ctrl-C to stop)')
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


class UnreachableEndpoint:
    """A port on 127.0.0.1 where no Hub answers, held until `close`.

    Args:
        kind: 'refused': bound but not listening, so connections are refused at once (nothing runs there);
            'silent': listening, so the kernel completes connections, but nothing ever reads or answers them (a hung
            proxy, a firewall that swallows traffic).
    """

    def __init__(self, kind: str):
        if kind not in ('refused', 'silent'):
            raise ValueError(f"kind must be 'refused' or 'silent', got {kind!r}")
        self.kind = kind
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(('127.0.0.1', 0))
        if kind == 'silent':
            self._sock.listen(64)

    @property
    def endpoint(self) -> str:
        return f'http://127.0.0.1:{self._sock.getsockname()[1]}'

    def close(self):
        self._sock.close()
