# issue 11: structured logs and systemd units (included from Makefile.am)
