/* SPDX-License-Identifier: MIT */
/*
 * The control-socket server and client (libcommon/ctlsock.c) against each other and against raw
 * socket bytes. The server runs in a forked child on its own event_base; the tests talk to it
 * with ctl_call() and with hand-written requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/ctlsock.h"

#define SERVER_TIMEOUT_MS 1000 /* the child's idle timeout */
#define CALL_TIMEOUT_MS 5000

static char tmpdir[] = "/tmp/test_ctlsock.XXXXXX";
static char sock_path[128];
static pid_t server_pid;

/*
 * /echo*: 200 with what the handler saw; /empty: nothing (204); /created: 201 with a body;
 * /status42: an invalid status (500); /nobody200: 200 without a body; /big: an answer over
 * CTL_MAX_BODY; anything else: 404 with a fault_message.
 */
static void handler(const struct ctl_request *req, struct ctl_response *resp, void *userdata)
{
	if (strncmp(req->path, "/echo", 5) == 0) {
		/* Long bodies are only measured: the answer must stay under CTL_MAX_BODY. */
		resp->body = json_pack("{s:s, s:s, s:s?, s:s, s:I, s:I, s:I}", "method",
				       req->method, "path", req->path, "query", req->query, "body",
				       req->body_len <= 1024 ? req->body : "(long)", "body_len",
				       (json_int_t)req->body_len, "uid", (json_int_t)req->peer.uid,
				       "pid", (json_int_t)req->peer.pid);
	} else if (strcmp(req->path, "/empty") == 0) {
		return;
	} else if (strcmp(req->path, "/created") == 0) {
		resp->status = 201;
		resp->body = json_pack("{s:b}", "created", 1);
	} else if (strcmp(req->path, "/status42") == 0) {
		resp->status = 42;
	} else if (strcmp(req->path, "/nobody200") == 0) {
		resp->status = 200;
	} else if (strcmp(req->path, "/big") == 0) {
		char *s = malloc(CTL_MAX_BODY + 100);

		if (!s)
			return;
		memset(s, 'x', CTL_MAX_BODY + 99);
		s[CTL_MAX_BODY + 99] = '\0';
		resp->body = json_string(s);
		free(s);
	} else {
		ctl_response_error(resp, 404, "No such resource '%s'", req->path);
	}
}

static void on_term(evutil_socket_t sig, short what, void *base)
{
	event_base_loopbreak(base);
}

static void server_child(int ready_fd)
{
	struct event_base *base = event_base_new();
	struct ctl_server *s = NULL;
	struct event *term = NULL;
	char c = 1;

	if (!base || ctl_server_new(base, sock_path, 0, handler, NULL, &s) < 0)
		_exit(1);
	ctl_server_set_timeout(s, SERVER_TIMEOUT_MS);
	if (write(ready_fd, &c, 1) != 1)
		_exit(1);
	close(ready_fd);
	/* SIGTERM ends the loop so that teardown runs (and ASan's leak check sees the server). */
	term = evsignal_new(base, SIGTERM, on_term, base);
	if (!term || event_add(term, NULL) < 0)
		_exit(1);
	event_base_dispatch(base);
	ctl_server_free(s);
	event_free(term);
	event_base_free(base);
	exit(0);
}

static int group_setup(void **state)
{
	int p[2];
	char c;
	struct pollfd pfd;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/api.sock", tmpdir);
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	server_pid = fork();
	if (server_pid < 0)
		return -1;
	if (server_pid == 0) {
		close(p[0]);
		server_child(p[1]);
	}
	close(p[1]);
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	if (poll(&pfd, 1, 5000) != 1 || read(p[0], &c, 1) != 1) {
		close(p[0]);
		return -1;
	}
	close(p[0]);
	return 0;
}

static int64_t now_ms(void);

static int group_teardown(void **state)
{
	char cmd[256];

	int status = -1;
	int64_t deadline = now_ms() + 10000;

	/* The server must shut down cleanly: exit status 0 (under ASan: no leaks either). */
	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		while (waitpid(server_pid, &status, WNOHANG) == 0 && now_ms() < deadline)
			usleep(10 * 1000);
		if (now_ms() >= deadline) {
			kill(server_pid, SIGKILL);
			waitpid(server_pid, &status, 0);
		}
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "server child ended with status 0x%x\n", status);
		return -1;
	}
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Reads until EOF or @timeout_ms; returns the bytes read (NUL-terminated in @out). */
static size_t read_until_eof(int fd, char *out, size_t size, int timeout_ms, bool *ret_eof)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t len = 0;

	*ret_eof = false;
	while (len + 1 < size) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		n = read(fd, out + len, size - len - 1);
		if (n <= 0) {
			*ret_eof = true;
			break;
		}
		len += (size_t)n;
	}
	out[len] = '\0';
	return len;
}

