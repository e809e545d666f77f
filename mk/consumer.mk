# issue 11: durable consumers for shell scripts (included from Makefile.am)
