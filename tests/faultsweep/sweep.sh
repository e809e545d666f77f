#!/bin/bash
# The allocation and I/O failure sweep (tests/faultsweep/README).
#
# usage: sweep.sh [-k alloc|io|all] [-s STRIDE] [-f FIRST] [-r COUNT] [-p N] [-K] [-V EVERY]
#                 [-w DIR] [SCENARIO...]
#   -k  which failures: alloc, io or all (default all)
#   -s  sweep every STRIDE-th point only (default 1: every point)
#   -f  begin at point FIRST (default 1: a long sweep taken up again)
#   -r  sweep COUNT points drawn at random (seeded by CQRS_SWEEP_SEED) instead
#   -p  sweep the one point N (a replay); with -K the point's folder stays
#   -V  run every EVERY-th point swept under valgrind (definite leaks fail)
#   -w  work folder (default: a new one under TMPDIR, removed at the end)
# Scenarios (default all): append command project query-orders query-order
# query-sql saga read-verify read.
# The tools are taken from PATH; the injector from CQRS_SWEEP_LIB or
# $CQRS_TOP_BUILDDIR/tests/faultsweep/libsweep.so.  Exit 0 when every point
# held, 1 when one did not (each is listed with the command that replays it).
set -u
shopt -s extglob
export LC_ALL=C TZ=UTC

here=$(cd "$(dirname "$0")" && pwd)
LIB=${CQRS_SWEEP_LIB:-${CQRS_TOP_BUILDDIR:-$here/../..}/tests/faultsweep/libsweep.so}
LIB=$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")
SHARE=${CQRS_SHAREDIR:-$here/../../share}
export CQRS_SHAREDIR=$SHARE
export CQRS_SAGA_NOW=2026-03-01T12:00:00Z
# nothing else uses the sweep's stores: a lock that fails is the injected
# one, and waiting 5 s for it to pass only slows the sweep
export CQRS_BUSY_TIMEOUT=${CQRS_BUSY_TIMEOUT:-100}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=1:exitcode=99"

kinds="alloc io" stride=1 begin=1 random=0 point=0 keep=0 vg_every=0 work=""
while getopts k:s:f:r:p:KV:w: opt; do
	case $opt in
	k) case $OPTARG in all) kinds="alloc io" ;; alloc | io) kinds=$OPTARG ;; *) exit 64 ;; esac ;;
	s) stride=$OPTARG ;;
	f) begin=$OPTARG ;;
	r) random=$OPTARG ;;
	p) point=$OPTARG ;;
	K) keep=1 ;;
	V) vg_every=$OPTARG ;;
	w) work=$OPTARG ;;
	*) sed -n '3,17s/^# \{0,1\}//p' "$0" >&2; exit 64 ;;
	esac