/* Sends @len raw bytes on a new connection and returns everything until the server closes. */
static char *raw_exchange(const char *req, size_t len)
{
	static char out[256 * 1024];
	_cleanup_close_ int fd = connect_to(sock_path);
	bool eof;

	assert_int_equal(write(fd, req, len), (ssize_t)len);
	read_until_eof(fd, out, sizeof(out), CALL_TIMEOUT_MS, &eof);
	assert_true(eof); /* every case here ends with the server closing */
	return out;
}

/* For string literals: their length without the terminating NUL. */
#define RAW(s) raw_exchange(s, sizeof(s) - 1)

static json_t *call_json(const char *method, const char *target, const char *body,
			 int expect_status)
{
	_cleanup_free_ char *text = NULL;
	json_error_t err;
	json_t *o;
	int status = 0;

	assert_int_equal(ctl_call(sock_path, method, target, body, CALL_TIMEOUT_MS, &status, &text),
			 0);
	assert_int_equal(status, expect_status);
	assert_non_null(text);
	assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
	o = json_loads(text, 0, &err);
	assert_non_null(o);
	return o;
}

static void test_get_echo(void **state)
{
	json_t *o = call_json("GET", "/echo?x=1&y=%20", NULL, 200);

	assert_string_equal(json_string_value(json_object_get(o, "method")), "GET");
	assert_string_equal(json_string_value(json_object_get(o, "path")), "/echo");
	assert_string_equal(json_string_value(json_object_get(o, "query")), "x=1&y=%20");
	assert_string_equal(json_string_value(json_object_get(o, "body")), "");
	assert_int_equal(json_integer_value(json_object_get(o, "body_len")), 0);
	assert_int_equal(json_integer_value(json_object_get(o, "uid")), getuid());
	assert_int_equal(json_integer_value(json_object_get(o, "pid")), getpid());
	json_decref(o);
}

static void test_put_patch_body(void **state)
{
	json_t *o = call_json("PUT", "/echo/machine-config", "{\"vcpu_count\":2}", 200);

	assert_string_equal(json_string_value(json_object_get(o, "method")), "PUT");
	assert_string_equal(json_string_value(json_object_get(o, "path")), "/echo/machine-config");
	assert_true(json_is_null(json_object_get(o, "query")));
	assert_string_equal(json_string_value(json_object_get(o, "body")), "{\"vcpu_count\":2}");
	assert_int_equal(json_integer_value(json_object_get(o, "body_len")), 16);
	json_decref(o);

	/* The path reaches the handler percent-decoded. */
	o = call_json("PATCH", "/echo/a%20b", "{\"state\":\"Paused\"}", 200);
	assert_string_equal(json_string_value(json_object_get(o, "method")), "PATCH");
	assert_string_equal(json_string_value(json_object_get(o, "path")), "/echo/a b");
	assert_string_equal(json_string_value(json_object_get(o, "body")),
			    "{\"state\":\"Paused\"}");
	json_decref(o);
}

static void test_large_bodies(void **state)
{
	_cleanup_free_ char *body = malloc(CTL_MAX_BODY + 2);
	_cleanup_free_ char *text = NULL;
	json_t *o;
	int status = 0;

	assert_non_null(body);
	/* Exactly CTL_MAX_BODY bytes is accepted, one more is 413. */
	memset(body, ' ', CTL_MAX_BODY + 1);
	body[0] = '1';
	body[CTL_MAX_BODY] = '\0';
	o = call_json("PUT", "/echo", body, 200);
	assert_int_equal(json_integer_value(json_object_get(o, "body_len")), CTL_MAX_BODY);
	json_decref(o);

	body[CTL_MAX_BODY] = ' ';
	body[CTL_MAX_BODY + 1] = '\0';
	assert_int_equal(ctl_call(sock_path, "PUT", "/echo", body, CALL_TIMEOUT_MS, &status, &text),
			 0);
	assert_int_equal(status, 413);
	assert_non_null(strstr(text, "fault_message"));
}

