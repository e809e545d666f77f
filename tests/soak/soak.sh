#!/bin/bash
# tests/soak/soak.sh: the soak (issue 10).  Writers (cqrs-append and
# cqrs-command), two `cqrs-read --follow` readers, `cqrs-project --follow`
# and `cqrs-saga run --follow` run together on one store for DURATION
# seconds; then the writers stop, the followers drain, and the run checks
# that every follower saw every event once and in order, that the views
# equal a rebuild, that every saga finished, that the chain verifies and
# that the memory of the long-running processes stayed flat.  See
# tests/soak/README.
#
# usage: soak.sh [DURATION]        (seconds; default $DURATION, then 60)
#
# Environment: DURATION; SOAK_KEEP=1 keeps the work directory;
# SOAK_INTERVAL (seconds between two rounds of each writer, default 0.5);
# SOAK_SAMPLE (seconds between RSS samples, default DURATION/12, at least 5);
# SOAK_RSS_JUDGE=0 reports memory without failing on its growth (ASan);
# SOAK_WARMUP (seconds before the first RSS sample, default DURATION/4,
# between 5 and 900); SOAK_RSS_SLACK_KIB (see README, default 2048);
# SOAK_DRAIN_TIMEOUT (seconds, default 120); SOAK_SAGA_BACKLOG (orders
# whose saga has not finished before the order writer waits, default 12);
# CQRS_SHAREDIR (default the
# tree's share/).  The tools are taken from PATH.
set -u -o pipefail

duration=${1:-${DURATION:-60}}
case $duration in
'' | *[!0-9]*)
	echo "soak: DURATION must be a whole number of seconds" >&2
	exit 64
	;;
esac
[ "$duration" -ge 5 ] || duration=5
interval=${SOAK_INTERVAL:-0.5}
sample_every=${SOAK_SAMPLE:-$((duration / 12))}
[ "$sample_every" -ge 5 ] || sample_every=5
warmup=${SOAK_WARMUP:-$((duration / 4))}
[ "$warmup" -ge 5 ] || warmup=5
[ "$warmup" -le 900 ] || warmup=900
slack_kib=${SOAK_RSS_SLACK_KIB:-2048}
drain_timeout=${SOAK_DRAIN_TIMEOUT:-120}
max_backlog=${SOAK_SAGA_BACKLOG:-12}

here=$(cd "$(dirname "$0")" && pwd)
export CQRS_SHAREDIR=${CQRS_SHAREDIR:-$here/../../share}
export LC_ALL=C TZ=UTC

for tool in cqrs-append cqrs-read cqrs-command cqrs-project cqrs-query cqrs-saga sqlite3 jq; do
	command -v "$tool" >/dev/null || {
		echo "soak: $tool is not on PATH" >&2
		exit 69
	}
done

work=$(mktemp -d "${TMPDIR:-/tmp}/cqrs-soak.XXXXXX") || exit 73
export CQRS_STORE=$work/events.db CQRS_VIEWS=$work/views.db
export CQRS_BUSY_TIMEOUT=30000
export PAYMENT_GATEWAY_DIR=$work/pg SHIPPING_LABEL_DIR=$work/sl
unset CQRS_SAGA_NOW CQRS_SAGA_CRASH_AT PAYMENT_GATEWAY_MODE PAYMENT_GATEWAY_AUTHORIZE_MODE \
	PAYMENT_GATEWAY_VOID_MODE SHIPPING_LABEL_MODE SHIPPING_LABEL_CREATE_MODE \
	SHIPPING_LABEL_CANCEL_MODE SHIPPING_LABEL_COUNTRIES
# the cards of this customer are declined: their sagas compensate
export PAYMENT_GATEWAY_DECLINE=cust-declined

failures=0
fail() {
	echo "soak: FAIL: $*" >&2
	failures=$((failures + 1))
}
say() { echo "soak: $*" >&2; }

declare -A pid=()   # long-running process name -> pid
declare -A rss0=()  # RSS (KiB) after the warm-up
declare -A rss1=()  # RSS (KiB) at the end, after the drain
declare -A rssmax=() # the largest sample
views0=0 views1=0    # the views' size (KiB) at the start and end samples
writers=()