done
shift $((OPTIND - 1))
scenarios=${*:-append command project query-orders query-order query-sql saga read-verify read}
[ -f "$LIB" ] || { echo "sweep: no injector at $LIB (make tests/faultsweep/libsweep.so)" >&2; exit 66; }
if [ -z "$work" ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/faultsweep.XXXXXX")
	[ "$keep" = 1 ] || trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
W=$(cd "$work" && pwd)
FAILS=$W/failures.txt
: >"$FAILS"

P=3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a
O1=00000000-0000-4000-8000-000000000001
PAY=00000000-0000-4000-8000-0000000000a1
AGG=11111111-1111-4111-8111-111111111111

# --- inputs and fixtures (built once, without injection) --------------------
mkdir -p "$W/in" "$W/fx"
for i in 1 2 3; do
	printf '{"event_id":"aaaaaaaa-0000-4000-8000-00000000000%d","aggregate_id":"%s","aggregate_type":"Order","event_type":"OrderNoted","data":{"n":%d,"note":"sweep"},"timestamp":"2026-03-01T12:00:0%d.000000Z"}\n' "$i" "$AGG" "$i" "$i"
done >"$W/in/events.ndjson"
order_cmd() { # n quantity
	printf '{"command_id":"create-%s","type":"CreateOrder","order_id":"00000000-0000-4000-8000-%012d","correlation_id":"order-%s","customer_id":"cust-42","items":[{"product_id":"%s","quantity":%s,"unit_price":29.99}],"currency":"USD","shipping_address":{"name":"Ada","street":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}\n' \
		"$1" "$1" "$1" "$P" "$2"
}
{
	order_cmd 1 2
	printf '{"command_id":"c2","type":"ReserveInventory","product_id":"%s","order_id":"%s","quantity":2}\n' "$P" "$O1"
	printf '{"command_id":"c3","type":"ConfirmOrder","order_id":"%s"}\n' "$O1"
	printf '{"command_id":"c4","type":"ConfirmPayment","order_id":"%s","payment_id":"%s","amount":59.98,"currency":"USD"}\n' "$O1" "$PAY"
	printf '{"command_id":"c5","type":"ShipOrder","order_id":"%s","carrier":"FedEx","tracking_number":"TRK1","shipped_at":"2026-03-01T12:00:00Z"}\n' "$O1"
} >"$W/in/commands.ndjson"
{ order_cmd 1 2; order_cmd 2 200; } >"$W/in/orders.ndjson"
cp "$here/saga.yaml" "$W/in/saga.yaml"

fixture() { # name: builds $W/fx/name from the steps that follow
	local d=$W/fx/$1
	shift
	rm -rf "$d" && mkdir -p "$d"
	(cd "$d" && export CQRS_STORE=$d/store.db CQRS_VIEWS=$d/views.db && "$@") >/dev/null ||
		{ echo "sweep: cannot build the fixture $d" >&2; exit 70; }
	rm -f "$d"/*-shm
}
fx_base() { cqrs-command -q register-product --product "$P" --sku SKU-1 --name Widget --quantity 100; }
fx_shipped() { fx_base && cqrs-command -q "$W/in/commands.ndjson"; }
fx_views() { fx_shipped && cqrs-project; }
fx_orders() { fx_base && cqrs-command -q "$W/in/orders.ndjson"; }
fixture base fx_base
fixture shipped fx_shipped
fixture views fx_views
fixture orders fx_orders

# --- scenarios: tool, fixture, what it writes, argv ----------------------------
scenario() {
	S=$1 BATCH=0
	case $1 in
	append) TOOL=cqrs-append FX=base WRITES=store BATCH=3 ARGV=(cqrs-append -q "$W/in/events.ndjson") ;;
	command) TOOL=cqrs-command FX=base WRITES=store ARGV=(cqrs-command -q "$W/in/commands.ndjson") ;;
	project) TOOL=cqrs-project FX=shipped WRITES=views ARGV=(cqrs-project) ;;
	query-orders) TOOL=cqrs-query FX=views WRITES=none ARGV=(cqrs-query orders) ;;
	query-order) TOOL=cqrs-query FX=views WRITES=none ARGV=(cqrs-query order "$O1") ;;
	query-sql) TOOL=cqrs-query FX=views WRITES=none ARGV=(cqrs-query sql "SELECT order_id, status, total FROM order_views ORDER BY order_id") ;;
	saga) TOOL=cqrs-saga FX=orders WRITES=store ARGV=(cqrs-saga run -f "$W/in/saga.yaml") ;;
	read-verify) TOOL=cqrs-read FX=shipped WRITES=none ARGV=(cqrs-read --verify) ;;
	read) TOOL=cqrs-read FX=shipped WRITES=none ARGV=(cqrs-read) ;;
	*) echo "sweep: unknown scenario $1" >&2; exit 64 ;;
	esac
}

# the exit statuses each tool's page documents (cqrs-saga: those of cqrs(7))
documented() {
	case $1 in
	cqrs-append) echo "0 3 6 7 64 65 66 70 71 73 74 75 77 78" ;;
	cqrs-command) echo "0 1 3 4 6 7 64 65 66 70 71 73 74 75 77 78" ;;
	cqrs-project) echo "0 1 5 6 7 64 65 66 70 71 73 74 75 77 78" ;;
	cqrs-query) echo "0 1 7 64 65 66 70 71 74 75 77 78" ;;
	cqrs-read) echo "0 1 6 7 64 65 66 70 71 73 74 75 77 78" ;;
	cqrs-saga) echo "0 1 3 4 5 6 7 64 65 66 69 70 71 73 74 75 77 78" ;;
	esac
}
# what a failure of this kind may end with: 0 when it was absorbed, 71 out
# of memory; an I/O failure also 73 cannot open, 74 I/O, 75 busy (a failed
# lock), 77 permission (a failed open)
expected() {
	case $1 in
	alloc) echo "0 71" ;;
	io) echo "0 71 73 74 75 77" ;;
	esac
}
has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }

# --- the state a run leaves, in forms that compare ---------------------------
# generated ids (v7) and wall-clock times are masked, and so are the
# ciphertexts of personal fields (their nonces derive from the generated
# event id; cqrs-erase(1)); saga events are keyed by their correlation id,
# every stream is in version order
mask() { sed -E 's/[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}/<id>/g; s/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z/<time>/g; s/"ct":"[^"]*"/"ct":"<ct>"/g'; }
# one sqlite3 process: the store's streams and saga rows, then (when the
# views exist) every table of the views, read-only
state_sql() { # dir
	printf '%s\n' "SELECT aggregate_type, CASE aggregate_type WHEN 'Saga' THEN json_extract(metadata, '\$.correlation_id') ELSE aggregate_id END AS a, aggregate_version, event_type, data FROM event_log ORDER BY 1, 2, 3;" \
		"SELECT correlation_id, status, current_step, attempts, outcome FROM saga_instances ORDER BY 1;" \
		"SELECT '== events ' || count(*) FROM event_log;"
	if [ -f "$1/views.db" ]; then
		printf '%s\n' "ATTACH 'file:$1/views.db?mode=ro' AS v;"
		local t
		for t in $VIEW_TABLES; do
			printf '%s\n' "SELECT '== $t'; SELECT * FROM v.\"$t\" ORDER BY 1;"
		done
	else
		echo "SELECT '== no views';"
	fi
}
state() { sqlite3 -batch -readonly "$1/store.db" <<<"$(state_sql "$1")" 2>&1 | mask; }

# a point's folder: the fixture copied, the tool's environment
setup_point() { # dir
	rm -rf "$1" && cp -a "$W/fx/$FX" "$1"
}
in_point() { # dir argv...: runs argv in the point's folder without injection
	local d=$1
	shift
	(cd "$d" && CQRS_STORE=$d/store.db CQRS_VIEWS=$d/views.db "$@")
}

# the clean run of a scenario: N_max and the outcomes to compare against
clean_run() {
	local d=$W/clean-$S
	setup_point "$d"
	VIEW_TABLES=$(sqlite3 -batch "$W/fx/views/views.db" "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")
	PRE=$(state "$d")
	PRE_COUNT=$(sed -n 's/^== events //p' <<<"$PRE")
	(cd "$d" && CQRS_STORE=$d/store.db CQRS_VIEWS=$d/views.db CQRS_SWEEP_LOG=$d/inject.log \
		LD_PRELOAD=$LIB "${ARGV[@]}" </dev/null >"$d/out" 2>"$d/err")
	local rc=$?
	if [ $rc != 0 ]; then
		echo "sweep: $S: the clean run failed ($rc): $(cat "$d/err")" >&2
		exit 70
	fi
	CLEAN_OUT=$d/out
	read -r _ NA NI < <(sed -n 's/^count alloc=\([0-9]*\) io=\([0-9]*\)$/x \1 \2/p' "$d/inject.log" | tail -1)
	CLEAN=$(state "$d")
	# a second clean run, as the re-run after a point is: its outcome
	in_point "$d" "${ARGV[@]}" </dev/null >"$d/out2" 2>&1 || { echo "sweep: $S: a second clean run fails" >&2; exit 70; }
	RERUN=$(state "$d")
	[ "$CLEAN" = "$RERUN" ] || echo "sweep: $S: note: a second clean run changes the store or views" >&2
}

replay_cmd() { # kind n
	printf '%s/sweep.sh -k %s -p %s -K %s' "$here" "$1" "$2" "$S"
}

fail() { # kind n reason
	local d=$W/pt
	{
		printf 'FAIL %s %s %s: %s\n' "$S" "$1" "$2" "$3"
		printf '  injected: %s\n' "$(grep -v '^count' "$d/inject.log" 2>/dev/null | head -1)"
		printf '  exit %s; stderr: %s\n' "$RC" "$(head -c 600 "$d/err" | tr '\n' '|')"
		printf '  replay: %s\n' "$(replay_cmd "$1" "$2")"
	} | tee -a "$FAILS" >&2
	POINT_FAILED=1
}

# A file of the user's that cannot be opened (the input, a saga or
# projection definition, not the store or views) may also end as the tool
# says for such a file: 66 no input, 78 a definition it cannot use.
input_open() { # injected-line status
	[[ $1 == "io "*" "@(open|open64|openat|openat64|fopen|fopen64)" "* ]] || return 1
	[[ $1 == *"$W/pt/"* ]] && return 1
	[ "$2" = 66 ] || [ "$2" = 78 ]
}

# cqrs-project and cqrs-saga run say nothing when they end busy (75),
# as their pages document
quiet_busy() {
	[ "$RC" = 75 ] && [ -z "$err" ] && { [ "$TOOL" = cqrs-project ] || [ "$TOOL" = cqrs-saga ]; }
}

# A crash is the tool's unless its top frame is in glibc's NSS, which
# dereferences NULL when its own first allocation fails
# (nss_database_check_reload_and_get, glibc 2.36): that one is listed as
# known and not counted.  gdb tells which; without gdb every crash counts.
crashed() { # kind n
	local bt=""
	if command -v gdb >/dev/null; then
		bt=$(cd "$W/pt" && rm -rf "$W/pt.gdb" && cp -a "$W/fx/$FX" "$W/pt.gdb" && cd "$W/pt.gdb" &&
			CQRS_STORE=$W/pt.gdb/store.db CQRS_VIEWS=$W/pt.gdb/views.db timeout 120 gdb -q -batch -nx -ex "set startup-with-shell off" \
				-ex "set env CQRS_SWEEP_$(echo "$1" | tr a-z A-Z)=$2" -ex "set env LD_PRELOAD=$LIB" \
				-ex run -ex 'bt 8' --args "${ARGV[@]}" </dev/null 2>&1 | grep -E '^#[0-9]')
	fi
	if [[ $bt == "#0 "*nss_database* || $bt == "#0 "*"/nss/"* ]]; then
		printf 'KNOWN %s %s %s: glibc NSS crash when its allocation fails (%s)\n' "$S" "$1" "$2" \
			"$(head -1 <<<"$bt" | cut -c1-100)" | tee -a "$W/known.txt" >&2
		KNOWN=$((KNOWN + 1))
		return
	fi
	fail "$1" "$2" "killed by signal $((RC - 128))"
	[ -n "$bt" ] && sed 's/^/    /' <<<"$bt" | head -8 >>"$FAILS"
}

# one point: the run with failure N injected, then the checks
run_point() { # kind n
	local kind=$1 n=$2 d=$W/pt var
	var=CQRS_SWEEP_$(echo "$kind" | tr a-z A-Z)
	setup_point "$d"
	(cd "$d" && env CQRS_STORE="$d/store.db" CQRS_VIEWS="$d/views.db" CQRS_SWEEP_LOG="$d/inject.log" \
		"$var=$n" LD_PRELOAD="$LIB" "${ARGV[@]}" </dev/null >"$d/out" 2>"$d/err")
	RC=$?
	POINT_FAILED=0
	local err="" first="" injected=""
	IFS= read -r -d '' err <"$d/err"
	first=${err%%$'\n'*}
	IFS= read -r injected <"$d/inject.log"
	# no crash, no sanitizer report, a documented and fitting status
	if [ $RC -ge 128 ]; then
		crashed "$kind" "$n"
	elif [ $RC = 99 ] || [[ $err =~ Sanitizer|runtime\ error:|definitely\ lost|Invalid\ (read|write|free) ]]; then
		fail "$kind" "$n" "a sanitizer or valgrind report"
	elif ! has "$(documented "$TOOL")" $RC; then
		fail "$kind" "$n" "exit $RC is not documented for $TOOL"
	elif ! has "$(expected "$kind")" $RC && ! input_open "$injected" $RC; then
		fail "$kind" "$n" "exit $RC does not fit an injected $kind failure"
	elif [ $RC != 0 ] && [[ $first != "$TOOL: "?* ]] && ! quiet_busy; then
		fail "$kind" "$n" "no message starting with '$TOOL:' on stderr"
	elif [ $RC = 0 ] && ! cmp -s "$d/out" "$CLEAN_OUT"; then
		fail "$kind" "$n" "exit 0 but the output differs from the clean run's"
	fi
	[ $POINT_FAILED = 1 ] && return
	# the store is whole, a batch all or nothing
	if ! in_point "$d" cqrs-read --verify </dev/null >/dev/null 2>"$d/verify.err"; then
		fail "$kind" "$n" "cqrs-read --verify fails afterwards: $(head -1 "$d/verify.err")"
		return
	fi
	local now c
	now=$(state "$d")
	c=$(sed -n 's/^== events //p' <<<"$now")
	if [ "$BATCH" -gt 0 ] && [ "$c" != "$PRE_COUNT" ] && [ "$c" != $((PRE_COUNT + BATCH)) ]; then
		fail "$kind" "$n" "half a batch stored: $PRE_COUNT events before, $c after"
		return
	fi
	if [ "$WRITES" = none ] && [ "$now" != "$PRE" ]; then
		fail "$kind" "$n" "a read-only run changed the store or the views"
		return
	fi
	# absorbed: the run did all of its work
	if [ $RC = 0 ]; then
		[ "$WRITES" = none ] || [ "$now" = "$CLEAN" ] ||
			{ fail "$kind" "$n" "exit 0 but the state differs from a clean run's"; diff <(echo "$CLEAN") <(echo "$now") | head -8 >>"$FAILS"; }
		return
	fi
	# views that a run left behind equal a rebuild up to their checkpoints
	# (a projection the failed run did not get to load is not there at all,
	# new views it did not get to fill are empty)
	if [ "$WRITES" = views ] && [ -f "$d/views.db" ] && ! in_point "$d" cqrs-project --diff </dev/null >"$d/diff" 2>&1 &&
		grep -v '"same":true' "$d/diff" | grep -v '"note":"not in the live views"' | grep -qv ': views are empty (run cqrs-project'; then
		fail "$kind" "$n" "the views differ from a rebuild: $(grep -v '"same":true' "$d/diff" | head -2 | tr '\n' ' ')"
		return
	fi
	# the same input again, without a fault: it succeeds and ends where a
	# clean run ends
	if ! in_point "$d" "${ARGV[@]}" </dev/null >"$d/out2" 2>"$d/err2"; then
		fail "$kind" "$n" "the re-run fails: $(head -1 "$d/err2")"
		return
	fi
	if [ "$WRITES" = none ]; then
		cmp -s "$d/out2" "$CLEAN_OUT" || fail "$kind" "$n" "the re-run's output differs from the clean run's"
		return
	fi
	now=$(state "$d")
	if [ "$now" != "$CLEAN" ] && [ "$now" != "$RERUN" ]; then
		fail "$kind" "$n" "the state after a re-run differs from a clean run's"
		diff <(echo "$CLEAN") <(echo "$now") | head -8 >>"$FAILS"
	fi
}

# The same point again under valgrind, for leaks and memory errors only:
# valgrind's own start allocates in the process, so that the Nth allocation
# is another one than in the plain run (whose outcome run_point judged).
# valgrind itself must not count: env, which it follows, sets the injector
# up for the tool only.
valgrind_point() { # kind n
	local d=$W/pt var
	var=CQRS_SWEEP_$(echo "$1" | tr a-z A-Z)
	setup_point "$d"
	(cd "$d" && env CQRS_STORE="$d/store.db" CQRS_VIEWS="$d/views.db" \
		valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		--soname-synonyms=somalloc=nouserintercepts --trace-children=yes \
		env "$var=$2" LD_PRELOAD="$LIB" "${ARGV[@]}" </dev/null >"$d/out" 2>"$d/err")
	RC=$?
	if [ $RC = 99 ] || grep -qE 'definitely lost|Invalid (read|write|free)|uninitialised' "$d/err"; then
		fail "$1" "$2" "valgrind: $(grep -m1 -E 'definitely lost|Invalid|uninitialised' "$d/err")"
		grep -E '^==[0-9]+==    (at|by) ' "$d/err" | head -8 >>"$FAILS"
	fi
	VG_POINTS=$((VG_POINTS + 1))
}

# --- the sweep ------------------------------------------------------------------
KNOWN=0 VG_POINTS=0 total_points=0 total_fails=0 start=$(date +%s)
summary=""
for s in $scenarios; do
	scenario "$s"
	clean_run
	for kind in $kinds; do
		max=$([ "$kind" = alloc ] && echo "$NA" || echo "$NI")
		if [ "$point" -gt 0 ]; then
			points=$point
		elif [ "$random" -gt 0 ]; then
			points=$(seq 1 "$max" | shuf -n "$random" --random-source=<(yes "${CQRS_SWEEP_SEED:-1}") | sort -n)
		else
			points=$(seq "$begin" "$stride" "$max")
		fi
		np=0 nf=0 t0=$(date +%s)
		for n in $points; do
			run_point "$kind" "$n"
			if [ "$vg_every" -gt 0 ] && [ $((np % vg_every)) = 0 ] && [ "$POINT_FAILED" = 0 ]; then
				valgrind_point "$kind" "$n"
			fi
			np=$((np + 1)) nf=$((nf + POINT_FAILED))
			if [ "$point" -gt 0 ]; then
				echo "point $S $kind $n: exit $RC; folder $W/pt"
				cat "$W/pt/inject.log" "$W/pt/err"
			fi
		done
		line=$(printf '%-13s %-5s N_max %6s  swept %6s  failed %4s  %4ss' "$S" "$kind" "$max" "$np" "$nf" $(($(date +%s) - t0)))
		echo "$line" >&2
		summary+="$line"$'\n'
		total_points=$((total_points + np)) total_fails=$((total_fails + nf))
	done
done
echo "--- fault sweep: $total_points points, $total_fails failed, $KNOWN known (glibc), $VG_POINTS also under valgrind, $(($(date +%s) - start))s"
[ "$KNOWN" = 0 ] || cat "$W/known.txt"
printf '%s' "$summary"
if [ "$total_fails" -gt 0 ]; then
	echo "--- failures (also in $FAILS):"
	cat "$FAILS"
	exit 1
fi
exit 0
