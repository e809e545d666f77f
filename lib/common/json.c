/*
 * A strict, allocation-light JSON checker that compacts in place.
 *
 * Why not jansson here: the envelope promises that `data` and `metadata`
 * come back as the bytes the user wrote, and a DOM parser keeps numbers as
 * doubles.  One pass over the line both proves it is valid JSON and tells
 * where each value's bytes are.  tests/unit/test_json.c checks it against
 * jansson on the same inputs.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "banned.h"

struct key {
	const char *p;
	size_t n;
};

/* Per-thread scratch for key lists: bounded by the line, reused, and
 * freed when the thread ends (a rebuild's workers parse archived events),
 * through a key whose destructor runs in the ending thread. */
static _Thread_local struct key *keys;
static _Thread_local size_t keys_cap;
static _Thread_local char *decoded;
static _Thread_local size_t decoded_cap, decoded_len;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *unused)
{
	(void)unused;
	free(keys);
	free(decoded);
	keys = NULL;
	decoded = NULL;
	keys_cap = decoded_cap = decoded_len = 0;
}

static void scratch_key_make(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

/* Called when a thread first grows its scratch: its end will free it. */
static void scratch_register(void)
{
	pthread_once(&scratch_once, scratch_key_make);
	pthread_setspecific(scratch_key, &keys);
}

struct scan {
	char *text;
	size_t len;
	size_t r; /* read position */
	size_t w; /* write position, never ahead of r */
	cqrs_error *err;
};

static int fail_at(struct scan *s, const char *what)
{
	return cqrs_fail(s->err, CQRS_EXIT_DATAERR, "invalid JSON at column %zu: %s", s->r + 1,
			 what);
}

static void skip_ws(struct scan *s)
{
	while (s->r < s->len) {
		char c = s->text[s->r];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		s->r++;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static long hex4(const char *p)
{
	long v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(p[i]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Length of a valid UTF-8 sequence at p (n bytes available), or 0. */
size_t cqrs_utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return (n >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
			return 0;
		if (c == 0xE0 && p[1] < 0xA0)
			return 0; /* overlong */
		if (c == 0xED && p[1] >= 0xA0)
			return 0; /* UTF-16 surrogate */
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
		    (p[3] & 0xC0) != 0x80)
			return 0;
		if (c == 0xF0 && p[1] < 0x90)
			return 0; /* overlong */
		if (c == 0xF4 && p[1] >= 0x90)
			return 0; /* above U+10FFFF */
		return 4;
	}
	return 0;
}

size_t cqrs_utf8_valid_prefix(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		size_t k = p[i] < 0x80 ? 1 : cqrs_utf8_len(p + i, n - i);
		if (k == 0)
			break;
		i += k;
	}
	return i;
}

static void emit(struct scan *s, size_t from, size_t n)
{
	if (s->w != from)
		memmove(s->text + s->w, s->text + from, n);
	s->w += n;
}

static int scan_string(struct scan *s, bool *has_escape)
{
	size_t start = s->r;
	const unsigned char *t = (const unsigned char *)s->text;
	*has_escape = false;
	s->r++; /* opening quote */
	for (;;) {
		if (s->r >= s->len)
			return fail_at(s, "unterminated string");
		unsigned char c = t[s->r];
		if (c == '"') {
			s->r++;
			break;
		}
		if (c < 0x20)
			return fail_at(s, "control character in string");
		if (c == '\\') {
			*has_escape = true;
			if (s->r + 1 >= s->len)
				return fail_at(s, "unterminated string");
			char e = s->text[s->r + 1];
			if (strchr("\"\\/bfnrt", e) && e != '\0') {
				s->r += 2;
				continue;
			}
			if (e != 'u')
				return fail_at(s, "invalid escape in string");
			if (s->r + 6 > s->len)
				return fail_at(s, "invalid \\u escape");
			long u = hex4(s->text + s->r + 2);
			if (u < 0)
				return fail_at(s, "invalid \\u escape");
			if (u == 0)
				return fail_at(s, "\\u0000 is not allowed in strings");
			if (u >= 0xDC00 && u <= 0xDFFF)
				return fail_at(s, "lone UTF-16 surrogate in \\u escape");
			if (u >= 0xD800 && u <= 0xDBFF) {
				long lo = -1;
				if (s->r + 12 <= s->len && s->text[s->r + 6] == '\\' &&
				    s->text[s->r + 7] == 'u')
					lo = hex4(s->text + s->r + 8);
				if (lo < 0xDC00 || lo > 0xDFFF)
					return fail_at(s, "lone UTF-16 surrogate in \\u escape");
				s->r += 12;
			} else {
				s->r += 6;
			}
			continue;
		}
		size_t n = cqrs_utf8_len(t + s->r, s->len - s->r);
		if (n == 0)
			return fail_at(s, "invalid UTF-8");
		s->r += n;
	}
	emit(s, start, s->r - start);
	return 0;
}

static int scan_number(struct scan *s)
{
	size_t start = s->r;
	const char *t = s->text;
	size_t n = s->len;
	if (s->r < n && t[s->r] == '-')
		s->r++;
	if (s->r >= n)
		return fail_at(s, "invalid number");
	if (t[s->r] == '0') {
		s->r++;
	} else if (t[s->r] >= '1' && t[s->r] <= '9') {
		while (s->r < n && t[s->r] >= '0' && t[s->r] <= '9')
			s->r++;
	} else {
		return fail_at(s, "invalid number");
	}
	if (s->r < n && t[s->r] == '.') {
		s->r++;
		if (s->r >= n || t[s->r] < '0' || t[s->r] > '9')
			return fail_at(s, "invalid number");
		while (s->r < n && t[s->r] >= '0' && t[s->r] <= '9')
			s->r++;
	}
	if (s->r < n && (t[s->r] == 'e' || t[s->r] == 'E')) {
		s->r++;
		if (s->r < n && (t[s->r] == '+' || t[s->r] == '-'))
			s->r++;
		if (s->r >= n || t[s->r] < '0' || t[s->r] > '9')
			return fail_at(s, "invalid number");
		while (s->r < n && t[s->r] >= '0' && t[s->r] <= '9')
			s->r++;
	}
	emit(s, start, s->r - start);
	return 0;
}

static int scan_literal(struct scan *s)
{
	static const char *const words[] = { "true", "false", "null" };
	for (size_t i = 0; i < 3; i++) {
		size_t wl = strlen(words[i]);
		if (s->len - s->r >= wl && memcmp(s->text + s->r, words[i], wl) == 0) {
			size_t start = s->r;
			s->r += wl;
			emit(s, start, wl);
			return 0;
		}
	}
	return fail_at(s, "unexpected character (NaN, Infinity and bare words are not JSON)");
}

static int reserve(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	if (*cap == 0)
		scratch_register();
	size_t ncap = *cap ? *cap : 64;
	while (ncap < need)
		ncap *= 2;
	void *np = realloc(*p, ncap * elem);
	if (np == NULL)
		return -1;
	*p = np;
	*cap = ncap;
	return 0;
}

/* Remembers a key for the duplicate check, decoded if it has escapes.
 * Decoded keys are stored as offsets into `decoded` until the check, since
 * that buffer may move while it grows. */
static int remember_key(struct scan *s, size_t nkeys, size_t out_start, bool has_escape)
{
	if (reserve((void **)&keys, &keys_cap, nkeys + 1, sizeof *keys) < 0)
		return cqrs_fail(s->err, CQRS_EXIT_OSERR, "out of memory");
	const char *raw = s->text + out_start + 1;
	size_t raw_len = s->w - out_start - 2;
	if (!has_escape) {
		keys[nkeys].p = raw;
		keys[nkeys].n = raw_len;
		return 0;
	}
	if (reserve((void **)&decoded, &decoded_cap, decoded_len + raw_len + 1, 1) < 0)
		return cqrs_fail(s->err, CQRS_EXIT_OSERR, "out of memory");
	long n = cqrs_json_string(s->text + out_start, raw_len + 2, decoded + decoded_len,
				  decoded_cap - decoded_len);
	if (n < 0)
		return fail_at(s, "invalid string");
	/* p == NULL marks an offset into decoded */
	keys[nkeys].p = NULL;
	keys[nkeys].n = ((size_t)n << 32) | decoded_len;
	decoded_len += (size_t)n;
	return 0;
}

static struct key key_at(size_t i)
{
	struct key k = keys[i];
	if (k.p == NULL) {
		k.p = decoded + (k.n & 0xffffffffu);
		k.n >>= 32;
	}
	return k;
}

static int key_cmp(const void *a, const void *b)
{
	const struct key *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	return memcmp(x->p, y->p, x->n);
}

static int check_duplicates(struct scan *s, size_t from, size_t to)
{
	size_t n = to - from;
	for (size_t i = from; i < to; i++)
		keys[i] = key_at(i);
	if (n <= 16) {
		for (size_t i = from; i < to; i++)
			for (size_t j = i + 1; j < to; j++)
				if (key_cmp(&keys[i], &keys[j]) == 0)
					goto dup;
		return 0;
	}
	qsort(keys + from, n, sizeof *keys, key_cmp);
	for (size_t i = from + 1; i < to; i++)
		if (key_cmp(&keys[i - 1], &keys[i]) == 0)
			goto dup;
	return 0;
dup:
	return fail_at(s, "duplicate key in object");
}

int cqrs_json_compact(char *text, size_t *len, cqrs_error *err)
{
	struct scan s = { text, *len, 0, 0, err };
	/* stack[d] is '{' or '['; key_base[d] where that object's keys start */
	char stack[CQRS_MAX_DEPTH];
	size_t key_base[CQRS_MAX_DEPTH];
	size_t nkeys = 0;
	int depth = 0;
	decoded_len = 0;

	skip_ws(&s);
	for (;;) {
		/* a value is expected here */
		skip_ws(&s);
		if (s.r >= s.len)
			return fail_at(&s, depth ? "unexpected end of input" : "empty input");
		char c = text[s.r];
		bool esc;
		if (c == '{' || c == '[') {
			if (depth == CQRS_MAX_DEPTH)
				return fail_at(&s, "nesting deeper than the limit of 64");
			stack[depth] = c;
			key_base[depth] = nkeys;
			depth++;
			emit(&s, s.r++, 1);
			skip_ws(&s);
			char close = c == '{' ? '}' : ']';
			if (s.r < s.len && text[s.r] == close) {
				depth--;
				emit(&s, s.r++, 1);
			} else if (c == '{') {
				goto object_key;
			} else {
				continue;
			}
		} else if (c == '"') {
			if (scan_string(&s, &esc) < 0)
				return -1;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			if (scan_number(&s) < 0)
				return -1;
		} else if (c == ']' || c == '}' || c == ',' || c == ':') {
			return fail_at(&s, "expected a value");
		} else {
			if (scan_literal(&s) < 0)
				return -1;
		}

		/* after a value: a separator, a close, or the end */
		for (;;) {
			skip_ws(&s);
			if (depth == 0) {
				if (s.r != s.len)
					return fail_at(&s,
						       "trailing characters after the JSON value");
				*len = s.w;
				if (s.w < s.len)
					text[s.w] = '\0';
				return 0;
			}
			if (s.r >= s.len)
				return fail_at(&s, "unexpected end of input");
			c = text[s.r];
			char open = stack[depth - 1];
			if (c == ',') {
				emit(&s, s.r++, 1);
				if (open == '{')
					goto object_key;
				break; /* next array element */
			}
			if ((open == '{' && c == '}') || (open == '[' && c == ']')) {
				if (open == '{') {
					if (check_duplicates(&s, key_base[depth - 1], nkeys) < 0)
						return -1;
					nkeys = key_base[depth - 1];
				}
				depth--;
				emit(&s, s.r++, 1);
				continue;
			}
			return fail_at(&s, open == '{' ? "expected ',' or '}' in object"
						       : "expected ',' or ']' in array");
		}
		continue;

	object_key:
		skip_ws(&s);
		if (s.r >= s.len || text[s.r] != '"')
			return fail_at(&s, "expected a string key in object");
		{
			size_t out_start = s.w;
			if (scan_string(&s, &esc) < 0)
				return -1;
			if (remember_key(&s, nkeys, out_start, esc) < 0)
				return -1;
			nkeys++;
		}
		skip_ws(&s);
		if (s.r >= s.len || text[s.r] != ':')
			return fail_at(&s, "expected ':' after object key");
		emit(&s, s.r++, 1);
	}
}

/* The end of a string whose opening quote is at v[i]: one past its closing
 * quote, or len.  memchr finds each quote (strings are most of the bytes of
 * an event, and this runs for every member of every event); a quote after
 * an odd run of backslashes is escaped. */
static size_t string_end(const char *v, size_t len, size_t i)
{
	size_t from = i + 1;
	for (;;) {
		const char *q = from < len ? memchr(v + from, '"', len - from) : NULL;
		if (q == NULL)
			return len;
		size_t at = (size_t)(q - v), bs = 0;
		while (at - bs > i + 1 && v[at - bs - 1] == '\\')
			bs++;
		if (bs % 2 == 0)
			return at + 1;
		from = at + 1;
	}
}

size_t cqrs_json_value_end(const char *v, size_t len, size_t i)
{
	int depth = 0;
	for (; i < len; i++) {
		switch (v[i]) {
		case '"':
			i = string_end(v, len, i);
			if (depth == 0)
				return i;
			i--; /* the loop's i++ steps past the closing quote */
			break;
		case '{':
		case '[': depth++; break;
		case '}':
		case ']':
			if (depth == 0)
				return i; /* end of the enclosing container */
			depth--;
			if (depth == 0)
				return i + 1;
			break;
		case ',':
			if (depth == 0)
				return i;
			break;
		default: break;
		}
	}
	return len;
}

int cqrs_json_next_member(const char *obj, size_t len, size_t *pos, cqrs_json_member *m)
{
	size_t i = *pos;
	if (i == 0)
		i = 1; /* past '{' */
	if (i >= len || obj[i] == '}')
		return 0;
	if (obj[i] == ',')
		i++;
	size_t kstart = i + 1;
	size_t kend = cqrs_json_value_end(obj, len, i) - 1; /* closing quote */
	m->key = obj + kstart;
	m->key_len = kend - kstart;
	i = kend + 2; /* past '"' and ':' */
	m->value = obj + i;
	size_t vend = cqrs_json_value_end(obj, len, i);
	m->value_len = vend - i;
	*pos = vend;
	return 1;
}

int cqrs_json_next_element(const char *arr, size_t len, size_t *pos, const char **v, size_t *vn)
{
	if (*pos == 0) {
		if (len < 2 || arr[0] != '[')
			return 0;
		*pos = 1;
	}
	if (*pos >= len || arr[*pos] == ']')
		return 0;
	if (arr[*pos] == ',')
		(*pos)++;
	size_t end = cqrs_json_value_end(arr, len, *pos);
	*v = arr + *pos;
	*vn = end - *pos;
	*pos = end;
	return *vn > 0;
}

bool cqrs_json_get(const char *obj, size_t len, const char *key, const char **value,
		   size_t *value_len)
{
	size_t pos = 0, klen = strlen(key);
	cqrs_json_member m;
	while (cqrs_json_next_member(obj, len, &pos, &m) == 1) {
		if (m.key_len == klen && memcmp(m.key, key, klen) == 0) {
			*value = m.value;
			*value_len = m.value_len;
			return true;
		}
	}
	return false;
}

static size_t put_utf8(char *out, unsigned long cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

long cqrs_json_string(const char *v, size_t len, char *buf, size_t cap)
{
	if (len < 2 || v[0] != '"' || v[len - 1] != '"')
		return -1;
	size_t o = 0;
	for (size_t i = 1; i + 1 < len; i++) {
		char tmp[4];
		size_t n = 1;
		tmp[0] = v[i];
		if (v[i] == '\\') {
			char e = v[++i];
			switch (e) {
			case 'b': tmp[0] = '\b'; break;
			case 'f': tmp[0] = '\f'; break;
			case 'n': tmp[0] = '\n'; break;
			case 'r': tmp[0] = '\r'; break;
			case 't': tmp[0] = '\t'; break;
			case 'u': {
				if (i + 5 > len)
					return -1;
				long cp = hex4(v + i + 1);
				if (cp < 0)
					return -1;
				i += 4;
				if (cp >= 0xD800 && cp <= 0xDBFF && i + 7 <= len &&
				    v[i + 1] == '\\' && v[i + 2] == 'u') {
					long lo = hex4(v + i + 3);
					if (lo >= 0xDC00 && lo <= 0xDFFF) {
						cp = 0x10000 + ((cp - 0xD800) << 10) +
						     (lo - 0xDC00);
						i += 6;
					}
				}
				n = put_utf8(tmp, (unsigned long)cp);
				break;
			}
			default: tmp[0] = e; break;
			}
		}
		if (o + n >= cap)
			return -1;
		memcpy(buf + o, tmp, n);
		o += n;
	}
	buf[o] = '\0';
	return (long)o;
}

void cqrs_json_write_string(FILE *f, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	putc_unlocked('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': fputs_unlocked("\\\"", f); break;
		case '\\': fputs_unlocked("\\\\", f); break;
		case '\n': fputs_unlocked("\\n", f); break;
		case '\r': fputs_unlocked("\\r", f); break;
		case '\t': fputs_unlocked("\\t", f); break;
		default:
			if (c < 0x20) {
				fputs_unlocked("\\u00", f);
				putc_unlocked(hex[c >> 4], f);
				putc_unlocked(hex[c & 15], f);
			} else {
				putc_unlocked((int)c, f);
			}
		}
	}
	putc_unlocked('"', f);
}
