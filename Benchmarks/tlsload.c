// tlsload: full-TLS-handshake load generator for the benchmark suite.
//
// wrk resumes TLS sessions (tickets), so it measures resumption, not handshakes. Here every
// request is a new TCP connection with a full handshake: no session cache, no tickets, a new SSL
// object each time and never SSL_set_session. Each of C threads loops: connect, handshake, send
// `GET PATH` with `Connection: close`, read the whole response (status 200 and Content-Length
// bytes are required), close. Runs a 1 s warm-up, then counts for D seconds and prints one JSON
// line: handshakes/s, p50/p99 latency (µs, connect → response complete), errors, and how many
// sessions were (wrongly) resumed.
//
// Build: cc -O2 -pthread -o tlsload tlsload.c -lssl -lcrypto
// Usage: tlsload HOST PORT PATH CONNECTIONS SECONDS
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
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

#define MAX_SAMPLES 400000

static const char *host;
static int port;
static const char *path;
static SSL_CTX *ctx;
static double warm_until, stop_at;
static atomic_ulong handshakes, errors, reused;
static uint32_t *samples;
static atomic_ulong sample_count;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

// One request on a fresh connection; returns 0 on success.
static int one_request(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    int rc = -1;
    SSL *ssl = NULL;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) goto done;
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (SSL_connect(ssl) != 1) goto done;
    if (SSL_session_reused(ssl)) atomic_fetch_add(&reused, 1);
    char request[512];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
    if (SSL_write(ssl, request, n) != n) goto done;
    char buf[16384];
    size_t have = 0;         // head bytes, until the head is complete
    long body = 0;           // body bytes received
    long body_wanted = -1;
    int status = 0;
    int head_done = 0;
    for (;;) {
        int r = SSL_read(ssl, head_done ? buf : buf + have, (int)(head_done ? sizeof buf : sizeof buf - have));
        if (r <= 0) break;
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
            sscanf(buf, "HTTP/1.%*d %d", &status);
            for (char *line = buf; line; line = strstr(line, "\r\n")) {
                if (line != buf) line += 2;
                if (strncasecmp(line, "content-length:", 15) == 0) body_wanted = atol(line + 15);
            }
            body = (long)(have - ((size_t)(end - buf) + 4));
        }
        if (body_wanted >= 0 && body >= body_wanted) break;
    }
    if (status == 200 && body_wanted >= 0 && body >= body_wanted) rc = 0;
done:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return rc;
}

static void *worker(void *unused) {
    (void)unused;
    while (now() < stop_at) {
        double start = now();
        int rc = one_request();
        double end = now();
        if (start < warm_until) continue;
        if (end > stop_at) break;
        if (rc != 0) {
            atomic_fetch_add(&errors, 1);
            usleep(10000);
            continue;
        }
        atomic_fetch_add(&handshakes, 1);
        unsigned long slot = atomic_fetch_add(&sample_count, 1);
        if (slot < MAX_SAMPLES) samples[slot] = (uint32_t)((end - start) * 1e6);
    }
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
    host = argv[1];
    port = atoi(argv[2]);
    path = argv[3];
    int connections = atoi(argv[4]);
    double seconds = atof(argv[5]);
    if (connections < 1 || connections > 1024 || seconds <= 0) {
        fprintf(stderr, "tlsload: CONNECTIONS must be 1…1024 and SECONDS > 0\n");
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    samples = calloc(MAX_SAMPLES, sizeof *samples);
    double start = now();
    warm_until = start + 1.0;
    stop_at = warm_until + seconds;
    pthread_t threads[1024];
    for (int i = 0; i < connections; i++) pthread_create(&threads[i], NULL, worker, NULL);
    for (int i = 0; i < connections; i++) pthread_join(threads[i], NULL);
    unsigned long count = atomic_load(&sample_count);
    if (count > MAX_SAMPLES) count = MAX_SAMPLES;
    qsort(samples, count, sizeof *samples, compare);
    uint32_t p50 = count ? samples[count / 2] : 0;
    uint32_t p99 = count ? samples[(size_t)(count * 0.99)] : 0;
    printf("{\"connections\":%d,\"handshakes\":%lu,\"rate\":%.1f,\"p50_us\":%u,\"p99_us\":%u,\"errors\":%lu,"
           "\"reused\":%lu}\n",
           connections, atomic_load(&handshakes), atomic_load(&handshakes) / seconds, p50, p99,
           atomic_load(&errors), atomic_load(&reused));
    return 0;
}