static void test_statuses(void **state)
{
	_cleanup_free_ char *text = NULL;
	json_t *o;
	int status = 0;

	assert_int_equal(
		ctl_call(sock_path, "PUT", "/empty", "{}", CALL_TIMEOUT_MS, &status, &text), 0);
	assert_int_equal(status, 204);
	assert_string_equal(text, "");

	o = call_json("PUT", "/created", "{}", 201);
	assert_true(json_is_true(json_object_get(o, "created")));
	json_decref(o);

	o = call_json("GET", "/no/such/thing", NULL, 404);
	assert_string_equal(json_string_value(json_object_get(o, "fault_message")),
			    "No such resource '/no/such/thing'");
	json_decref(o);

	o = call_json("GET", "/status42", NULL, 500);
	json_decref(o);

	free(text);
	text = NULL;
	assert_int_equal(
		ctl_call(sock_path, "GET", "/nobody200", NULL, CALL_TIMEOUT_MS, &status, &text), 0);
	assert_int_equal(status, 200);
	assert_string_equal(text, "");

	/* ret_body may be NULL. */
	assert_int_equal(ctl_call(sock_path, "GET", "/echo", NULL, CALL_TIMEOUT_MS, &status, NULL),
			 0);
	assert_int_equal(status, 200);
}

static void test_answer_too_large(void **state)
{
	char *text = NULL;
	int status = 0;

	assert_int_equal(ctl_call(sock_path, "GET", "/big", NULL, CALL_TIMEOUT_MS, &status, &text),
			 -EMSGSIZE);
	assert_null(text);
}

