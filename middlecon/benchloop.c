/* SPDX-License-Identifier: MIT */
#include "middlecon/benchloop.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Samples are uint32 nanoseconds (up to 4.29 s, clamped): half the memory of uint64. */
#define SAMPLE_MAX UINT32_MAX
/* Closed loop without --requests: room for this many replies per second over all clients. */
#define CLOSED_MAX_RATE 1000000.0

struct client_state {
	const struct benchloop_config *cfg;
	const struct benchloop_ops *ops;
	void *ctx;
	unsigned idx;
	pthread_barrier_t *ready;
	const uint64_t *start_ns; /* written by the main thread before the second barrier */
	uint32_t *samples; /* preallocated, capacity entries */
	uint64_t capacity;
	uint64_t quota; /* requests to make (--requests), or the capacity */
	uint64_t n; /* samples stored */
	uint64_t errors;
	uint64_t end_ns; /* when the last reply came in */
	int error; /* -errno from client_new() or a fatal call() */
	bool full; /* stopped because the sample array was full */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000u),
			       .tv_nsec = (long)(t % 1000000000u) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void *client_main(void *userdata)
{
	struct client_state *cs = userdata;
	const struct benchloop_config *cfg = cs->cfg;
	char *body = malloc(cfg->size ? cfg->size : 1);
	void *client = NULL;
	uint64_t start, deadline, interval = 0, next;

	if (!body)
		cs->error = -ENOMEM;
	else {
		memset(body, 'x', cfg->size ? cfg->size : 1);
		cs->error = cs->ops->client_new(cs->ctx, cs->idx, &client);
	}
	for (unsigned i = 0; cs->error == 0 && i < cfg->warmup; i++) {
		int r = cs->ops->call(client, body, cfg->size);

		if (r < 0)
			cs->error = r;
	}
	pthread_barrier_wait(cs->ready);
	pthread_barrier_wait(cs->ready); /* the main thread has set *start_ns */
	if (cs->error < 0)
		goto out;

	start = *cs->start_ns;
	deadline = cfg->requests ? UINT64_MAX : start + (uint64_t)(cfg->duration * 1e9);
	next = start;
	if (cfg->open_loop) {
		/* Client i's requests are due at start + (i + k * clients) / rate. */
		interval = (uint64_t)(1e9 * cfg->clients / cfg->rate);
		next = start + (uint64_t)(1e9 * cs->idx / cfg->rate);
	}
	while (cs->n + cs->errors < cs->quota) {
		uint64_t t0, t1;
		int r;

		if (cfg->open_loop) {
			if (next >= deadline)
				break;
			if (now_ns() < next)
				sleep_until(next);
			t0 = next;
			next += interval;
		} else {
			t0 = now_ns();
			if (t0 >= deadline)
				break;
		}
		r = cs->ops->call(client, body, cfg->size);
		t1 = now_ns();
		cs->end_ns = t1;
		if (r < 0) {
			cs->error = r;
			break;
		}
		if (r > 0) {
			cs->errors++;
			continue;
		}
		cs->samples[cs->n++] = t1 - t0 > SAMPLE_MAX ? SAMPLE_MAX : (uint32_t)(t1 - t0);
	}
	cs->full = cs->n + cs->errors >= cs->quota && !cfg->requests;
out:
	if (client)
		cs->ops->client_free(client);
	free(body);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The nearest-rank percentile @q (0..1] of the sorted @v (n > 0), in microseconds. */
static double percentile(const uint32_t *v, uint64_t n, double q)
{
	uint64_t rank = (uint64_t)ceil(q * (double)n);

	if (rank < 1)
		rank = 1;
	return v[rank - 1] / 1000.0;
}

int benchloop_run(const struct benchloop_config *cfg, const struct benchloop_ops *ops, void *ctx,
		  struct benchloop_result *ret)
{
	struct client_state *cs = NULL;
	pthread_t *threads = NULL;
	pthread_barrier_t ready;
	uint32_t *all = NULL;
	uint64_t per_client, total = 0, errors = 0, start_ns = 0, end_ns = 0;
	unsigned started = 0, connected = 0;
	int r = 0, first_error = 0;

	if (cfg->clients == 0 || cfg->size > 16u << 20 ||
	    (cfg->requests == 0 && !(cfg->duration > 0)) || (cfg->open_loop && !(cfg->rate > 0)))
		return -EINVAL;

	if (cfg->requests)
		per_client = cfg->requests / cfg->clients + 1;
	else if (cfg->open_loop)
		per_client = (uint64_t)(cfg->rate * cfg->duration / cfg->clients) + 2;
	else
		per_client = (uint64_t)(CLOSED_MAX_RATE * cfg->duration / cfg->clients) + 1;

	cs = calloc(cfg->clients, sizeof(*cs));
	threads = calloc(cfg->clients, sizeof(*threads));
	if (!cs || !threads) {
		r = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < cfg->clients; i++) {
		cs[i] = (struct client_state){ .cfg = cfg,
					       .ops = ops,
					       .ctx = ctx,
					       .idx = i,
					       .ready = &ready,
					       .start_ns = &start_ns,
					       .capacity = per_client,
					       .quota = per_client };
		if (cfg->requests) /* spread the remainder over the first clients */
			cs[i].quota =
				cfg->requests / cfg->clients + (i < cfg->requests % cfg->clients);
		cs[i].samples = malloc(per_client * sizeof(uint32_t));
		if (!cs[i].samples) {
			r = -ENOMEM;
			goto out;
		}
		/* Fault the pages in now, not during the run. */
		memset(cs[i].samples, 0, per_client * sizeof(uint32_t));
	}

	r = -pthread_barrier_init(&ready, NULL, cfg->clients + 1);
	if (r < 0)
		goto out;
	for (; started < cfg->clients; started++) {
		r = -pthread_create(&threads[started], NULL, client_main, &cs[started]);
		if (r < 0)
			break;
	}
	if (r < 0) {
		/* Cannot happen with a barrier waiting for every client: give up loudly. */
		fprintf(stderr, "pthread_create: %s\n", strerror(-r));
		abort();
	}
	pthread_barrier_wait(&ready); /* every client connected and warmed up */
	start_ns = now_ns();
	pthread_barrier_wait(&ready);
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&ready);

	for (unsigned i = 0; i < cfg->clients; i++) {
		if (cs[i].error < 0 && !first_error)
			first_error = cs[i].error;
		if (cs[i].error < 0)
			fprintf(stderr, "client %u: %s\n", i, strerror(-cs[i].error));
		if (cs[i].full)
			fprintf(stderr, "client %u: sample array full, stopped early\n", i);
		if (cs[i].n + cs[i].errors > 0)
			connected++;
		total += cs[i].n;
		errors += cs[i].errors;
		if (cs[i].end_ns > end_ns)
			end_ns = cs[i].end_ns;
	}
	if (connected == 0) {
		r = first_error ? first_error : -EIO;
		goto out;
	}

	all = malloc((total ? total : 1) * sizeof(uint32_t));
	if (!all) {
		r = -ENOMEM;
		goto out;
	}
	total = 0;
	for (unsigned i = 0; i < cfg->clients; i++) {
		memcpy(all + total, cs[i].samples, cs[i].n * sizeof(uint32_t));
		total += cs[i].n;
	}
	qsort(all, total, sizeof(uint32_t), cmp_u32);

	*ret = (struct benchloop_result){ .ok = total, .errors = errors };
	ret->seconds = (double)(end_ns - start_ns) / 1e9;
	ret->rate = ret->seconds > 0 ? (double)total / ret->seconds : 0;
	if (total > 0) {
		ret->p50 = percentile(all, total, 0.50);
		ret->p90 = percentile(all, total, 0.90);
		ret->p99 = percentile(all, total, 0.99);
		ret->p999 = percentile(all, total, 0.999);
		ret->max = all[total - 1] / 1000.0;
	}
	r = 0;
out:
	if (cs)
		for (unsigned i = 0; i < cfg->clients; i++)
			free(cs[i].samples);
	free(all);
	free(cs);
	free(threads);
	return r;
}