cleanup() {
	local p
	for p in "${pid[@]}" "${writers[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "${SOAK_KEEP:-0}" = 1 ]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() {
	local v
	v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
	echo "${v:-0}"
}

# views_kib: the size of the views database, pages in the WAL included
views_kib() {
	sqlite3 -readonly "$CQRS_VIEWS" "SELECT page_count * page_size / 1024
	    FROM pragma_page_count(), pragma_page_size()" 2>/dev/null || echo 0
}

# sample LABEL: one RSS line per long-running process into rss.tsv, and one
# for the size of the views
sample() {
	local name r t v
	t=$((SECONDS - t_start))
	v=$(views_kib)
	printf '%s\t%s\t%s\t%s\n' "$t" "$1" views-db "$v" >>"$work/rss.tsv"
	case $1 in
	start) views0=$v ;;
	end) views1=$v ;;
	esac
	for name in "${!pid[@]}"; do
		r=$(rss_kib "${pid[$name]}")
		printf '%s\t%s\t%s\t%s\n' "$t" "$1" "$name" "$r" >>"$work/rss.tsv"
		[ "$r" -le "${rssmax[$name]:-0}" ] || rssmax[$name]=$r
		case $1 in
		start) rss0[$name]=$r ;;
		end) rss1[$name]=$r ;;
		esac
	done
}

alive() {
	local name ok=0
	for name in "${!pid[@]}"; do
		if ! kill -0 "${pid[$name]}" 2>/dev/null; then
			fail "$name (pid ${pid[$name]}) died during the run: $(tail -3 "$work/$name.err" 2>/dev/null)"
			ok=1
		fi
	done
	return $ok
}

# wait_for TIMEOUT WHAT COMMAND...: polls COMMAND every 0.2 s until it
# succeeds or TIMEOUT seconds have gone
wait_for() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			fail "timed out waiting for $what"
			return 1
		fi
		sleep 0.2
	done
}

head_seq() {
	cqrs-read --reverse --limit 1 | jq -r '.sequence // 0'
}

last_seq() {
	local line
	line=$(tail -n 1 "$1" 2>/dev/null)
	[ -n "$line" ] || {
		echo 0
		return
	}
	printf '%s\n' "$line" | jq -r .sequence 2>/dev/null || echo -1
}

# --- the shop: three products, plenty of stock -------------------------------
products=(3c9a7b1e-4d2f-4e8a-b6c5-0f1e2d3c4b5a 6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b
	0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d)
prices=(29.99 0.03 149.50)
price_cents=(2999 3 14950)
for i in 0 1 2; do
	cqrs-command -q --command-id "register-$i" register-product --product "${products[$i]}" \
		--sku "SKU-$((i + 1))" --name "Product $((i + 1))" --quantity 10000000 ||
		{
			fail "register-product $i"
			exit 1
		}
done

# --- writer 1: generic events through cqrs-append ---------------------------
# Three sensor readings a round, with their own event ids; every tenth round
# sends the previous round again, which must not be stored twice.
append_writer() {
	local n=0 prev='' batch k id
	while [ ! -e "$work/stop" ]; do
		n=$((n + 1))
		batch=''
		for k in 1 2 3; do
			id=$(printf '5e000000-0000-4000-8000-%012d' $((n * 3 + k)))
			batch+=$(printf '{"event_id":"%s","aggregate_id":"d0000000-0000-4000-8000-%012d","aggregate_type":"Sensor","event_type":"ReadingTaken","data":{"round":%d,"probe":%d,"celsius":205.67},"metadata":{"user_id":"sensor-%d"}}' \
				"$id" "$k" "$n" "$k" "$k")$'\n'
		done
		if printf '%s' "$batch" | cqrs-append --quiet; then
			echo "$n" >"$work/append.rounds"
		else
			echo "round $n: cqrs-append exit $?" >>"$work/append.failures"
		fi
		if [ $((n % 10)) -eq 0 ] && [ -n "$prev" ]; then
			printf '%s' "$prev" | cqrs-append --quiet ||
				echo "round $n (again): cqrs-append exit $?" >>"$work/append.failures"
		fi
		prev=$batch
		sleep "$interval"
	done
}

