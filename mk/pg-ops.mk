# Operations on PostgreSQL (issue 13): cqrs-health and cqrs-backup on a
# postgresql:// store; their suites join the backend matrix (mk/pg.mk).
PG_MATRIX += tests/pg/health.pg
PG_MATRIX_MORE += tests/pg/backup.pg tests/pg/metrics.pg tests/pg/consumer.pg
