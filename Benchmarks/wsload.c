// wsload: WebSocket-over-TLS load generator for the benchmark suite.
//
// Opens C connections to https://HOST:PORT, upgrades each at PATH, then each
// connection sends one 64-byte (configurable) masked binary message at a time
// (pipeline depth 1) and waits for its echo, which it verifies byte for byte.
// Runs for D seconds after a warm-up and prints one JSON line: messages/s,
// p50/p99 latency (µs), errors (failed connects, bad echoes, closes).
//
// Mode "idle" opens C WebSockets, prints "READY n" on stdout, then holds them
// until stdin closes (used for the memory-per-idle-WebSocket figure and the
// scale run). With WSLOAD_SOURCE=127.0.0.N set, connections come from that
// source address (the ephemeral-port range is per source and destination, so
// several generators with different sources get past ~28,000 connections).
//
// Build: cc -O2 -o wsload wsload.c -lssl -lcrypto
// Usage: wsload echo|idle HOST PORT PATH CONNECTIONS SECONDS [SIZE]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_HANDSHAKE, ST_UPGRADE, ST_OPEN, ST_DEAD };

typedef struct {
    int fd;
    SSL *ssl;
    int state;
    unsigned char in[8192];
    size_t inlen;
    unsigned char expect[1024];
    size_t size;
    uint64_t sent_ns;
    uint64_t counter;
} conn_t;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static const char *host;
static int port;
static const char *path;
static uint32_t *lat;
static size_t latn, latcap;
static uint64_t messages, errors, measuring;

static int ssl_write_all(conn_t *c, const void *buf, int len) {
    // The socket is blocking for writes of these tiny messages; loops only on WANT_*.
    int off = 0;
    while (off < len) {
        int n = SSL_write(c->ssl, (const char *)buf + off, len - off);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                struct pollfd p = {.fd = c->fd, .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
                poll(&p, 1, 1000);
                continue;
            }
            return -1;
        }
        off += n;
    }
    return 0;
}

static int send_message(conn_t *c) {
    unsigned char frame[1100];
    size_t n = c->size;
    frame[0] = 0x82;
    size_t h;
    if (n < 126) {
        frame[1] = (unsigned char)(0x80 | n);
        h = 2;
    } else {
        frame[1] = 0x80 | 126;
        frame[2] = (unsigned char)(n >> 8);
        frame[3] = (unsigned char)n;
        h = 4;
    }
    unsigned char mask[4];
    RAND_bytes(mask, 4);
    memcpy(frame + h, mask, 4);
    c->counter++;
    for (size_t i = 0; i < n; i++) c->expect[i] = (unsigned char)('a' + ((c->counter + i + (size_t)c->fd) % 26));
    for (size_t i = 0; i < n; i++) frame[h + 4 + i] = c->expect[i] ^ mask[i & 3];
    c->sent_ns = now_ns();
    return ssl_write_all(c, frame, (int)(h + 4 + n));
}

static void fail(conn_t *c) {
    if (c->state != ST_DEAD) errors++;
    c->state = ST_DEAD;
}

