# issue 11: an order's trace, OTLP/JSON (included from Makefile.am)
