# shellcheck shell=bash
# The alert rules of share/prometheus/cqrs-alerts.yml tested with promtool
# on series that the tools themselves wrote (health.bats, relay-ops.bats).

# promtool_alert ALERT EXPECTED PROM...: promtool test rules of the alert
# rules, the series from the given .prom snapshots (30 one-minute samples
# each, instance="shop"), asserting that at minute 28 of the last snapshot
# ALERT has exactly the alerts EXPECTED (YAML of exp_alerts, or "[]").
promtool_alert() {
	local alert=$1 expected=$2 n
	shift 2
	n=$((30 * ($# - 1) + 28))
	{
		printf 'rule_files:\n  - %s\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n' "${CQRS_TOP_SRCDIR:?}/share/prometheus/cqrs-alerts.yml"
		"${CQRS_TOP_SRCDIR:?}/tests/prometheus/prom-to-series" -n 30 -l instance=shop "$@" | sed 's/^/      /'
		printf '    alert_rule_test:\n      - eval_time: %dm\n        alertname: %s\n' "$n" "$alert"
		if [ "$expected" = "[]" ]; then
			printf '        exp_alerts: []\n'
		else
			printf '        exp_alerts:\n'
			printf '%s\n' "$expected" | sed 's/^/          /'
		fi
	} >"rules-$alert.test.yml"
	run promtool test rules "rules-$alert.test.yml"
	assert_success
}