# --- writer 2: the order domain through cqrs-command ------------------------
# One order a round, one command per process as a shop's scripts send them;
# now and then a person cancels an order, pays and ships another by hand,
# or replenishes a product.  Rejections (exit 4) are counted: a person may
# come too late; any other failure is a failure of the soak.
order_uuid() { printf 'c0000000-0000-4000-8000-%012d' "$1"; }

# cmd TAG ARGS...: one cqrs-command, its outcome counted
cmd() {
	local tag=$1 rc
	shift
	cqrs-command -q -u soak "$@" 2>>"$work/command.stderr"
	rc=$?
	case $rc in
	0) echo "$tag accepted" >>"$work/command.log" ;;
	4) echo "$tag rejected" >>"$work/command.log" ;;
	*) echo "$tag exit $rc: $*" >>"$work/command.failures" ;;
	esac
}

# Back-pressure: on a loaded machine the saga runner (two shell step
# programs per order) can fall behind the writer for good; then the order
# writer waits while more than max_backlog orders wait for their saga, so
# that the run stays a soak and not a backlog.  The time it waited is in
# the summary.
sagas_finished() {
	sqlite3 "$CQRS_STORE" \
		"SELECT count(*) FROM saga_instances WHERE status IN ('COMPLETED', 'FAILED')"
}

command_writer() {
	local n=0 p q customer j total held=0 f
	while [ ! -e "$work/stop" ]; do
		while f=$(sagas_finished 2>/dev/null) && [ $((n - f)) -gt "$max_backlog" ] &&
			[ ! -e "$work/stop" ]; do
			sleep 0.5
			held=$((held + 1))
			echo $((held / 2)) >"$work/command.held"
		done
		[ ! -e "$work/stop" ] || break
		n=$((n + 1))
		p=$((n % 3))
		q=$((n % 4 + 1))
		customer=cust-$((n % 7))
		[ $((n % 11)) -ne 0 ] || customer=cust-declined
		cmd create-order --command-id "create-$n" -c "order-$n" create-order \
			--order "$(order_uuid "$n")" --customer "$customer" \
			--item "${products[$p]}:$q:${prices[$p]}" --item "${products[1]}:1:0.03" \
			--currency USD --ship-to "Ada Lovelace,12 St James Sq,London,SW1Y 4JH,GB"
		if [ $((n % 9)) -eq 0 ] && [ "$n" -gt 3 ]; then
			cmd cancel-order --command-id "cancel-$n" cancel-order \
				--order "$(order_uuid $((n - 3)))" --reason "customer changed their mind"
		fi
		if [ $((n % 13)) -eq 0 ] && [ "$n" -gt 6 ]; then
			j=$((n - 6))
			total=$(((j % 4 + 1) * price_cents[j % 3] + 3))
			total=$(printf '%d.%02d' $((total / 100)) $((total % 100)))
			cmd confirm-payment --command-id "pay-$j" confirm-payment --order "$(order_uuid "$j")" \
				--payment "$(printf 'b0000000-0000-4000-8000-%012d' "$j")" --amount "$total"
			cmd ship-order --command-id "ship-$j" ship-order --order "$(order_uuid "$j")" \
				--carrier FedEx --tracking "TRK$j"
		fi
		if [ $((n % 25)) -eq 0 ]; then
			cmd replenish-stock --command-id "replenish-$n" replenish-stock \
				--product "${products[$p]}" --quantity 100
		fi
		echo "$n" >"$work/command.rounds"
		sleep "$interval"
	done
}

t_start=$SECONDS
say "work directory $work, duration ${duration}s"

# --- the long-running processes -----------------------------------------------
cqrs-read --follow >"$work/reader1.ndjson" 2>"$work/reader1.err" &
pid[reader1]=$!
cqrs-project --follow 2>"$work/projector.err" &
pid[projector]=$!
cqrs-saga run --follow 2>"$work/saga.err" &
pid[saga]=$!

append_writer &
writers+=($!)
command_writer &
writers+=($!)

# the second reader comes once the store has grown: it catches up, then follows
sleep 2
cqrs-read --follow --from 1 >"$work/reader2.ndjson" 2>"$work/reader2.err" &
pid[reader2]=$!

