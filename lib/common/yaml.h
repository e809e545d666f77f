/*
 * The one YAML loader of libcqrs: projection files (cqrs-projection(5)) and
 * saga definitions (cqrs-saga(5)) are read into the same small tree, whose
 * every node knows where it starts, and every problem, from a YAML syntax
 * error to a wrong value, is reported one way: FILE:LINE:COLUMN: what.
 *
 * The tree is plain data: a scalar's text, a sequence's items, a mapping's
 * keys and values (alternating, keys are scalars, no key twice).  Aliases,
 * several documents per file and NUL characters are refused: none of our
 * formats needs them, and they make a file mean something it does not
 * show.
 */
#ifndef CQRS_COMMON_YAML_H
#define CQRS_COMMON_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cqrs.h"

enum cqrs_yaml_kind { CQRS_YAML_SCALAR, CQRS_YAML_SEQ, CQRS_YAML_MAP };

struct cqrs_yaml_node {
	enum cqrs_yaml_kind kind;
	int line;     /* 1-based, of the node's first character; for a block
		       * scalar, the line after its '|' or '>' */
	int column;   /* 1-based, of that character; for a block scalar, its
		       * indentation (where its first line of text starts) */
	bool plain;   /* a scalar written without quotes or block style */
	bool literal; /* a literal block scalar ('|'): its newlines are the file's */
	bool block;   /* a literal or folded ('>') block scalar */
	char *text;   /* scalars */
	struct cqrs_yaml_node **kids; /* a sequence's items; a mapping's keys
				       * and values, alternating */
	size_t nkids;
};

/* Opens a definition file for cqrs_yaml_load: NULL with *err set to
 * "PATH: cannot read WHAT: reason", 66 when it does not exist, 77 when it
 * may not be read, 71 out of memory or descriptors, else 74. */
FILE *cqrs_yaml_open(const char *path, const char *what, cqrs_error *err);

/* Reads one YAML document from f (named file in messages).  NULL with
 * *err set (CQRS_EXIT_CONFIG, or CQRS_EXIT_OSERR when out of memory); an
 * empty file is an error that says what was expected (empty_what). */
struct cqrs_yaml_node *cqrs_yaml_load(FILE *f, const char *file, const char *empty_what,
				      cqrs_error *err);
void cqrs_yaml_free(struct cqrs_yaml_node *n);

/* "FILE:LINE:COLUMN: what" at node n, CQRS_EXIT_CONFIG; returns -1. */
int cqrs_yaml_fail(cqrs_error *err, const char *file, const struct cqrs_yaml_node *n,
		   const char *fmt, ...) CQRS_PRINTF(4, 5);
/* The same at a line and column of one's own (inside a scalar's text). */
int cqrs_yaml_fail_at(cqrs_error *err, const char *file, int line, int column, const char *fmt, ...)
	CQRS_PRINTF(5, 6);

/* "text", "a list" or "a mapping" */
const char *cqrs_yaml_kind_name(enum cqrs_yaml_kind k);
/* 0 when n is of kind k, else "FILE:L:C: WHAT must be K, not ..." */
int cqrs_yaml_want(const struct cqrs_yaml_node *n, enum cqrs_yaml_kind k, const char *file,
		   const char *what, cqrs_error *err);
/* The value of key in mapping map, or NULL. */
const struct cqrs_yaml_node *cqrs_yaml_get(const struct cqrs_yaml_node *map, const char *key);

#endif