// A connection that failed while being set up gives its descriptor back at once (at scale,
// failures must not eat the descriptor limit).
static void setup_failed(conn_t *c) {
    fail(c);
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static void on_data(conn_t *c, int echo_mode) {
    if (c->state == ST_UPGRADE) {
        unsigned char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
        if (!end) return;
        if (c->inlen < 12 || memcmp(c->in, "HTTP/1.1 101", 12) != 0) {
            fail(c);
            return;
        }
        size_t used = (size_t)(end - c->in) + 4;
        memmove(c->in, c->in + used, c->inlen - used);
        c->inlen -= used;
        c->state = ST_OPEN;
        if (echo_mode && send_message(c) < 0) fail(c);
        return;
    }
    while (c->state == ST_OPEN && c->inlen >= 2) {
        size_t len = c->in[1] & 0x7f, h = 2;
        if (len == 126) {
            if (c->inlen < 4) return;
            len = ((size_t)c->in[2] << 8) | c->in[3];
            h = 4;
        }
        if (c->inlen < h + len) return;
        int opcode = c->in[0] & 0x0f;
        if (opcode != 0x2 || len != c->size || memcmp(c->in + h, c->expect, len) != 0) {
            fail(c);
            return;
        }
        uint64_t t = now_ns();
        if (measuring) {
            messages++;
            if (latn == latcap) {
                latcap = latcap ? latcap * 2 : 1 << 20;
                lat = realloc(lat, latcap * sizeof *lat);
            }
            lat[latn++] = (uint32_t)((t - c->sent_ns) / 1000);
        }
        memmove(c->in, c->in + h + len, c->inlen - h - len);
        c->inlen -= h + len;
        if (send_message(c) < 0) fail(c);
    }
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: wsload echo|idle HOST PORT PATH CONNECTIONS SECONDS [SIZE]\n");
        return 2;
    }
    int echo_mode = strcmp(argv[1], "echo") == 0;
    host = argv[2];
    port = atoi(argv[3]);
    path = argv[4];
    int nconn = atoi(argv[5]);
    double seconds = atof(argv[6]);
    size_t size = argc > 7 ? (size_t)atoi(argv[7]) : 64;
    if (size > 1000) size = 1000;
    signal(SIGPIPE, SIG_IGN);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    int ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    const char *source = getenv("WSLOAD_SOURCE");
    struct sockaddr_in src = {.sin_family = AF_INET};
    if (source) inet_pton(AF_INET, source, &src.sin_addr);
    int opened = 0;
    for (int i = 0; i < nconn; i++) {
        conn_t *c = &conns[i];
        c->size = size;
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0) {
            setup_failed(c);
            continue;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // Setup is blocking; bounded so that a proxy that stops accepting cannot hang us.
        struct timeval tv = {.tv_sec = 10};
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (source) {
            setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
                fail(c);
                continue;
            }
        }
        if (!echo_mode && i > 0 && i % 2000 == 0) {
            fprintf(stderr, "wsload: %d connections opened, %llu failed\n", opened, (unsigned long long)errors);
        }
        if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) {
            setup_failed(c);
            continue;
        }
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        if (SSL_connect(c->ssl) != 1) {
            setup_failed(c);
            continue;
        }
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                         path);
        c->state = ST_UPGRADE;
        if (ssl_write_all(c, req, n) < 0) {
            setup_failed(c);
            continue;
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        opened++;
    }

    uint64_t start = now_ns();
    uint64_t warm = echo_mode ? 1000000000ull : 0;
    uint64_t stop = start + warm + (uint64_t)(seconds * 1e9);
    int ready_reported = 0;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (echo_mode && t >= stop) break;
        if (echo_mode && !measuring && t >= start + warm) measuring = 1;
        if (!echo_mode && !ready_reported) {
            int open = 0;
            for (int i = 0; i < nconn; i++) open += conns[i].state == ST_OPEN;
            if (open + (int)errors >= nconn) {
                printf("READY %d\n", open);
                fflush(stdout);
                ready_reported = 1;
            }
            if (!echo_mode && t >= start + (uint64_t)(seconds * 1e9) && !ready_reported) {
                printf("READY %d\n", open);
                fflush(stdout);
                ready_reported = 1;
            }
        }
        if (!echo_mode && ready_reported) {
            // Hold the connections until stdin closes.
            char b[64];
            while (read(0, b, sizeof b) > 0) {}
            break;
        }
        int n = epoll_wait(ep, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->state == ST_DEAD) continue;
            for (;;) {
                int r = SSL_read(c->ssl, c->in + c->inlen, (int)(sizeof c->in - c->inlen));
                if (r <= 0) {
                    int e = SSL_get_error(c->ssl, r);
                    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                        fail(c);
                        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    }
                    break;
                }
                c->inlen += (size_t)r;
                on_data(c, echo_mode);
                if (c->state == ST_DEAD) break;
            }
        }
    }
    double elapsed = echo_mode ? seconds : (double)(now_ns() - start) / 1e9;
    qsort(lat, latn, sizeof *lat, cmp_u32);
    uint32_t p50 = latn ? lat[latn / 2] : 0, p99 = latn ? lat[(size_t)((double)latn * 0.99)] : 0;
    printf("{\"mode\":\"%s\",\"connections\":%d,\"opened\":%d,\"messages\":%llu,\"rate\":%.1f,"
           "\"p50_us\":%u,\"p99_us\":%u,\"errors\":%llu}\n",
           argv[1], nconn, opened, (unsigned long long)messages, (double)messages / elapsed, p50, p99,
           (unsigned long long)errors);
    return 0;
}
