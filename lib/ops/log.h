/*
 * Inside libcqrs: the one writer of the tools' messages (log.c), for
 * tool.c's cqrs_warn and cqrs_die.
 */
#ifndef CQRS_OPS_LOG_H
#define CQRS_OPS_LOG_H

#include <stdarg.h>

#include "cqrs.h"

void cqrs_vlog(enum cqrs_log_level level, const char *fmt, va_list ap) CQRS_PRINTF(2, 0);

#endif
