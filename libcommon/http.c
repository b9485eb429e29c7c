/* SPDX-License-Identifier: MIT */
#include "libcommon/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "libcommon/cleanup.h"
#include "libcommon/strutil.h"

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Visible characters, space and tab, and obs-text (RFC 9110 §5.5 field-value). */
static bool is_field_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Returns the end of the line starting at @p (the CR of CRLF, or the bare LF), or NULL. */
static char *line_end(char *p, char *end, char **ret_next)
{
	char *nl = memchr(p, '\n', (size_t)(end - p));

	if (!nl)
		return NULL;
	*ret_next = nl + 1;
	if (nl > p && nl[-1] == '\r')
		return nl - 1;
	return nl;
}

static int parse_request_line(char *line, struct http_request_head *h)
{
	char *sp1, *sp2, *version;

	sp1 = strchr(line, ' ');
	if (!sp1)
		return -EBADMSG;
	*sp1 = '\0';
	sp2 = strchr(sp1 + 1, ' ');
	if (!sp2)
		return -EBADMSG;
	*sp2 = '\0';
	version = sp2 + 1;

	if (*line == '\0')
		return -EBADMSG;
	for (const char *c = line; *c; c++)
		if (!is_tchar((unsigned char)*c))
			return -EBADMSG;
	if (sp1[1] == '\0')
		return -EBADMSG;
	for (const char *c = sp1 + 1; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f)
			return -EBADMSG;
	if (!startswith(version, "HTTP/"))
		return -EBADMSG;
	if (strcmp(version, "HTTP/1.1") == 0)
		h->version_minor = 1;
	else if (strcmp(version, "HTTP/1.0") == 0)
		h->version_minor = 0;
	else if (strlen(version) == 8 && version[5] >= '0' && version[5] <= '9' &&
		 version[6] == '.' && version[7] >= '0' && version[7] <= '9')
		return -EPROTONOSUPPORT;
	else
		return -EBADMSG;
	h->method = line;
	h->target = sp1 + 1;
	return 0;
}

/* True if the comma-separated header value @v contains the token @tok (case-insensitive). */
static bool value_has_token(const char *v, const char *tok)
{
	size_t n = strlen(tok);

	while (*v) {
		size_t len;

		v = skip_blanks(v);
		len = strcspn(v, ",");
		{
			size_t l = len;

			while (l > 0 && (v[l - 1] == ' ' || v[l - 1] == '\t'))
				l--;
			if (l == n && strncasecmp(v, tok, n) == 0)
				return true;
		}
		v += len;
		if (*v == ',')
			v++;
	}
	return false;
}

int http_request_parse(char *buf, size_t len, struct http_request_head *ret)
{
	struct http_request_head h = { .content_length = -1 };
	char *p = buf, *end = buf + len, *next = NULL, *e;
	bool have_te = false;
	int r;

	if (memchr(buf, '\0', len))
		return -EBADMSG;
	/* RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line. */
	while (p < end && (*p == '\r' || *p == '\n'))
		p++;
	e = line_end(p, end, &next);
	if (!e)
		return -EBADMSG;
	*e = '\0';
	r = parse_request_line(p, &h);
	if (r < 0)
		return r;

	for (p = next;;) {
		char *colon, *name, *value, *vend;

		e = line_end(p, end, &next);
		if (!e)
			return -EBADMSG;
		if (e == p)
			break; /* the empty line that ends the head */
		*e = '\0';
		if (*p == ' ' || *p == '\t')
			return -EBADMSG; /* obs-fold */
		colon = strchr(p, ':');
		if (!colon || colon == p)
			return -EBADMSG;
		*colon = '\0';
		name = p;
		for (const char *c = name; *c; c++)
			if (!is_tchar((unsigned char)*c))
				return -EBADMSG;
		value = (char *)skip_blanks(colon + 1);
		vend = value + strlen(value);
		while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
			*--vend = '\0';
		for (const char *c = value; *c; c++)
			if (!is_field_char((unsigned char)*c))
				return -EBADMSG;
		if (h.n_headers >= HTTP_MAX_HEADERS)
			return -E2BIG;
		h.headers[h.n_headers++] = (struct http_header){ name, value };

		if (strcasecmp(name, "content-length") == 0) {
			uint64_t v;

			if (safe_atou64(value, &v) < 0 || v > INT64_MAX)
				return -EBADMSG;
			if (h.content_length >= 0 && (uint64_t)h.content_length != v)
				return -EBADMSG;
			h.content_length = (int64_t)v;
		} else if (strcasecmp(name, "transfer-encoding") == 0) {
			have_te = true;
			h.chunked = endswith(value, "chunked");
		}
		p = next;
	}
	if (next != end)
		return -EBADMSG; /* the caller passes exactly one head */
	if (have_te && h.content_length >= 0)
		return -EBADMSG;
	if (have_te && !h.chunked)
		return -EBADMSG; /* a body we cannot delimit */

	{
		const char *conn = http_header_get(&h, "connection");

		if (h.version_minor == 1)
			h.keep_alive = !(conn && value_has_token(conn, "close"));
		else
			h.keep_alive = conn && value_has_token(conn, "keep-alive");
	}
	*ret = h;
	return 0;
}

