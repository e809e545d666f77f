# Operations on PostgreSQL (issue 13): cqrs-health and cqrs-backup on a
# postgresql:// store; their suites join the backend matrix (mk/pg.mk).
PG_MATRIX_SUITES += tests/health.bats tests/backup.bats tests/metrics.bats \
	tests/consumer.bats
