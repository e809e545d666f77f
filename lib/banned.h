/*
 * Functions that are too easy to misuse: unbounded copies, static buffers
 * shared between calls, silent conversion failures.  Including this header
 * last in a .c file makes any use of them a compile error.
 */
#ifndef CQRS_BANNED_H
#define CQRS_BANNED_H

#define CQRS_BANNED(func) sorry_##func##_is_banned_in_cqrs_tools

#undef strcpy
#define strcpy(x, y) CQRS_BANNED(strcpy)
#undef strcat
#define strcat(x, y) CQRS_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) CQRS_BANNED(strncpy)
#undef sprintf
#define sprintf(...) CQRS_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) CQRS_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) CQRS_BANNED(strtok)
#undef gmtime
#define gmtime(t) CQRS_BANNED(gmtime)
#undef localtime
#define localtime(t) CQRS_BANNED(localtime)
#undef ctime
#define ctime(t) CQRS_BANNED(ctime)
#undef asctime
#define asctime(t) CQRS_BANNED(asctime)
#undef atoi
#define atoi(x) CQRS_BANNED(atoi)
#undef atol
#define atol(x) CQRS_BANNED(atol)
/* out of memory there cuts the text short without an error: cqrs_memstream */
#undef open_memstream
#define open_memstream(b, n) CQRS_BANNED(open_memstream)

#endif
