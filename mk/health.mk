# issue 11: the health check: cqrs-health (included from Makefile.am)
