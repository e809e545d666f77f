# A real nats-server with JetStream for the relay's suite: loopback, a free
# port, its store in the suite's temp directory, a login required.  A suite
# that cannot start it fails with the reason; it never skips.
# shellcheck shell=bash

NATS_USER=relay
NATS_PASSWORD=s3cret-relay-pw

# nats_config: writes the server's configuration (once per suite).
nats_config() {
	NATS_DIR="$BATS_FILE_TMPDIR/nats"
	mkdir -p "$NATS_DIR/js"
	NATS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
		{ echo "relay_helper: no free port" >&2; return 1; }
	cat >"$NATS_DIR/server.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
jetstream {
    store_dir: "$NATS_DIR/js"
}
authorization {
    # seconds a client has to log in after it connects (2 by default): a
    # loaded CI machine took longer once (relay-ops, the first nkey login
    # refused, exit 77); the tests measure no time
    timeout: 20
    users: [
        { user: $NATS_USER, password: "$NATS_PASSWORD" }
        # relay ops: the nkey login (a test key pair, tests/fixtures)
        { nkey: $(cat "$CQRS_TOP_SRCDIR/tests/fixtures/relay-nkey-TEST-ONLY.pub") }
    ]
}
CONF
	export NATS_DIR NATS_PORT
}

# nats_wait PID LOG: waits until server PID writes to LOG that it is ready:
# its log, not the port, is asked, for a port someone else took between
# its choice and the bind answers too.  1 when it exited, or was not ready
# within 20 s.
nats_wait() {
	local i
	for ((i = 0; i < 400; i++)); do
		grep -q "^\[$1\] .*Server is ready" "$2" 2>/dev/null && return 0
		kill -0 "$1" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# nats_lost_port PID LOG: server PID exited because its port was taken.
nats_lost_port() {
	! kill -0 "$1" 2>/dev/null && grep -q "^\[$1\] .*address already in use" "$2"
}

# nats_start: starts the server and waits until it is ready.  A first start
# whose port was taken meanwhile tries another; a restart (the same port,
# for the clients that reconnect) fails.
nats_start() {
	command -v nats-server >/dev/null ||
		{ echo "relay_helper: nats-server is not installed (tests/debian-packages-check)" >&2; return 1; }
	local first=false try pid
	[ -n "${NATS_PORT:-}" ] || first=true
	for ((try = 0; try < 3; try++)); do
		[ -n "${NATS_PORT:-}" ] || nats_config || return 1
		nats-server -c "$NATS_DIR/server.conf" >>"$NATS_DIR/server.log" 2>&1 &
		pid=$!
		echo "$pid" >"$NATS_DIR/pid"
		nats_wait "$pid" "$NATS_DIR/server.log" && return 0
		if ! $first || ! nats_lost_port "$pid" "$NATS_DIR/server.log"; then
			break
		fi
		NATS_PORT=
	done
	echo "relay_helper: nats-server did not start on port $NATS_PORT:" >&2
	cat "$NATS_DIR/server.log" >&2
	return 1
}

# nats_stop [SIGNAL]: stops the server (TERM, or KILL for a crash).
nats_stop() {
	local pid
	pid=$(cat "$NATS_DIR/pid" 2>/dev/null) || return 0
	kill "-${1:-TERM}" "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	rm -f "$NATS_DIR/pid"
}

# relay_env: the environment every cqrs-relay of a test uses.
relay_env() {
	export CQRS_NATS_URL="nats://127.0.0.1:$NATS_PORT"
	export CQRS_NATS_USER=$NATS_USER CQRS_NATS_PASSWORD=$NATS_PASSWORD
}

# nats_pub SUBJECT FILE: publishes FILE's first line as a plain message
# (no relay, no headers), as a stranger on the server would.
nats_pub() {
	python3 - "$NATS_PORT" "$NATS_USER" "$NATS_PASSWORD" "$1" "$2" <<'PY'
import socket, sys
port, user, pw, subject, path = sys.argv[1:]
body = open(path, "rb").read().split(b"\n")[0]
s = socket.create_connection(("127.0.0.1", int(port)))
s.recv(4096)
s.sendall(('CONNECT {"user":"%s","pass":"%s","verbose":false}\r\nPUB %s %d\r\n'
           % (user, pw, subject, len(body))).encode() + body + b"\r\nPING\r\n")
reply = b""
while b"PONG" not in reply and b"-ERR" not in reply:
    reply += s.recv(4096)
sys.exit(0 if b"PONG" in reply else 1)
PY
}

# nats_msg_get STREAM SEQ: the stream's message SEQ as one line,
# "SUBJECT<TAB>HEADERS" (headers sorted, joined by "|"), from the JetStream API.
nats_msg_get() {
	python3 - "$NATS_PORT" "$NATS_USER" "$NATS_PASSWORD" "$1" "$2" <<'PY'
import base64, json, socket, sys
port, user, pw, stream, seq = sys.argv[1:]
s = socket.create_connection(("127.0.0.1", int(port)))
s.recv(4096)
req = json.dumps({"seq": int(seq)}).encode()
s.sendall(('CONNECT {"user":"%s","pass":"%s","verbose":false,"headers":true}\r\n'
           'SUB _INBOX.relay.test 1\r\nPUB $JS.API.STREAM.MSG.GET.%s _INBOX.relay.test %d\r\n'
           % (user, pw, stream, len(req))).encode() + req + b"\r\n")
buf = b""
while True:
    buf += s.recv(65536)
    i = buf.find(b"MSG _INBOX.relay.test")
    if i < 0:
        continue
    end = buf.find(b"\r\n", i)
    if end < 0:
        continue
    size = int(buf[i:end].split()[-1])
    if len(buf) >= end + 2 + size:
        body = json.loads(buf[end + 2:end + 2 + size])
        break
m = body["message"]
hdrs = base64.b64decode(m.get("hdrs", "")).decode().split("\r\n")
print(m["subject"] + "\t" + "|".join(sorted(h for h in hdrs[1:] if h)))
PY
}

# Each relay test's teardown: the PostgreSQL cluster of a test that started
# one, and what a failed test left in the background (the server stays).
relay_test_teardown() {
	! declare -F pg_stop >/dev/null || pg_stop
	local pid server
	server=$(cat "$NATS_DIR/pid" 2>/dev/null)
	for pid in $(jobs -p); do
		[ "$pid" = "$server" ] || kill -9 "$pid" 2>/dev/null || true
	done
}