const char *http_header_get(const struct http_request_head *h, const char *name)
{
	for (size_t i = 0; i < h->n_headers; i++)
		if (strcasecmp(h->headers[i].name, name) == 0)
			return h->headers[i].value;
	return NULL;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int http_percent_decode(const char *s, size_t len, bool plus_is_space, char **ret)
{
	_cleanup_free_ char *out = malloc(len + 1);
	char *w = out;

	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -EINVAL;
			hi = unhex(s[i + 1]);
			lo = unhex(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		} else if (c == '\0') {
			return -EINVAL;
		}
		*w++ = c;
	}
	*w = '\0';
	*ret = TAKE_PTR(out);
	return 0;
}

void http_query_done(struct http_query *q)
{
	for (size_t i = 0; i < q->n; i++) {
		free(q->keys[i]);
		free(q->values[i]);
	}
	q->n = 0;
}

int http_query_parse(const char *query, struct http_query *ret)
{
	struct http_query q = { .n = 0 };
	const char *p = query;
	int r = 0;

	while (p && *p) {
		size_t n = strcspn(p, "&"), klen;
		const char *eq;

		if (n > 0) {
			if (q.n >= HTTP_MAX_QUERY_PARAMS) {
				r = -E2BIG;
				break;
			}
			eq = memchr(p, '=', n);
			klen = eq ? (size_t)(eq - p) : n;
			r = http_percent_decode(p, klen, true, &q.keys[q.n]);
			if (r < 0)
				break;
			r = eq ? http_percent_decode(eq + 1, n - klen - 1, true, &q.values[q.n]) :
				 http_percent_decode("", 0, true, &q.values[q.n]);
			if (r < 0) {
				free(q.keys[q.n]);
				break;
			}
			q.n++;
		}
		p += n;
		if (*p == '&')
			p++;
	}
	if (r < 0) {
		http_query_done(&q);
		return r;
	}
	*ret = q;
	return 0;
}

int http_target_split(const char *target, char **ret_path, char **ret_query)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *query = NULL;
	const char *q = strchr(target, '?');
	size_t plen = q ? (size_t)(q - target) : strlen(target);
	int r;

	if (plen == 0 || target[0] != '/')
		return -EINVAL;
	if (memchr(target, '#', plen))
		return -EINVAL;
	r = http_percent_decode(target, plen, false, &path);
	if (r < 0)
		return r;
	/* Dot segments would let a path name something other than what a prefix check saw. */
	for (const char *s = path; (s = strchr(s, '/'));) {
		s++;
		if ((s[0] == '.' && (s[1] == '/' || s[1] == '\0')) ||
		    (s[0] == '.' && s[1] == '.' && (s[2] == '/' || s[2] == '\0')))
			return -EINVAL;
	}
	if (q) {
		query = strdup(q + 1);
		if (!query)
			return -ENOMEM;
	}
	*ret_path = TAKE_PTR(path);
	*ret_query = TAKE_PTR(query);
	return 0;
}

const char *http_status_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}
