# NATS JetStream relay and verified replicas (issue 14): build lines for this piece
# The relay part (lib/relay/) and libnats go into cqrs-relay alone: an
# append on SQLite never loads the NATS client.
bin_PROGRAMS += cqrs-relay
cqrs_relay_SOURCES = src/cqrs-relay.c \
	lib/relay/relay_impl.h lib/relay/relay_conn.c lib/relay/relay_publish.c \
	lib/relay/relay_consume.c lib/relay/relay_cloudevents.c
cqrs_relay_CFLAGS = $(AM_CFLAGS) $(NATS_CFLAGS)
cqrs_relay_LDADD = $(LDADD) $(NATS_LIBS)
dist_man_MANS += man/cqrs-relay.1
BATS_SUITES += tests/relay.bats
EXTRA_DIST += tests/relay_helper.bash tests/prom_helper.bash
# a server configuration: JetStream with file storage and a login
relaynatsdir = $(pkgdatadir)/nats
dist_relaynats_DATA = share/nats/jetstream.conf
BENCH_SECTIONS += tests/bench/relay.sh
# relay ops: metrics, the health check, nkeys (tests/fixtures: a test nkey pair)
BATS_SUITES += tests/relay-ops.bats