void benchloop_print(const char *label, const struct benchloop_config *cfg,
		     const struct benchloop_result *res)
{
	printf("%s mode=%s clients=%u size=%zu", label, cfg->open_loop ? "open" : "closed",
	       cfg->clients, cfg->size);
	if (cfg->open_loop)
		printf(" target_rate=%.0f", cfg->rate);
	printf(" ok=%llu errors=%llu seconds=%.3f rate=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f"
	       " p999_us=%.1f max_us=%.1f\n",
	       (unsigned long long)res->ok, (unsigned long long)res->errors, res->seconds,
	       res->rate, res->p50, res->p90, res->p99, res->p999, res->max);
	fflush(stdout);
}

static int parse_double(const char *s, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || isinf(v))
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_u64(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int benchloop_parse_option(struct benchloop_config *cfg, const char *name, const char *value)
{
	uint64_t u;
	double d;

	if (strcmp(name, "mode") == 0) {
		if (strcmp(value, "closed") == 0)
			cfg->open_loop = false;
		else if (strcmp(value, "open") == 0)
			cfg->open_loop = true;
		else
			return -EINVAL;
		return 1;
	}
	if (strcmp(name, "duration") == 0 || strcmp(name, "rate") == 0) {
		if (parse_double(value, &d) < 0 || d <= 0)
			return -EINVAL;
		*(name[0] == 'd' ? &cfg->duration : &cfg->rate) = d;
		return 1;
	}
	if (strcmp(name, "clients") == 0 || strcmp(name, "size") == 0 ||
	    strcmp(name, "requests") == 0 || strcmp(name, "warmup") == 0) {
		if (parse_u64(value, &u) < 0)
			return -EINVAL;
		if (name[0] == 'c') {
			if (u < 1 || u > 4096)
				return -EINVAL;
			cfg->clients = (unsigned)u;
		} else if (name[0] == 's') {
			if (u > 16u << 20)
				return -EINVAL;
			cfg->size = (size_t)u;
		} else if (name[0] == 'r') {
			cfg->requests = u;
		} else {
			if (u > 1000000)
				return -EINVAL;
			cfg->warmup = (unsigned)u;
		}
		return 1;
	}
	return 0;
}