# --- the run: RSS after the warm-up, then every sample_every seconds ----------
deadline=$((t_start + duration))
# (in the background: a trapped signal ends wait, not a foreground sleep)
sleep $((warmup - 2 > 0 ? warmup - 2 : 0)) &
wait $!
alive
sample start
next=$((SECONDS + sample_every))
while [ "$SECONDS" -lt "$deadline" ]; do
	sleep 1
	if [ "$SECONDS" -ge "$next" ]; then
		sample run
		alive || break
		next=$((SECONDS + sample_every))
	fi
done
ran=$((SECONDS - t_start))

# --- the end: writers stop, sagas finish, followers drain ----------------------
touch "$work/stop"
wait "${writers[@]}"
writers=()
say "writers stopped after ${ran}s; draining"

sagas_active() {
	sqlite3 "$CQRS_STORE" \
		"SELECT count(*) FROM saga_instances WHERE status IN ('RUNNING', 'COMPENSATING')"
}
orders_created() { cqrs-read --event-type OrderCreated | wc -l; }
sagas_started() { sqlite3 "$CQRS_STORE" "SELECT count(*) FROM saga_instances"; }
sagas_done() {
	[ "$(sagas_started)" -eq "$(orders_created)" ] && [ "$(sagas_active)" -eq 0 ]
}
# bounded by progress: it fails when no saga finished for drain_timeout
last_finished=-1
until sagas_done; do
	f=$(sagas_finished)
	if [ "$f" != "$last_finished" ]; then
		last_finished=$f
		stalled_at=$((SECONDS + drain_timeout))
	elif [ "$SECONDS" -ge "$stalled_at" ]; then
		fail "timed out waiting for the saga runner to finish every saga: none finished for ${drain_timeout}s"
		break
	fi
	sleep 0.5
done

followers_at() {
	local h=$1 f
	for f in reader1 reader2; do
		[ "$(last_seq "$work/$f.ndjson")" -eq "$h" ] || return 1
	done
	cqrs-project --lag | jq -e --argjson h "$h" -s 'all(.checkpoint == $h)' >/dev/null
}
head=$(head_seq)
wait_for "$drain_timeout" "the followers to reach sequence $head" followers_at "$head"
[ "$(head_seq)" -eq "$head" ] || fail "the store grew after the writers and sagas stopped"
sample end

for name in "${!pid[@]}"; do
	kill -TERM "${pid[$name]}"
done
for name in "${!pid[@]}"; do
	wait "${pid[$name]}"
	rc=$?
	[ "$rc" -eq 0 ] || fail "$name exited $rc on SIGTERM: $(tail -3 "$work/$name.err")"
done
pid=()

# --- the checks ----------------------------------------------------------------
cqrs-read >"$work/all.ndjson" || fail "cqrs-read of the whole store"
events=$(wc -l <"$work/all.ndjson")
[ "$events" -eq "$head" ] || fail "the store holds $events events up to sequence $head"
jq -r '[.sequence, .hash] | @tsv' "$work/all.ndjson" >"$work/all.tsv"
awk -F'\t' '$1 != NR { bad = 1 } END { exit bad }' "$work/all.tsv" ||
	fail "the store's sequences are not 1..$events"

declare -A seen=()
for f in reader1 reader2; do
	seen[$f]=$(wc -l <"$work/$f.ndjson")
	jq -r '[.sequence, .hash] | @tsv' "$work/$f.ndjson" >"$work/$f.tsv" ||
		fail "$f: output is not NDJSON"
	if ! cmp -s "$work/$f.tsv" "$work/all.tsv"; then
		fail "$f: sequences and hashes differ from the store's: $(diff "$work/all.tsv" "$work/$f.tsv" | head -5 | tr '\n' ' ')"
	elif ! cmp -s "$work/$f.ndjson" "$work/all.ndjson"; then
		fail "$f: events differ from cqrs-read of the store"
	fi
	dups=$(cut -f1 "$work/$f.tsv" | sort -n | uniq -d | wc -l)
	[ "$dups" -eq 0 ] || fail "$f: $dups sequences seen more than once"
done

