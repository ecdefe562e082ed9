// tlsload: full-TLS-handshake load generator for the benchmark suite.
//
// wrk resumes TLS sessions (tickets), so it measures resumption, not handshakes. Here every
// request is a new TCP connection with a full handshake: no session cache, no tickets, a new SSL
// object each time and never SSL_set_session. Each of C threads loops: connect, handshake, send
// `GET PATH` with `Connection: close`, read the whole response (status 200 and Content-Length
// bytes are required), close. Runs a 1 s warm-up, then counts for D seconds and prints one JSON
// line: handshakes/s, p50/p99 latency (µs, connect → response complete), errors, and how many
// sessions were (wrongly) resumed. A request counts in the window it completes in. Sockets time
// out after 5 s and a watchdog prints and exits at SECONDS + 9 s whatever the server does.
//
// Build: cc -O2 -pthread -o tlsload tlsload.c -lssl -lcrypto
// Usage: tlsload HOST PORT PATH CONNECTIONS SECONDS
#define _GNU_SOURCE
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    pthread_t thread;
    uint32_t *lat;  // latencies (µs) of requests completed in the window
    size_t n, cap;
} worker_t;

static struct addrinfo *target;
static const char *path;
static SSL_CTX *ctx;
static double warm_until, stop_at;
static atomic_ulong errors, reused, finished;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// One request on a fresh connection with a full handshake; returns 0 on success.
static int one_request(void) {
    int fd = socket(target->ai_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect()
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = -1, handshaken = 0;
    SSL *ssl = NULL;
    if (connect(fd, target->ai_addr, target->ai_addrlen) != 0) goto done;
    ssl = SSL_new(ctx);
    if (!ssl) goto done;
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (SSL_connect(ssl) != 1) goto done;
    handshaken = 1;
    if (SSL_session_reused(ssl)) {
        atomic_fetch_add(&reused, 1);
        goto done;
    }
    char request[1024];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
    if (n <= 0 || n >= (int)sizeof request || SSL_write(ssl, request, n) != n) goto done;
    char buf[16384];
    size_t have = 0;  // head bytes, until the head is complete
    long body = 0;    // body bytes received
    long body_wanted = -1;
    int status = 0, head_done = 0, eof = 0;
    // Each read waits at most 5 s; a server that dribbles bytes is cut off at the end of the run.
    while (now() < stop_at + 5) {
        int r = SSL_read(ssl, head_done ? buf : buf + have, (int)(head_done ? sizeof buf : sizeof buf - have));
        if (r <= 0) {
            // With SSL_OP_IGNORE_UNEXPECTED_EOF a bare TCP close also reads as ZERO_RETURN.
            eof = SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN;
            break;
        }
        if (head_done) {
            body += r;
        } else {
            have += (size_t)r;
            char *end = memmem(buf, have, "\r\n\r\n", 4);
            if (!end) {
                if (have >= sizeof buf) break;  // a head this large is not what we test
                continue;
            }
            head_done = 1;
            *end = 0;
            if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) status = 0;
            for (char *line = strstr(buf, "\r\n"); line; line = strstr(line, "\r\n")) {
                line += 2;
                if (strncasecmp(line, "content-length:", 15) == 0) body_wanted = atol(line + 15);
            }
            body = (long)(have - ((size_t)(end - buf) + 4));
        }
        if (body_wanted >= 0 && body >= body_wanted) break;
    }
    // Complete: Content-Length bytes, or (without Content-Length) everything up to a clean EOF.
    if (head_done && status == 200 && (body_wanted >= 0 ? body >= body_wanted : eof)) rc = 0;
done:
    if (ssl) {
        if (handshaken) SSL_shutdown(ssl);  // sends our close_notify; does not wait for the peer's
        SSL_free(ssl);
    }
    ERR_clear_error();
    close(fd);
    return rc;
}

static void *worker(void *arg) {
    worker_t *w = arg;
    while (now() < stop_at) {
        double start = now();
        int rc = one_request();
        double end = now();
        int counted = end >= warm_until && end <= stop_at;  // counted in the window it completes in
        if (rc != 0) {
            if (end >= warm_until) atomic_fetch_add(&errors, 1);  // including timeouts that end late
            usleep(10000);
            continue;
        }
        if (!counted) continue;
        if (w->n == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 1 << 16;
            uint32_t *lat = realloc(w->lat, cap * sizeof *lat);
            if (!lat) continue;
            w->lat = lat;
            w->cap = cap;
        }
        w->lat[w->n++] = (uint32_t)((end - start) * 1e6);
    }
    atomic_fetch_add(&finished, 1);
    return NULL;
}

static int compare(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: tlsload HOST PORT PATH CONNECTIONS SECONDS\n");
        return 2;
    }
    path = argv[3];
    int connections = atoi(argv[4]);
    double seconds = atof(argv[5]);
    if (connections < 1 || connections > 1024 || !(seconds > 0) || strlen(path) > 900) {
        fprintf(stderr, "tlsload: CONNECTIONS must be 1…1024 and SECONDS > 0\n");
        return 2;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int gai = getaddrinfo(argv[1], argv[2], &hints, &target);
    if (gai != 0) {
        fprintf(stderr, "tlsload: %s:%s: %s\n", argv[1], argv[2], gai_strerror(gai));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);  // a server that resets mid-write is an error, not our death
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    worker_t *workers = calloc((size_t)connections, sizeof *workers);
    double start = now();
    warm_until = start + 1.0;
    stop_at = warm_until + seconds;
    int started = 0;
    for (int i = 0; i < connections; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker, &workers[i]) != 0) {
            fprintf(stderr, "tlsload: could not start thread %d\n", i);
            stop_at = 0;  // the started ones stop at once
            break;
        }
        started++;
    }
    // Wait for the workers; one stuck in a read is abandoned (each read waits ≤ 5 s, so this only
    // matters for a server that dribbles the handshake) and counted as an error.
    while ((int)atomic_load(&finished) < started && now() < stop_at + 8) usleep(10000);
    int all = (int)atomic_load(&finished) == started;
    if (all)
        for (int i = 0; i < started; i++) pthread_join(workers[i].thread, NULL);
    if (!started) return 1;
    size_t count = 0;
    for (int i = 0; i < started; i++) count += workers[i].n;
    uint32_t *lat = malloc((count ? count : 1) * sizeof *lat);
    size_t k = 0;
    for (int i = 0; i < started; i++) {
        size_t n = workers[i].n;  // an abandoned worker no longer records (its request ends late)
        if (n && workers[i].lat) memcpy(lat + k, workers[i].lat, n * sizeof *lat);
        k += n;
    }
    qsort(lat, k, sizeof *lat, compare);
    uint32_t p50 = k ? lat[k / 2] : 0;
    uint32_t p99 = k ? lat[(size_t)((double)k * 0.99)] : 0;
    unsigned long done = k, stuck = (unsigned long)started - atomic_load(&finished);
    printf("{\"connections\":%d,\"handshakes\":%lu,\"rate\":%.1f,\"p50_us\":%u,\"p99_us\":%u,\"errors\":%lu,"
           "\"reused\":%lu}\n",
           connections, done, (double)done / seconds, p50, p99, atomic_load(&errors) + stuck, atomic_load(&reused));
    fflush(stdout);
    if (!all) _exit(0);  // do not wait for abandoned threads
    return 0;
}
