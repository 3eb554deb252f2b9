#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
# The hostile neighbours of Scripts/bench --hostile-only, run as user nobody: fake QEMU monitors
# (silent, streaming without end, a histogram of 1.5 M buckets with a 2^63 exponent, a stream
# of short-lived ones with 2,000 new statistic names each, an impostor naming a real guest's
# monitor, a guest name with CR LF) and an HTTP client holding connections to the endpoint.
# It only serves and connects on this machine (unix sockets, 127.0.0.1) and ends after SECONDS.
import json, os, socket, subprocess, sys, threading, time

def monitor(path, behaviour):
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    os.chmod(path, 0o777)
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, behaviour), daemon=True).start()

def serve(c, behaviour):
    try:
        if behaviour == 'silent':
            time.sleep(3600)
        c.sendall(b'{"QMP": {"version": {}}}\n')
        while True:
            line = c.makefile().readline()
            if not line:
                return
            command = json.loads(line).get('execute')
            if behaviour == 'stream' and command != 'qmp_capabilities':
                while True:
                    c.sendall(b'{"event": "X", "data": {}}\n' * 1000)
            if command == 'query-stats-schemas':
                stats = [{'name': 'exits', 'type': 'cumulative'}]
                if behaviour == 'names':
                    stats += [{'name': 'fake_%d_%d' % (os.getpid(), i), 'type': 'cumulative'} for i in range(2000)]
                if behaviour == 'bomb':
                    stats.append({'name': 'bomb_hist', 'type': 'log2-histogram', 'unit': 'seconds',
                                  'base': 2, 'exponent': -(2 ** 63)})
                answer = [{'provider': 'kvm', 'target': 'vm', 'stats': stats}]
            elif command == 'query-cpus-fast':
                answer = []
            elif command == 'query-stats':
                values = [{'name': 'exits', 'value': 1}]
                if behaviour == 'names':
                    values += [{'name': 'fake_%d_%d' % (os.getpid(), i), 'value': i} for i in range(2000)]
                if behaviour == 'bomb':
                    values.append({'name': 'bomb_hist', 'value': [1] * 1500000})
                answer = [{'provider': 'kvm', 'stats': values}]
            else:
                answer = {}
            c.sendall((json.dumps({'return': answer}) + '\n').encode())
    except OSError:
        pass

def fake(directory, behaviour, name, seconds):
    path = os.path.join(directory, behaviour + '-' + str(time.monotonic_ns()) + '.sock')
    return subprocess.Popen([sys.executable, __file__, 'serve', behaviour, '-qmp', 'unix:%s,server=on,wait=off' % path,
                             '-name', 'guest=' + name])

def hold_connections(port, seconds):
    held = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(20):
            try:
                c = socket.create_connection(('127.0.0.1', port), timeout=1)
                c.sendall(b'GET / HTTP/1.0\r\n\r\n')
                held.append(c)
            except OSError:
                pass
        if len(held) > 600:
            for c in held[:300]:
                c.close()
            del held[:300]
        time.sleep(0.1)

if __name__ == '__main__':
    if sys.argv[1] == 'serve':
        behaviour = sys.argv[2]
        path = sys.argv[sys.argv.index('-qmp') + 1][5:].split(',')[0]
        monitor(path, behaviour)
        sys.exit(0)
    directory, real_socket, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    # Whatever ends us ends our monitors too (they run in our process group: the bench kills it).
    import signal
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
    end = time.monotonic() + seconds
    procs = [fake(directory, b, 'hostile-' + b, seconds) for b in ['silent', 'silent', 'silent', 'stream', 'bomb']]
    procs.append(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(%d)' % seconds,
                                   '-qmp', 'unix:%s,server=on,wait=off' % real_socket, '-name', 'guest=impostor']))
    procs.append(fake(directory, 'plain', 'x\r\nkvm_fake_total 1\r\n# ', seconds))
    threading.Thread(target=hold_connections, args=(port, seconds), daemon=True).start()
    churn = []
    while time.monotonic() < end:
        churn.append(fake(directory, 'names', 'churn', seconds))
        time.sleep(5)
        while len(churn) > 2:
            churn.pop(0).kill()
    for p in procs + churn:
        p.kill()