# every saga finished, and a last one-shot run finds nothing to do
cqrs-saga run 2>"$work/saga-final.err" || fail "final cqrs-saga run: exit $?"
[ "$(head_seq)" -eq "$head" ] || fail "the final cqrs-saga run found work left: the store grew"
cqrs-saga status --format ndjson >"$work/saga-status.ndjson" || fail "cqrs-saga status"
IFS=$'\t' read -r s_total s_running s_comp s_completed s_failed s_compensated s_cfailed s_person s_cancelled \
	< <(jq -r '[.total, .RUNNING, .COMPENSATING, .COMPLETED, .FAILED, .compensated,
	    .compensation_failed, .left_to_person, .cancelled] | @tsv' "$work/saga-status.ndjson")
orders=$(orders_created)
[ "${s_total:-0}" -eq "$orders" ] || fail "$orders orders created but ${s_total:-0} sagas"
[ $((${s_running:-1} + ${s_comp:-1})) -eq 0 ] ||
	fail "sagas not finished: RUNNING ${s_running:-?}, COMPENSATING ${s_comp:-?}"
[ "${s_cfailed:-1}" -eq 0 ] || fail "${s_cfailed:-?} sagas whose compensation failed"
# with every saga finished nothing is stuck, and nothing needs a person
stuck=$(cqrs-saga status --format ndjson --stuck-after 1s | grep -c '^{"stuck"')
[ "$stuck" -eq 0 ] || fail "$stuck sagas stuck or needing attention"
say "status: $(cqrs-saga status | tr -s ' \n' ' ')"

# the views equal a rebuild
cqrs-project --diff >"$work/diff.txt" || fail "cqrs-project --diff: $(grep -v ' 0 0 0$' "$work/diff.txt" | head -3)"
cqrs-project --rebuild --views "$work/rebuilt.db" 2>"$work/rebuild.err" ||
	fail "cqrs-project --rebuild: $(tail -3 "$work/rebuild.err")"
