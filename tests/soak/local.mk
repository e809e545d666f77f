# tests/soak/local.mk: included by Makefile.am (issue 10); paths are from the top of the tree
