# issue 11: metrics for Prometheus, dashboards and alerts (included from Makefile.am)