dump_views() {
	local t
	for t in $(sqlite3 "$1" "SELECT name FROM sqlite_schema WHERE type = 'table'
	    AND name NOT LIKE 'sqlite_%' ORDER BY name"); do
		echo "== $t"
		if [ "$t" = cqrs_checkpoints ]; then
			# all but updated_at, the time of the run that wrote the row
			sqlite3 "$1" "SELECT projection, sequence, event_hash, event_timestamp,
			    definition, source, tables FROM cqrs_checkpoints" | sort
		else
			sqlite3 "$1" "SELECT * FROM \"$t\"" | sort
		fi
	done
}
dump_views "$work/views.db" >"$work/views.dump"
dump_views "$work/rebuilt.db" >"$work/rebuilt.dump"
cmp -s "$work/views.dump" "$work/rebuilt.dump" ||
	fail "the views differ from a rebuild: $(diff "$work/views.dump" "$work/rebuilt.dump" | head -6 | tr '\n' ' ')"
for q in orders inventory; do
	cqrs-query "$q" >"$work/query-$q.live" 2>&1 || fail "cqrs-query $q"
	CQRS_VIEWS=$work/rebuilt.db cqrs-query "$q" >"$work/query-$q.rebuilt" 2>&1 ||
		fail "cqrs-query $q on the rebuild"
	cmp -s "$work/query-$q.live" "$work/query-$q.rebuilt" || fail "cqrs-query $q differs from the rebuild's"
done
parked=$(cqrs-project --lag | jq -s 'map(.parked) | add')
[ "$parked" -eq 0 ] || fail "$parked events parked by the projections"

# the chain
verify=$(cqrs-read --verify 2>&1) || fail "cqrs-read --verify: $verify"

# the writers' own account
[ ! -s "$work/append.failures" ] || fail "cqrs-append failed: $(head -3 "$work/append.failures")"
[ ! -s "$work/command.failures" ] || fail "cqrs-command failed: $(head -3 "$work/command.failures")"
rounds=$(cat "$work/append.rounds" 2>/dev/null || echo 0)
readings=$(cqrs-read --event-type ReadingTaken | wc -l)
[ "$readings" -eq $((rounds * 3)) ] || fail "$((rounds * 3)) readings appended, $readings stored"
accepted=$(grep -c ' accepted$' "$work/command.log")
rejected=$(grep -c ' rejected$' "$work/command.log")
created=$(grep -c '^create-order accepted$' "$work/command.log")
[ "$created" -eq "$orders" ] || fail "$created create-order accepted, $orders OrderCreated stored"
grep -q '^create-order rejected' "$work/command.log" && fail "a create-order was rejected"

# memory: flat when the end is within max(slack, 10%) of the start; the
# projector may also cache the pages the views grew by, up to its 32 MiB
# cache_size, plus a tenth for the cache's headers (README)
rss_fail=0
judged=("${!rss0[@]}")
if [ "${SOAK_RSS_JUDGE:-1}" = 0 ]; then
	echo "soak: memory reported, not judged (SOAK_RSS_JUDGE=0)"
	judged=()
fi
views_growth=$((views1 - views0 > 0 ? views1 - views0 : 0))
views_growth=$((views_growth > 32768 ? 32768 : views_growth))
for name in "${judged[@]}"; do
	a=${rss0[$name]} b=${rss1[$name]:-0}
	bound=$((a / 10 > slack_kib ? a + a / 10 : a + slack_kib))
	[ "$name" != projector ] || bound=$((bound + views_growth + views_growth / 10))
	if [ "$b" -gt "$bound" ]; then
		fail "$name: RSS grew from $a KiB to $b KiB (bound $bound KiB)"
		rss_fail=1
	fi
done

# --- summary -------------------------------------------------------------------
{
	printf '\nsoak summary (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf '  %-28s %s s (writers), %s s in all\n' duration "$ran" $((SECONDS - t_start))
	printf '  %-28s %s (%s/s), head sequence %s\n' "events in the store" "$events" \
		"$(awk -v e="$events" -v d="$ran" 'BEGIN { printf "%.1f", e / d }')" "$head"
	printf '  %-28s %s rounds, %s readings stored (%s resent rounds not stored twice)\n' \
		"cqrs-append writer" "$rounds" "$readings" $((rounds / 10))
	printf '  %-28s %s commands: %s accepted, %s rejected (person too early or late); held %s s for the sagas\n' \
		"cqrs-command writer" $((accepted + rejected)) "$accepted" "$rejected" \
		"$(cat "$work/command.held" 2>/dev/null || echo 0)"
	printf '  %-28s %s orders, %s sagas: %s completed, %s failed (compensated %s, cancelled %s, left to person %s, compensation failed %s), %s running, %s compensating, %s stuck or needing attention\n' \
		"sagas" "$orders" "$s_total" "$s_completed" "$s_failed" "$s_compensated" "$s_cancelled" \
		"$s_person" "$s_cfailed" "$s_running" "$s_comp" "$stuck"
	for f in reader1 reader2; do
		printf '  %-28s %s events, last %s\n' "follower $f" "${seen[$f]}" "$(last_seq "$work/$f.ndjson")"
	done
	printf '  %-28s %s\n' "projector" "$(grep -c . "$work/diff.txt") tables equal to a rebuild"
	printf '  %-28s %s\n' "chain" "$verify"
	printf '  %-28s %8s %8s %8s %8s\n' "RSS (KiB)" start end max growth
	for name in reader1 reader2 projector saga; do
		printf '  %-28s %8s %8s %8s %+8d\n' "  $name" "${rss0[$name]:-?}" "${rss1[$name]:-?}" \
			"${rssmax[$name]:-?}" $((${rss1[$name]:-0} - ${rss0[$name]:-0}))
	done
	printf '  %-28s %s KiB at the start, %s KiB at the end (the projector caches its pages)\n' \
		"views database" "$views0" "$views1"
	printf '  %-28s every %s s after a %s s warm-up: %s\n' "RSS samples" "$sample_every" "$warmup" \
		"$([ "${SOAK_KEEP:-0}" = 1 ] && echo "$work/rss.tsv" || echo "SOAK_KEEP=1 keeps rss.tsv")"
	if [ "$failures" -eq 0 ]; then
		printf 'soak: PASS\n'
	else
		printf 'soak: FAIL (%s failures%s)\n' "$failures" "$([ "$rss_fail" -eq 0 ] || echo ', memory')"
	fi
}
[ "$failures" -eq 0 ]
