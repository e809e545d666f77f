#!/usr/bin/env python3
"""Power cuts at every point of a run of the tools (issue 10).

  replay.py sweep --lib LIB [--points N] [--seed S] [-j J] [--out DIR] [--quick]
  replay.py image --work DIR --point K --image I --seed S [--keep DIR]

sweep: records workloads (append, command, project, saga) with the recorder
(recorder.c, preloaded; it logs every change to the files of the store's
directory), then, for each cut point k (after the k-th logged call), builds
images of the directory as a power cut there could leave it (see README
for the model of the file system) and checks what a user recovers from
each.  image: one image of a kept workload again, for a failure.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool

HERE = os.path.dirname(os.path.abspath(__file__))
SECTOR = 512
REC = struct.Struct('<6I3Q')
MAGIC = 0x50435554
(CREATE, WRITE, TRUNC, FSYNC, SFR, RENAME, LINK, UNLINK, MKDIR, RMDIR, DIRSYNC,
 MARK) = range(1, 13)
OPNAME = {1: 'create', 2: 'write', 3: 'truncate', 4: 'fsync', 5: 'sync_file_range',
          6: 'rename', 7: 'link', 8: 'unlink', 9: 'mkdir', 10: 'rmdir',
          11: 'fsync(dir)', 12: 'mark'}
PRODUCT = '3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a'
# the images made at each cut point: all unsynced lost, all kept, and
# random ones (a seed each)
IMAGES = ('lost', 'kept', 'random')


# --- the log ----------------------------------------------------------------

def read_log(path):
    """[(op, pid, path, path2, ino, off, data)] in log order."""
    with open(path, 'rb') as f:
        b = f.read()
    out, i = [], 0
    while i < len(b):
        magic, op, pid, pl, p2l, _pad, ino, off, ln = REC.unpack_from(b, i)
        if magic != MAGIC:
            raise SystemExit(f'{path}: bad record at byte {i}')
        i += REC.size
        p = b[i:i + pl].decode()
        i += pl
        p2 = b[i:i + p2l].decode()
        i += p2l
        out.append((op, pid, p, p2, ino, off, b[i:i + ln]))
        i += ln
    return out


def write_mark(log, obj):
    data = json.dumps(obj, sort_keys=True).encode()
    with open(log, 'ab') as f:
        f.write(REC.pack(MAGIC, MARK, os.getpid(), 0, 0, 0, 0, 0, len(data)) + data)


# --- the model of the file system -----------------------------------------

class Obj:
    """A file (an inode): its content now, what survives for sure, and
    the changes since its last fsync."""
    __slots__ = ('cur', 'dur', 'pending', 'meta_dirty')

    def __init__(self, data=b'', durable=True):
        self.cur = bytearray(data)
        self.dur = bytes(data) if durable else b''
        self.pending = []      # ('w', off, bytes) | ('t', size)
        self.meta_dirty = not durable


def apply_write(buf, off, data):
    if len(buf) < off:
        buf.extend(bytes(off - len(buf)))
    buf[off:off + len(data)] = data


def apply_trunc(buf, size):
    if len(buf) > size:
        del buf[size:]
    else:
        buf.extend(bytes(size - len(buf)))


class FS:
    """The directory as the log changes it.  Names map to objects (or to
    'dir' for subdirectories); metadata changes are journaled in order and
    become durable together at a commit (an fsync of the directory, or of
    a file whose size or existence changed since it was last synced)."""

    def __init__(self, snapshot_dir, manifest):
        self.objs = {}
        self.by_ino = {}
        self.names = {}
        for name, ino in manifest.items():
            if ino == 'dir':
                self.names[name] = 'dir'
                continue
            with open(os.path.join(snapshot_dir, name), 'rb') as f:
                o = Obj(f.read())
            oid = len(self.objs)
            self.objs[oid] = o
            self.by_ino[ino] = oid
            self.names[name] = oid
        self.committed = dict(self.names)
        self.meta = []          # unsynced metadata ops since the last commit

    def commit(self):
        self.committed = dict(self.names)
        self.meta = []

    def obj(self, ino, rec):
        if ino not in self.by_ino:
            raise RuntimeError(f'not modelled: {OPNAME[rec[0]]} of {rec[2]} '
                               f'(inode {ino} not seen created)')
        return self.objs[self.by_ino[ino]]

    def apply(self, rec):
        op, _pid, p, p2, ino, off, data = rec
        if op == CREATE:
            cur = self.names.get(p)
            if isinstance(cur, int) and self.by_ino.get(ino) == cur:
                return  # an existing file opened with O_CREAT
            oid = len(self.objs)
            self.objs[oid] = Obj(durable=False)
            self.by_ino[ino] = oid
            self.names[p] = oid
            self.meta.append(('set', p, oid))
        elif op == WRITE:
            o = self.obj(ino, rec)
            if off + len(data) > len(o.cur):
                o.meta_dirty = True
            apply_write(o.cur, off, data)
            o.pending.append(('w', off, bytes(data)))
        elif op == TRUNC:
            o = self.obj(ino, rec)
            if len(o.cur) != off:
                o.meta_dirty = True
            apply_trunc(o.cur, off)
            o.pending.append(('t', off))
        elif op == FSYNC:
            o = self.obj(ino, rec)
            o.dur = bytes(o.cur)
            o.pending = []
            if o.meta_dirty:
                self.commit()
            o.meta_dirty = False
        elif op == DIRSYNC:
            self.commit()
        elif op == SFR:
            pass  # sync_file_range promises nothing
        elif op in (RENAME, LINK):
            src = self.names.get(p)
            if src is None:
                raise RuntimeError(f'not modelled: {OPNAME[op]} of unknown {p}')
            self.names[p2] = src
            self.meta.append(('set', p2, src))
            if op == RENAME:
                del self.names[p]
                self.meta.append(('del', p, None))
        elif op in (UNLINK, RMDIR):
            self.names.pop(p, None)
            self.meta.append(('del', p, None))
        elif op == MKDIR:
            self.names[p] = 'dir'
            self.meta.append(('set', p, 'dir'))

    def image(self, mode, rng):
        """{name: bytes or 'dir'} of a power cut now."""
        names = dict(self.committed)
        if mode == 'kept':
            keep = len(self.meta)
        elif mode == 'lost':
            keep = 0
        else:
            keep = rng.randint(0, len(self.meta))
        for kind, name, oid in self.meta[:keep]:
            if kind == 'set':
                names[name] = oid
            else:
                names.pop(name, None)
        out = {}
        for name, oid in names.items():
            if oid == 'dir':
                out[name] = 'dir'
                continue
            o = self.objs[oid]
            if mode == 'kept':
                out[name] = bytes(o.cur)
            elif mode == 'lost' or not o.pending:
                out[name] = o.dur
            else:
                out[name] = torn(o, rng)
        return out


def torn(o, rng):
    """The durable content with a random part of the unsynced changes:
    each truncate kept or not, each 512-byte sector of each write kept or
    not, independently (so later writes may survive without earlier ones)."""
    buf = bytearray(o.dur)
    p = rng.choice((0.2, 0.5, 0.8))
    for ch in o.pending:
        if ch[0] == 't':
            if rng.random() < p:
                apply_trunc(buf, ch[1])
            continue
        _, off, data = ch
        pos, end = off, off + len(data)
        while pos < end:
            nxt = min(end, (pos // SECTOR + 1) * SECTOR)
            if rng.random() < p:
                apply_write(buf, pos, data[pos - off:nxt - off])
            pos = nxt
    return bytes(buf)


def image_key(img):
    h = hashlib.sha1()
    for name in sorted(img):
        if name.endswith('-shm'):
            continue  # reset by SQLite when the first process opens the store
        v = img[name]
        h.update(name.encode() + b'\0')
        h.update(b'D' if v == 'dir' else hashlib.sha1(v).digest())
    return h.hexdigest()


# --- workloads --------------------------------------------------------------

def env_for(live, ext):
    e = dict(os.environ)
    e['CQRS_STORE'] = os.path.join(live, 'events.db')
    e['CQRS_VIEWS'] = os.path.join(live, 'views.db')
    e['PAYMENT_GATEWAY_DIR'] = os.path.join(ext, 'pg')
    e['SHIPPING_LABEL_DIR'] = os.path.join(ext, 'sl')
    e['CQRS_BUSY_TIMEOUT'] = '20000'
    for k in ('CQRS_POWERCUT_DIR', 'CQRS_POWERCUT_LOG', 'LD_PRELOAD'):
        e.pop(k, None)
    return e


def order_cmd(n, qty=2, cid=None):
    oid = '00000000-0000-4000-8000-%012d' % n
    return json.dumps({
        'command_id': cid or f'create-{n}', 'type': 'CreateOrder', 'order_id': oid,
        'correlation_id': f'order-{n}', 'customer_id': f'cust-{n % 3}',
        'items': [{'product_id': PRODUCT, 'quantity': qty, 'unit_price': 29.99}],
        'currency': 'USD',
        'shipping_address': {'name': 'Ada', 'street': '1 Main St', 'city': 'Springfield',
                             'postal_code': '12345', 'country': 'US'}})


def oid(n):
    return '00000000-0000-4000-8000-%012d' % n


def ev(agg, batch, i, pad=0):
    d = {'batch': batch, 'i': i}
    if pad:
        d['pad'] = 'x' * pad
    return json.dumps({'aggregate_id': agg, 'aggregate_type': 'Ledger',
                       'event_type': 'EntryNoted', 'data': d,
                       'metadata': {'correlation_id': f'batch-{batch}'}})


def workload(name, rng, quick):
    """(setup steps, recorded steps, flags).  A step: (argv, stdin text)."""
    setup, steps = [], []
    flags = {'atomic': name in ('append', 'command'), 'views': name == 'project',
             'saga': name == 'saga'}
    reg = (['cqrs-command', '-q', 'register-product', '--product', PRODUCT, '--sku', 'SKU-1',
            '--name', 'Widget', '--quantity', '1000'], '')
    if name == 'append':
        # from an empty directory: the store, its log and witness created
        n = 3 if quick else rng.randint(8, 14)
        agg = ['%08x-0000-4000-8000-%012d' % (a, a) for a in range(1, 4)]
        for b in range(1, n + 1):
            big = not quick and b % 3 == 0
            count = rng.randint(200, 350) if big else rng.randint(1, 3)
            pad = 900 if big else rng.choice((0, 20, 300))
            text = ''.join(ev(rng.choice(agg), b, i, pad) + '\n' for i in range(count))
            steps.append((['cqrs-append', '--quiet'], text))
    elif name == 'command':
        setup.append(reg)
        n = 2 if quick else rng.randint(6, 10)
        for i in range(1, n + 1):
            steps.append((['cqrs-command', '-q', '--snapshot-every', '2'], order_cmd(i) + '\n'))
            if rng.random() < 0.6:
                steps.append((['cqrs-command', '-q', '--snapshot-every', '2', 'confirm-order',
                               '--order', oid(i)], ''))
            if i % 3 == 0:
                steps.append((['cqrs-command', '-q', 'cancel-order', '--order', oid(i - 1),
                               '--reason', 'changed mind'], ''))
        if not quick:
            text = ''.join(order_cmd(100 + i) + '\n' for i in range(rng.randint(3, 8)))
            steps.append((['cqrs-command', '-q'], text))
    elif name == 'project':
        setup.append(reg)
        setup.append((['cqrs-command', '-q'], order_cmd(1) + '\n' + order_cmd(2) + '\n'))
        steps.append((['cqrs-project'], ''))
        rounds = 1 if quick else rng.randint(2, 3)
        for r in range(rounds):
            base = 10 * (r + 1)
            text = ''.join(order_cmd(base + i) + '\n' for i in range(rng.randint(1, 3)))
            steps.append((['cqrs-command', '-q'], text))
            steps.append((['cqrs-command', '-q', 'confirm-order', '--order', oid(base)], ''))
            steps.append((['cqrs-project', '--wait', '-b', str(rng.choice((1, 2, 100)))], ''))
            if r == 0:
                steps.append((['cqrs-project', '--rebuild'], ''))
            steps.append((['cqrs-project', '-o', 'HIST', '--to', 'HEAD'], ''))
    elif name == 'saga':
        setup.append(reg)
        n = 1 if quick else rng.randint(2, 3)
        setup.append((['cqrs-command', '-q'], ''.join(order_cmd(i) + '\n' for i in range(1, n + 1))))
        steps.append((['cqrs-saga', 'run', '--wait'], ''))
        if not quick:
            steps.append((['cqrs-command', '-q'], order_cmd(50) + '\n'))
            steps.append((['cqrs-command', '-q', 'cancel-order', '--order', oid(1),
                           '--reason', 'changed mind'], ''))
            steps.append((['cqrs-saga', 'run', '--wait', '-b', '1'], ''))
    return setup, steps, flags


def run(argv, env, stdin='', check=True):
    p = subprocess.run(argv, input=stdin.encode(), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError(f'{" ".join(argv)}: exit {p.returncode}: {p.stderr.decode()}')
    return p


def read_events(env, check=True):
    p = run(['cqrs-read'], env, check=check)
    return p, [json.loads(x) for x in p.stdout.decode().splitlines() if x]


def record(name, wseed, quick, lib, work):
    """Runs one workload under the recorder in work/: snap/ (the directory
    before), manifest.json, log, info.json."""
    rng = random.Random(f'{name}:{wseed}')
    live, ext, snap = (os.path.join(work, d) for d in ('live', 'ext', 'snap'))
    for d in (live, ext):
        os.makedirs(d)
    env = env_for(live, ext)
    setup, steps, flags = workload(name, rng, quick)
    for argv, stdin in setup:
        run(argv, env, stdin)
    head0 = [0, None]
    if setup:
        _, evs = read_events(env)
        head0 = [evs[-1]['sequence'], evs[-1]['hash']]
    shutil.copytree(live, snap)
    manifest = {}
    for root, dirs, files in os.walk(live):
        for d in dirs:
            manifest[os.path.relpath(os.path.join(root, d), live)] = 'dir'
        for f in files:
            full = os.path.join(root, f)
            manifest[os.path.relpath(full, live)] = os.stat(full).st_ino
    log = os.path.join(work, 'log')
    renv = dict(env)
    renv.update(CQRS_POWERCUT_DIR=live, CQRS_POWERCUT_LOG=log, LD_PRELOAD=lib)
    asan = os.environ.get('ASAN_OPTIONS')
    renv['ASAN_OPTIONS'] = (asan + ':' if asan else '') + 'verify_asan_link_order=0'
    open(log, 'wb').close()
    heads = [head0]
    for j, (argv, stdin) in enumerate(steps):
        argv = list(argv)
        hist = None
        if 'HIST' in argv:
            hist = f'history-{j}.db'
            argv[argv.index('HIST')] = os.path.join(live, hist)
            argv[argv.index('HEAD')] = str(heads[-1][0])
        write_mark(log, {'start': j, 'argv': argv})
        run(argv, renv, stdin)
        mark = {'ack': j}
        if hist:
            # what the history file answers, read from a copy (a reader
            # of the file in the directory would change its side files)
            tmp = tempfile.mkdtemp(dir=work)
            shutil.copy(os.path.join(live, hist), tmp)
            q = run(['cqrs-query', '--views', os.path.join(tmp, hist), 'orders', '-n', '1000'], env)
            shutil.rmtree(tmp)
            mark['history'] = hist
            mark['answer'] = q.stdout.decode()
        write_mark(log, mark)
        # the head after the step, read under the recorder too: a reader
        # is part of the run like any other process
        _, evs = read_events(renv)
        heads.append([evs[-1]['sequence'], evs[-1]['hash']] if evs else [0, None])
        write_mark(log, {'head': j, 'at': heads[-1]})
    _, evs = read_events(renv)
    info = {'workload': name, 'wseed': wseed, 'quick': quick, 'flags': flags,
            'heads': heads, 'final': {str(e['sequence']): e['hash'] for e in evs},
            'steps': [a for a, _ in steps]}
    with open(os.path.join(work, 'manifest.json'), 'w') as f:
        json.dump(manifest, f)
    with open(os.path.join(work, 'info.json'), 'w') as f:
        json.dump(info, f)
    shutil.rmtree(live)


# --- checks -----------------------------------------------------------------

class Failure(Exception):
    pass


def write_image(img, d):
    for name in sorted(img, key=lambda n: n.count('/')):
        v = img[name]
        path = os.path.join(d, name)
        if v == 'dir':
            os.makedirs(path, mode=0o700, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'wb') as f:
                f.write(v)


def stored(store):
    if not os.path.exists(store):
        return []
    db = sqlite3.connect(store)
    try:
        rows = db.execute('SELECT sequence, lower(hex(hash)), event_type, aggregate_type,'
                          ' lower(hex(aggregate_id)), correlation_id FROM events'
                          ' ORDER BY sequence').fetchall()
    except sqlite3.OperationalError:
        rows = []  # an empty file: no store yet
    finally:
        db.close()
    return [{'sequence': r[0], 'hash': r[1], 'event_type': r[2], 'aggregate_type': r[3],
             'aggregate_id': r[4], 'metadata': {'correlation_id': r[5]}} for r in rows]


def check_image(d, ext, info, state):
    """Recovers the image in d as a user would and checks it.  state: what
    had been acknowledged at the cut.  Raises Failure."""
    env = env_for(d, ext)
    flags = info['flags']
    final = info['final']
    acked = state['acked']          # step numbers acknowledged
    started = state['started']      # steps started (acknowledged or not)
    heads = info['heads']
    acked_head = heads[max(acked) + 1] if acked else heads[0]
    store = os.path.join(d, 'events.db')
    # the witness as the cut left it, before anything opens the store
    witness = None
    wpath = store + '.witness'
    if os.path.exists(wpath):
        raw = open(wpath, 'rb').read().rstrip(b'\0\n')
        if raw:
            try:
                witness = json.loads(raw)
            except ValueError:
                raise Failure(f'the witness is not JSON after the cut: {raw!r}')
    p = run(['cqrs-read', '--verify'], env, check=False)
    if p.returncode == 66 and acked_head[0] == 0:
        pass  # no store yet, and nothing acknowledged
    elif p.returncode != 0:
        raise Failure(f'cqrs-read --verify: exit {p.returncode}: {p.stderr.decode().strip()}')
    # the events, read in this process (cqrs-read --verify checked them)
    evs = stored(store)
    head = evs[-1]['sequence'] if evs else 0
    for i, e in enumerate(evs):
        if e['sequence'] != i + 1:
            raise Failure(f'sequence {e["sequence"]} at position {i + 1}')
    if head < acked_head[0]:
        raise Failure(f'acknowledged events lost: the store ends at {head}, '
                      f'step {max(acked)} was acknowledged at sequence {acked_head[0]}')
    if head and final.get(str(head)) != evs[-1]['hash']:
        raise Failure(f'event {head} is not the one the run wrote')
    if flags['atomic']:
        bounds = {h[0] for h in heads[:len(started) + 1]}
        if head not in bounds:
            raise Failure(f'half a batch: the store ends at {head}, between the ends of '
                          f'steps {sorted(bounds)}')
    if witness is not None:
        ws = witness.get('sequence')
        if not isinstance(ws, int) or ws > head or final.get(str(ws)) != witness.get('hash'):
            raise Failure(f'the witness leads the store: {witness} with the store at {head}')
    # one more event, as the next user would append
    p = run(['cqrs-append', '--quiet'], env,
            ev('99999999-0000-4000-8000-000000000099', 'after', 0) + '\n', check=False)
    if p.returncode != 0:
        raise Failure(f'cqrs-append after the cut: exit {p.returncode}: '
                      f'{p.stderr.decode().strip()}')
    if flags['views']:
        for ack in state['history']:
            h = os.path.join(d, ack['history'])
            if not os.path.exists(h):
                raise Failure(f'acknowledged history file {ack["history"]} lost')
            q = run(['cqrs-query', '--views', h, 'orders', '-n', '1000'], env, check=False)
            if q.returncode != 0 or q.stdout.decode() != ack['answer']:
                raise Failure(f'history file {ack["history"]} differs from what was '
                              f'acknowledged: exit {q.returncode}: {q.stderr.decode().strip()}')
        p = run(['cqrs-project', '--wait'], env, check=False)
        if p.returncode != 0:
            raise Failure(f'cqrs-project after the cut: exit {p.returncode}: '
                          f'{p.stderr.decode().strip()}')
        p = run(['cqrs-project', '--diff'], env, check=False)
        if p.returncode != 0:
            raise Failure(f'cqrs-project --diff: the views differ from a rebuild: exit '
                          f'{p.returncode}: {p.stdout.decode().strip()} '
                          f'{p.stderr.decode().strip()}')
    if flags['saga']:
        p = run(['cqrs-saga', 'run', '--wait'], env, check=False)
        if p.returncode != 0:
            raise Failure(f'cqrs-saga run after the cut: exit {p.returncode}: '
                          f'{p.stderr.decode().strip()}')
        db = sqlite3.connect(store)
        done = dict(db.execute('SELECT correlation_id, status FROM saga_instances'))
        db.close()
        evs = stored(store)
        created = {e['metadata'].get('correlation_id') for e in evs
                   if e['event_type'] == 'OrderCreated'}
        for c in sorted(created):
            if done.get(c) not in ('COMPLETED', 'FAILED'):
                raise Failure(f'saga of {c} did not finish after a re-run: {done.get(c)}')
        seen = {}
        for e in evs:
            if e['aggregate_type'] == 'Saga':
                continue
            k = (e['metadata'].get('correlation_id'), e['aggregate_id'], e['event_type'])
            seen[k] = seen.get(k, 0) + 1
            if seen[k] > 1 and e['event_type'] not in ('StockReplenished',):
                raise Failure(f'step effect twice: {e["event_type"]} of {k[0]}')


# --- the sweep ----------------------------------------------------------------

def ack_state(marks):
    st = {'acked': [], 'started': [], 'history': []}
    for m in marks:
        if 'start' in m:
            st['started'].append(m['start'])
        elif 'ack' in m:
            st['acked'].append(m['ack'])
            if 'history' in m:
                st['history'].append(m)
    return st


def image_seed(seed, name, wseed, k, i):
    return f'{seed}:{name}:{wseed}:{k}:{i}'


def gen_images(work, seed, points=None, only=None):
    """Yields (k, i, mode, img, state, desc) for the cut points of a
    recorded workload (all, or those in points; only: (k, i))."""
    info = json.load(open(os.path.join(work, 'info.json')))
    manifest = json.load(open(os.path.join(work, 'manifest.json')))
    fs = FS(os.path.join(work, 'snap'), manifest)
    recs = read_log(os.path.join(work, 'log'))
    marks, k, last = [], 0, None
    ops = [r for r in recs if r[0] != MARK]
    total = len(ops)

    def emit_point():
        if points is not None and k not in points:
            return
        st = ack_state(marks)
        for i, mode in enumerate(IMAGES):
            if only is not None:
                if (k, i) != only:
                    continue
            elif i and i != 1 + k % 2:
                continue  # all lost at every point, then all kept or random in turn
            rng = random.Random(image_seed(seed, info['workload'], info['wseed'], k, i))
            img = fs.image(mode, rng)
            yield k, i, mode, img, st, last

    for r in recs:
        if r[0] == MARK:
            marks.append(json.loads(r[6]))
            continue
        yield from emit_point()
        fs.apply(r)
        last = f'{OPNAME[r[0]]} {r[2]}{" -> " + r[3] if r[3] else ""} ' \
               f'(pid {r[1]}{", %d bytes at %d" % (len(r[6]), r[5]) if r[0] == WRITE else ""})'
        k += 1
    yield from emit_point()
    return total


def coverage(work):
    """{'file kind': {op: count}} of a recorded run (numbers in names as N)."""
    import re
    cov = {}
    for r in read_log(os.path.join(work, 'log')):
        if r[0] == MARK:
            continue
        name = re.sub(r'[0-9]+', 'N', r[2]) + (' -> ' + re.sub(r'[0-9]+', 'N', r[3])
                                                 if r[3] else '')
        ops = cov.setdefault(name, {})
        ops[OPNAME[r[0]]] = ops.get(OPNAME[r[0]], 0) + 1
    return cov


def count_points(work):
    return sum(1 for r in read_log(os.path.join(work, 'log')) if r[0] != MARK) + 1


def check_part(job):
    """One worker's share of a workload's cut points: [lo, hi).  Builds
    each image, checks it unless an identical one was checked already."""
    work, seed, want, lo, hi, tmpbase = job
    info = json.load(open(os.path.join(work, 'info.json')))
    ext = os.path.join(work, 'ext')
    pts = set(range(lo, hi)) if want is None else {k for k in want if lo <= k < hi}
    seen, images, checked, fails = {}, 0, 0, []
    for k, i, mode, img, st, last in gen_images(work, seed, pts):
        images += 1
        # the same files may pass before an acknowledgement and fail after
        key = image_key(img) + json.dumps([st['acked'], len(st['started'])])
        if key in seen:
            continue
        checked += 1
        d = tempfile.mkdtemp(prefix='img-', dir=tmpbase)
        try:
            write_image(img, d)
            check_image(d, ext, info, st)
            err = None
        except Failure as e:
            err = str(e)
        except Exception as e:  # noqa: BLE001
            err = f'internal: {e!r}'
        finally:
            shutil.rmtree(d, ignore_errors=True)
        seen[key] = err
        if err is not None:
            fails.append((k, i, mode, last, err))
    return len(pts), images, checked, fails


def sweep(a):
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    tmpbase = '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else out
    print(f'powercut: seed {seed}, at least {a.points} cut points, -j {a.jobs}', flush=True)
    names = tuple(a.workloads.split(','))
    figures = {n: {'points': 0, 'images': 0, 'checked': 0, 'failures': 0, 'runs': 0}
               for n in names}
    failures = []
    t0 = time.time()
    total_points = 0
    rnd = 0
    pool = Pool(a.jobs)
    try:
        while total_points < a.points:
            for name in names:
                wseed = seed * 1000 + rnd
                work = os.path.join(out, f'{name}-{wseed}')
                shutil.rmtree(work, ignore_errors=True)
                os.makedirs(work)
                record(name, wseed, a.quick, a.lib, work)
                n = count_points(work)
                cov = coverage(work)
                allcov = figures[name].setdefault('coverage', {})
                for fname, ops in cov.items():
                    for op, c in ops.items():
                        allcov.setdefault(fname, {})
                        allcov[fname][op] = allcov[fname].get(op, 0) + c
                want = None
                share = max(1, (a.points - total_points) // (len(names) - names.index(name)))
                if a.sample and n > share:
                    rng = random.Random(f'{seed}:{name}:{wseed}:sample')
                    want = set(rng.sample(range(n), share))
                pts = n if want is None else len(want)
                f = figures[name]
                f['points'] += pts
                f['runs'] += 1
                total_points += pts
                parts = [(work, seed, want, n * w // a.jobs, n * (w + 1) // a.jobs, tmpbase)
                         for w in range(a.jobs)]
                bad = 0
                for _, images, checked, fails in pool.imap_unordered(check_part, parts):
                    f['images'] += images
                    f['checked'] += checked
                    for k, i, mode, last, err in fails:
                        bad += 1
                        failures.append((name, work, k, i, mode, last, err))
                        f['failures'] += 1
                        cmd = (f"env PATH='{os.environ.get('PATH', '')}' "
                               f"CQRS_SHAREDIR='{os.environ.get('CQRS_SHAREDIR', '')}' "
                               f'python3 {os.path.abspath(__file__)} image --work {work} '
                               f'--point {k} --image {i} --seed {seed} '
                               f'--keep {out}/image-{name}-{k}-{i}')
                        print(f'FAIL {name} (workload seed {wseed}) cut point {k}/{n - 1} '
                              f'after {last}, image {i} ({mode}, seed {seed}): {err}\n'
                              f'  replay: {cmd}', flush=True)
                print(f'powercut: {name} #{wseed}: {pts} of {n} cut points, '
                      f'{f["images"]} images so far, {f["checked"]} distinct checked, '
                      f'{bad} failed ({time.time() - t0:.0f} s)', flush=True)
                if not bad:
                    shutil.rmtree(work, ignore_errors=True)
            rnd += 1
    finally:
        pool.close()
        pool.join()
    el = time.time() - t0
    print(f'powercut: seed {seed}: {total_points} cut points in {el:.0f} s')
    print('workload   runs  cut-points  images  distinct-checked  failures')
    for n in names:
        f = figures[n]
        print(f'{n:9} {f["runs"]:5} {f["points"]:11} {f["images"]:7} {f["checked"]:17} '
              f'{f["failures"]:9}')
    print('what the runs did to the files (calls logged, all workloads):')
    merged = {}
    for n in names:
        for fname, ops in figures[n].get('coverage', {}).items():
            for op, c in ops.items():
                merged.setdefault(fname, {})
                merged[fname][op] = merged[fname].get(op, 0) + c
    for fname in sorted(merged):
        print(f'  {fname}: ' + ', '.join(f'{op} {c}' for op, c in sorted(merged[fname].items())))
    with open(os.path.join(out, 'figures.json'), 'w') as fh:
        json.dump({'seed': seed, 'seconds': round(el), 'workloads': figures}, fh, indent=1)
    return 1 if failures else 0


def one_image(a):
    work = os.path.abspath(a.work)
    info = json.load(open(os.path.join(work, 'info.json')))
    for k, i, mode, img, st, last in gen_images(work, a.seed, {a.point}, (a.point, a.image)):
        print(f'{info["workload"]}: cut point {k} after {last}; image {i} ({mode}); '
              f'acknowledged steps {st["acked"]}')
        for name in sorted(img):
            v = img[name]
            print(f'  {name}: {"directory" if v == "dir" else "%d bytes" % len(v)}')
        d = a.keep or tempfile.mkdtemp(prefix='powercut-image-')
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        write_image(img, d)
        # keep the image as the cut left it; check a copy
        c = d + '.checked'
        shutil.rmtree(c, ignore_errors=True)
        shutil.copytree(d, c)
        try:
            check_image(c, os.path.join(work, 'ext'), info, st)
        except Failure as e:
            print(f'FAIL: {e}\n  the image: {d}; after the recovery: {c}')
            return 1
        print(f'ok; the image: {d}; after the recovery: {c}')
        return 0
    print('no such cut point')
    return 2


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('sweep')
    s.add_argument('--lib', required=True)
    s.add_argument('--points', type=int, default=10000)
    s.add_argument('--seed', type=int)
    s.add_argument('-j', '--jobs', type=int, default=2)
    s.add_argument('--out', default='powercut-out')
    s.add_argument('--quick', action='store_true', help='small workloads')
    s.add_argument('--workloads', default='append,command,project,saga')
    s.add_argument('--sample', action='store_true',
                   help='sample the cut points of a workload down to its share of --points')
    i = sub.add_parser('image')
    i.add_argument('--work', required=True)
    i.add_argument('--point', type=int, required=True)
    i.add_argument('--image', type=int, required=True)
    i.add_argument('--seed', type=int, required=True)
    i.add_argument('--keep')
    a = ap.parse_args()
    sys.exit(sweep(a) if a.cmd == 'sweep' else one_image(a))


if __name__ == '__main__':
    main()