static void test_bad_requests(void **state)
{
	static const char nul_body[] = "PUT /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\na\0b";
	char *out;
	char *big;
	size_t n;

	out = RAW("HELLO\r\n\r\n");
	assert_true(strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
	assert_non_null(strstr(out, "Content-Type: application/json\r\n"));
	assert_non_null(strstr(out, "{\"fault_message\":"));

	out = raw_exchange(nul_body, sizeof(nul_body) - 1);
	assert_true(strncmp(out, "HTTP/1.1 400 ", 13) == 0);

	out = RAW("GET /echo/../etc HTTP/1.1\r\n\r\n");
	assert_true(strncmp(out, "HTTP/1.1 400 ", 13) == 0);

	out = RAW("PUT /echo HTTP/1.1\r\nContent-Length: 70000\r\n\r\n");
	assert_true(strncmp(out, "HTTP/1.1 413 ", 13) == 0);

	out = RAW("PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	assert_true(strncmp(out, "HTTP/1.1 411 Length Required\r\n", 30) == 0);
	assert_non_null(strstr(out, "\"fault_message\":"));

	out = RAW("GET /echo HTTP/2.0\r\n\r\n");
	assert_true(strncmp(out, "HTTP/1.1 505 ", 13) == 0);

	/* A head that never ends within CTL_MAX_HEAD. */
	n = CTL_MAX_HEAD + 100;
	big = malloc(n);
	assert_non_null(big);
	memcpy(big, "GET /echo HTTP/1.1\r\nX-Pad: ", 27);
	memset(big + 27, 'a', n - 27);
	out = raw_exchange(big, n);
	free(big);
	assert_true(strncmp(out, "HTTP/1.1 431 ", 13) == 0);

	/* The server is still serving after all of that. */
	json_decref(call_json("GET", "/echo", NULL, 200));
}

static void test_pipelining(void **state)
{
	static const char two[] = "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
				  "PUT /echo?n=2 HTTP/1.1\r\nContent-Length: 2\r\n"
				  "Connection: close\r\n\r\n{}";
	char *out = raw_exchange(two, sizeof(two) - 1);
	char *first = strstr(out, "HTTP/1.1 200 OK\r\n");
	char *second = first ? strstr(first + 1, "HTTP/1.1 200 OK\r\n") : NULL;

	assert_non_null(first);
	assert_non_null(second);
	/* In order, and only the second carries Connection: close. */
	assert_non_null(strstr(first, "\"query\":\"n=1\""));
	assert_true(strstr(first, "\"query\":\"n=1\"") < second);
	assert_non_null(strstr(second, "\"query\":\"n=2\""));
	assert_true(strstr(out, "Connection: close") > second);
}

static void test_keep_alive(void **state)
{
	_cleanup_close_ int fd = connect_to(sock_path);
	static const char req[] = "GET /empty HTTP/1.1\r\n\r\n";
	static const char head[] = "HEAD /created HTTP/1.1\r\n\r\n";
	char out[4096];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	assert_int_equal(poll(&p, 1, CALL_TIMEOUT_MS), 1);
	n = read(fd, out, sizeof(out) - 1);
	assert_true(n > 0);
	out[n] = '\0';
	assert_string_equal(out, "HTTP/1.1 204 No Content\r\n\r\n");
	/* The connection stays open: nothing more arrives, no EOF... */
	assert_int_equal(poll(&p, 1, 200), 0);
	/* ...a HEAD is answered without its body... */
	assert_int_equal(write(fd, head, sizeof(head) - 1), (ssize_t)sizeof(head) - 1);
	assert_int_equal(poll(&p, 1, CALL_TIMEOUT_MS), 1);
	n = read(fd, out, sizeof(out) - 1);
	assert_true(n > 0);
	out[n] = '\0';
	assert_true(strncmp(out, "HTTP/1.1 201 ", 13) == 0);
	assert_non_null(strstr(out, "Content-Length: 17\r\n"));
	assert_true(n >= 4 && strcmp(out + n - 4, "\r\n\r\n") == 0);
	/* ...and a further request on it is answered. */
	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	assert_int_equal(poll(&p, 1, CALL_TIMEOUT_MS), 1);
	n = read(fd, out, sizeof(out) - 1);
	assert_true(n > 0);
	out[n] = '\0';
	assert_string_equal(out, "HTTP/1.1 204 No Content\r\n\r\n");
}

/* curl's way with bodies over 1 KiB: the head alone, then the body after "100 Continue". */
static void test_expect_continue(void **state)
{
	_cleanup_close_ int fd = connect_to(sock_path);
	static const char head[] = "PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
				   "Content-Length: 2\r\nConnection: close\r\n\r\n";
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	char out[4096];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	bool eof;
	ssize_t n;

	assert_int_equal(write(fd, head, sizeof(head) - 1), (ssize_t)sizeof(head) - 1);
	assert_int_equal(poll(&p, 1, CALL_TIMEOUT_MS), 1);
	n = read(fd, out, sizeof(cont) - 1);
	assert_int_equal(n, (ssize_t)sizeof(cont) - 1);
	out[n] = '\0';
	assert_string_equal(out, cont);
	assert_int_equal(write(fd, "{}", 2), 2);
	read_until_eof(fd, out, sizeof(out), CALL_TIMEOUT_MS, &eof);
	assert_true(eof);
	assert_true(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_non_null(strstr(out, "\"body\":\"{}\""));
}

static void test_idle_timeout(void **state)
{
	_cleanup_close_ int fd = connect_to(sock_path);
	int64_t start = now_ms();
	char out[64];
	bool eof;

	/* Half a request, then silence: the server gives up after SERVER_TIMEOUT_MS. */
	assert_int_equal(write(fd, "GET /echo HT", 12), 12);
	assert_int_equal(read_until_eof(fd, out, sizeof(out), 4 * SERVER_TIMEOUT_MS, &eof), 0);
	assert_true(eof);
	assert_true(now_ms() - start >= SERVER_TIMEOUT_MS - 100);
}

/* A request trickled in a byte at a time, each well within the idle timeout, is cut off. */
static void test_slow_request(void **state)
{
	_cleanup_close_ int fd = connect_to(sock_path);
	static const char req[] = "GET /echo HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
	int64_t start = now_ms();
	bool closed = false;

	for (size_t i = 0; i < sizeof(req) - 1 && now_ms() - start < 4 * SERVER_TIMEOUT_MS; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		/* The server closing shows up as EOF (or a failed write). */
		if (poll(&p, 1, SERVER_TIMEOUT_MS / 4) == 1 ||
		    send(fd, req + i, 1, MSG_NOSIGNAL) != 1) {
			closed = true;
			break;
		}
	}
	assert_true(closed);
	assert_true(now_ms() - start >= SERVER_TIMEOUT_MS - 100);
	assert_true(now_ms() - start < 3 * SERVER_TIMEOUT_MS);
}

static void test_max_connections(void **state)
{
	int fds[CTL_MAX_CONNECTIONS];
	_cleanup_free_ char *text = NULL;
	int status = 0;

	for (size_t i = 0; i < CTL_MAX_CONNECTIONS; i++)
		fds[i] = connect_to(sock_path);
	usleep(200 * 1000); /* let the server accept them all */
	/* One more is closed at accept, without an answer. */
	assert_true(ctl_call(sock_path, "GET", "/echo", NULL, CALL_TIMEOUT_MS, &status, &text) < 0);
	for (size_t i = 0; i < CTL_MAX_CONNECTIONS; i++)
		close(fds[i]);
	usleep(200 * 1000);
	json_decref(call_json("GET", "/echo", NULL, 200));
}

static void test_call_timeout(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char *text = NULL;
	int status = 0;
	int64_t start;

	/* Listens, never accepts, never answers: the connect succeeds through the backlog. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/blackhole.sock", tmpdir);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	start = now_ms();
	assert_int_equal(ctl_call(sa.sun_path, "GET", "/", NULL, 300, &status, &text), -ETIMEDOUT);
	assert_true(now_ms() - start >= 290);
	assert_true(now_ms() - start < 1500);
	assert_null(text);
}

static void test_call_errors(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[160];
	int fd;
	int status = 0;

	snprintf(path, sizeof(path), "%s/none.sock", tmpdir);
	assert_int_equal(ctl_call(path, "GET", "/", NULL, 1000, &status, NULL), -ENOENT);

	/* A socket file nobody listens on any more. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", tmpdir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(ctl_call(sa.sun_path, "GET", "/", NULL, 1000, &status, NULL),
			 -ECONNREFUSED);

	/* Request lines that could smuggle a second request are refused before connecting. */
	assert_int_equal(ctl_call(sock_path, "GET", "/a b", NULL, 1000, &status, NULL), -EINVAL);
	assert_int_equal(ctl_call(sock_path, "GET", "/a\r\nX: y", NULL, 1000, &status, NULL),
			 -EINVAL);
	assert_int_equal(ctl_call(sock_path, "G T", "/", NULL, 1000, &status, NULL), -EINVAL);
	assert_int_equal(ctl_call(sock_path, "GET", "relative", NULL, 1000, &status, NULL),
			 -EINVAL);
}

/* What one asynchronous call ended with. */
struct async_result {
	int calls; /* times the callback ran */
	int r, status;
	char *body;
	int64_t at; /* now_ms() when it ran */
};

static void async_done(int r, int status, const char *body, void *userdata)
{
	struct async_result *a = userdata;

	a->calls++;
	a->r = r;
	a->status = status;
	a->body = body ? strdup(body) : NULL;
	a->at = now_ms();
}

/* Runs @base until every one of @n results has its callback, or 5 s pass. */
static void async_wait(struct event_base *base, struct async_result *res, size_t n)
{
	int64_t end = now_ms() + 5000;

	for (;;) {
		size_t done = 0;

		for (size_t i = 0; i < n; i++)
			done += res[i].calls > 0;
		if (done == n || now_ms() > end)
			break;
		assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
	}
}

/*
 * The asynchronous client: answers (with and without a body), a server that never answers
 * (the deadline, while another call on the same loop completes first), errors found at once,
 * an answer over the limit, and a cancelled call whose callback never runs.
 */
static void test_call_async(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int hole = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct event_base *base = event_base_new();
	struct async_result res[5] = {};
	struct ctl_async_call *c[5], *cancelled;
	char path[160];
	json_t *j;
	int64_t start;

	assert_non_null(base);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/async-hole.sock", tmpdir);
	assert_int_equal(bind(hole, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(hole, 4), 0);

	start = now_ms();
	assert_int_equal(ctl_call_start(base, sa.sun_path, "GET", "/", NULL, 300, async_done,
					&res[0], &c[0]),
			 0);
	assert_int_equal(ctl_call_start(base, sock_path, "PUT", "/echo/x", "{\"a\":1}", 2000,
					async_done, &res[1], &c[1]),
			 0);
	assert_int_equal(ctl_call_start(base, sock_path, "GET", "/empty", NULL, 2000, async_done,
					&res[2], &c[2]),
			 0);
	assert_int_equal(ctl_call_start(base, sock_path, "GET", "/big", NULL, 2000, async_done,
					&res[3], &c[3]),
			 0);
	assert_int_equal(ctl_call_start(base, sock_path, "GET", "/created", NULL, 2000, async_done,
					&res[4], &cancelled),
			 0);
	ctl_call_cancel(cancelled);
	/* Nothing is called back from within ctl_call_start(). */
	for (size_t i = 0; i < ELEMENTSOF(res); i++)
		assert_int_equal(res[i].calls, 0);
	async_wait(base, res, 4);

	assert_int_equal(res[0].calls, 1);
	assert_int_equal(res[0].r, -ETIMEDOUT);
	assert_null(res[0].body);
	assert_true(res[0].at - start >= 290);
	assert_true(res[0].at - start < 1500);

	/* The answered calls did not wait for the hung one. */
	assert_int_equal(res[1].calls, 1);
	assert_int_equal(res[1].r, 0);
	assert_int_equal(res[1].status, 200);
	assert_true(res[1].at < res[0].at);
	j = json_loads(res[1].body, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "method")), "PUT");
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/echo/x");
	assert_string_equal(json_string_value(json_object_get(j, "body")), "{\"a\":1}");
	json_decref(j);
	assert_int_equal(res[2].r, 0);
	assert_int_equal(res[2].status, 204);
	assert_string_equal(res[2].body, "");
	assert_int_equal(res[3].r, -EMSGSIZE);
	assert_int_equal(res[4].calls, 0);

	/* Failures known at once are returned, and nothing is called back. */
	snprintf(path, sizeof(path), "%s/none.sock", tmpdir);
	assert_int_equal(
		ctl_call_start(base, path, "GET", "/", NULL, 1000, async_done, &res[4], &c[4]),
		-ENOENT);
	assert_int_equal(ctl_call_start(base, sock_path, "GET", "/a b", NULL, 1000, async_done,
					&res[4], &c[4]),
			 -EINVAL);
	assert_int_equal(res[4].calls, 0);

	for (size_t i = 0; i < ELEMENTSOF(res); i++)
		free(res[i].body);
	event_base_free(base);
}

static void test_server_socket_file(void **state)
{
	struct event_base *base = event_base_new();
	struct ctl_server *s = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[160];
	struct stat st;
	int fd;

	assert_non_null(base);
	/* The child's socket is live: refused, and left alone. */
	assert_int_equal(ctl_server_new(base, sock_path, 0, handler, NULL, &s), -EADDRINUSE);
	assert_null(s);
	assert_int_equal(stat(sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);

	/* A stale one is replaced. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/replace.sock", tmpdir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(ctl_server_new(base, sa.sun_path, 0660, handler, NULL, &s), 0);
	assert_non_null(s);
	assert_int_equal(stat(sa.sun_path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	/* Live now (the listen backlog answers even without the loop running). */
	fd = connect_to(sa.sun_path);
	close(fd);
	assert_null(ctl_server_free(s));
	assert_int_equal(stat(sa.sun_path, &st), -1);
	assert_int_equal(errno, ENOENT);

	/* Not a socket: never unlinked. */
	snprintf(path, sizeof(path), "%s/regular", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
	s = NULL;
	assert_int_equal(ctl_server_new(base, path, 0, handler, NULL, &s), -EEXIST);
	assert_int_equal(stat(path, &st), 0);

	assert_null(ctl_server_free(NULL));
	event_base_free(base);
}

static void test_frame(void **state)
{
	struct ctl_frame f;
	static const char req[] = "\r\nPUT /x HTTP/1.1\nContent-Length: 2\n\n{}GET";

	/* Every prefix short of the whole request asks for more. */
	for (size_t n = 0; n < sizeof(req) - 4; n++)
		assert_int_equal(ctl_request_frame(req, n, &f), 0);
	assert_int_equal(ctl_request_frame(req, sizeof(req) - 1, &f), 1);
	assert_int_equal(f.head_len, sizeof(req) - 1 - 5);
	assert_int_equal(f.body_len, 2);
	assert_true(f.keep_alive);

	assert_int_equal(ctl_request_frame("GET / HTTP/1.0\r\n\r\n", 18, &f), 1);
	assert_int_equal(f.body_len, 0);
	assert_false(f.keep_alive);

	assert_int_equal(ctl_request_frame("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 37, &f),
			 -EBADMSG);
	assert_int_equal(f.status, 400);
	assert_non_null(f.fault);
	assert_int_equal(
		ctl_request_frame("GET / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 41, &f),
		-EMSGSIZE);
	assert_int_equal(f.status, 413);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame),
		cmocka_unit_test(test_get_echo),
		cmocka_unit_test(test_put_patch_body),
		cmocka_unit_test(test_large_bodies),
		cmocka_unit_test(test_statuses),
		cmocka_unit_test(test_answer_too_large),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_slow_request),
		cmocka_unit_test(test_max_connections),
		cmocka_unit_test(test_call_timeout),
		cmocka_unit_test(test_call_errors),
		cmocka_unit_test(test_call_async),
		cmocka_unit_test(test_server_socket_file),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
