// wsload: WebSocket-over-TLS load generator for the benchmark suite.
//
// Opens C connections to https://HOST:PORT, upgrades each at PATH, then each
// connection sends one 64-byte (configurable) masked binary message at a time
// (pipeline depth 1) and waits for its echo, which it verifies byte for byte.
// Runs for D seconds after a warm-up and prints one JSON line: messages/s,
// p50/p99 latency (µs), errors (failed connects, bad echoes, closes).
//
// Mode "idle" opens C WebSockets, prints "READY n ..." on stdout (n: how many
// are open; failures are counted by cause, not fatal), then holds them until
// stdin closes (used for the memory-per-idle-WebSocket figure and the scale
// run). Setup is non-blocking with at most WSLOAD_INFLIGHT (default 256)
// connections between connect() and the 101 at once, each bounded to 20 s,
// and the whole ramp to SECONDS; an open WebSocket keeps only its descriptor,
// its SSL object (buffers released) and a few bytes, so one process holds
// ~17,000. While holding, a line "CHECK k" on stdin sends one frame on k open
// WebSockets spread over all of them and answers "CHECKED ok k" once the
// echoes are back (or after 10 s). With WSLOAD_SOURCE=127.0.0.N set,
// connections come from that source address (the ephemeral-port range is per
// source and destination, so several generators with different sources get
// past ~28,000 connections).
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
#include <sys/time.h>
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

// --- idle mode ---------------------------------------------------------------
enum { I_FREE, I_CONNECTING, I_HANDSHAKE, I_SEND, I_UPGRADE, I_OPEN, I_DEAD };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t checking; // a CHECK frame is outstanding
    uint8_t chklen;
    uint16_t inlen;
    uint32_t started_ms; // setup start, ms since the run began
    SSL *ssl;
    unsigned char *in; // the upgrade response, only during setup
    unsigned char chk[24];
} iconn_t;

#define UPGRADE_BUF 2048
#define SETUP_TIMEOUT_MS 20000

static uint64_t run_start_ns;
static int iep;
static long n_open, n_inflight, n_closed;
static long f_socket, f_emfile, f_addr, f_connect, f_tls, f_upgrade, f_timeout;
static const char *upgrade_req;
static int upgrade_len;

static uint32_t ms_now(void) { return (uint32_t)((now_ns() - run_start_ns) / 1000000ull); }

static void idle_watch(iconn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(iep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void idle_release(iconn_t *c) {
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd); // also leaves the epoll set
    c->fd = -1;
    free(c->in);
    c->in = NULL;
}

static void idle_setup_failed(iconn_t *c, long *counter) {
    (*counter)++;
    n_inflight--;
    idle_release(c);
    c->state = I_DEAD;
}

static void idle_start(iconn_t *c, SSL_CTX *ctx, const struct sockaddr_in *dst, const struct sockaddr_in *src) {
    (void)ctx;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    c->state = I_CONNECTING;
    c->started_ms = ms_now();
    n_inflight++;
    if (c->fd < 0) {
        idle_setup_failed(c, errno == EMFILE || errno == ENFILE ? &f_emfile : &f_socket);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (src) {
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (const struct sockaddr *)src, sizeof *src) < 0) {
            idle_setup_failed(c, &f_addr);
            return;
        }
    }
    if (connect(c->fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS) {
        idle_setup_failed(c, errno == EADDRNOTAVAIL ? &f_addr : &f_connect);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(iep, EPOLL_CTL_ADD, c->fd, &ev);
}

// Drives a connection's setup as far as it goes without blocking.
static void idle_advance(iconn_t *c, SSL_CTX *ctx) {
    if (c->state == I_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == EINPROGRESS || err == EALREADY) return;
        if (err) {
            idle_setup_failed(c, err == EADDRNOTAVAIL ? &f_addr : &f_connect);
            return;
        }
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        c->state = I_HANDSHAKE;
    }
    if (c->state == I_HANDSHAKE) {
        int r = SSL_connect(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) idle_watch(c, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE) idle_watch(c, EPOLLOUT);
            else idle_setup_failed(c, &f_tls);
            return;
        }
        c->state = I_SEND;
    }
    if (c->state == I_SEND) {
        int r = SSL_write(c->ssl, upgrade_req, upgrade_len);
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) idle_watch(c, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE) idle_watch(c, EPOLLOUT);
            else idle_setup_failed(c, &f_tls);
            return;
        }
        c->in = malloc(UPGRADE_BUF);
        c->inlen = 0;
        c->state = I_UPGRADE;
        idle_watch(c, EPOLLIN);
    }
    if (c->state == I_UPGRADE) {
        for (;;) {
            if (c->inlen >= UPGRADE_BUF) {
                idle_setup_failed(c, &f_upgrade);
                return;
            }
            int r = SSL_read(c->ssl, c->in + c->inlen, UPGRADE_BUF - c->inlen);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    idle_watch(c, EPOLLOUT | EPOLLIN);
                    return;
                }
                idle_setup_failed(c, &f_upgrade);
                return;
            }
            c->inlen += (uint16_t)r;
            if (memmem(c->in, c->inlen, "\r\n\r\n", 4)) break;
        }
        if (c->inlen < 12 || memcmp(c->in, "HTTP/1.1 101", 12) != 0) {
            idle_setup_failed(c, &f_upgrade);
            return;
        }
        free(c->in);
        c->in = NULL;
        c->inlen = 0;
        c->state = I_OPEN;
        n_inflight--;
        n_open++;
        idle_watch(c, EPOLLIN);
    }
}

static void check_payload(size_t index, unsigned char out[16]) {
    for (int i = 0; i < 16; i++) out[i] = (unsigned char)('A' + (index * 7 + (size_t)i) % 26);
}

static long check_pending, check_ok, check_sent;

// Data (or a close) on an open WebSocket: the echo of a CHECK frame, or the end of the connection.
static void idle_open_readable(iconn_t *c, size_t index) {
    for (;;) {
        unsigned char buf[512];
        int r = SSL_read(c->ssl, buf, sizeof buf);
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
            if (c->checking) { c->checking = 0; check_pending--; }
            n_open--;
            n_closed++;
            idle_release(c);
            c->state = I_DEAD;
            return;
        }
        if (!c->checking) continue; // unexpected data: ignored
        size_t take = (size_t)r < sizeof c->chk - c->chklen ? (size_t)r : sizeof c->chk - c->chklen;
        memcpy(c->chk + c->chklen, buf, take);
        c->chklen += (uint8_t)take;
        if (c->chklen >= 18) {
            unsigned char want[16];
            check_payload(index, want);
            if (c->chk[0] == 0x82 && c->chk[1] == 16 && memcmp(c->chk + 2, want, 16) == 0) check_ok++;
            c->checking = 0;
            c->chklen = 0;
            check_pending--;
        }
    }
}

static void idle_send_check(iconn_t *c, size_t index) {
    unsigned char frame[22] = {0x82, 0x80 | 16};
    unsigned char mask[4], payload[16];
    RAND_bytes(mask, 4);
    memcpy(frame + 2, mask, 4);
    check_payload(index, payload);
    for (int i = 0; i < 16; i++) frame[6 + i] = payload[i] ^ mask[i & 3];
    int r = SSL_write(c->ssl, frame, sizeof frame);
    check_sent++;
    if (r == (int)sizeof frame) {
        c->checking = 1;
        c->chklen = 0;
        check_pending++;
    }
}

static int run_idle(const char *mode, int nconn, double seconds) {
    signal(SIGPIPE, SIG_IGN);
    run_start_ns = now_ns();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); // an idle SSL keeps no read/write buffers
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static char req[512];
    upgrade_len = snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                           path);
    upgrade_req = req;
    iep = epoll_create1(0);
    iconn_t *conns = calloc((size_t)nconn, sizeof *conns);
    for (int i = 0; i < nconn; i++) conns[i].fd = -1;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &dst.sin_addr);
    const char *source = getenv("WSLOAD_SOURCE");
    struct sockaddr_in srcaddr = {.sin_family = AF_INET};
    if (source) inet_pton(AF_INET, source, &srcaddr.sin_addr);
    const char *inflight_env = getenv("WSLOAD_INFLIGHT");
    long max_inflight = inflight_env ? atol(inflight_env) : 256;
    if (max_inflight < 1) max_inflight = 1;
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    int stdin_watched = 0;

    int next = 0, ready = 0, quit = 0;
    uint32_t last_sweep = 0, last_progress = 0, check_deadline = 0;
    long check_target = 0;
    uint32_t ramp_ms = (uint32_t)(seconds * 1000);
    struct epoll_event evs[256];
    char line[128];
    size_t linelen = 0;
    while (!quit) {
        // Ramp: start connections up to the in-flight bound.
        while (!ready && next < nconn && n_inflight < max_inflight) {
            idle_start(&conns[next], ctx, &dst, source ? &srcaddr : NULL);
            next++;
        }
        uint32_t t = ms_now();
        if (!ready && t - last_sweep >= 1000) {
            last_sweep = t;
            for (int i = 0; i < next; i++) {
                iconn_t *c = &conns[i];
                if (c->state >= I_CONNECTING && c->state <= I_UPGRADE && t - c->started_ms > SETUP_TIMEOUT_MS)
                    idle_setup_failed(c, &f_timeout);
            }
        }
        if (!ready && t - last_progress >= 2000) {
            last_progress = t;
            fprintf(stderr, "wsload: %ld open, %ld in flight, %d/%d started\n", n_open, n_inflight, next, nconn);
        }
        if (!ready && ((next >= nconn && n_inflight == 0) || t >= ramp_ms)) {
            long failed = f_socket + f_emfile + f_addr + f_connect + f_tls + f_upgrade + f_timeout;
            printf("READY %ld failed=%ld emfile=%ld addr=%ld connect=%ld tls=%ld upgrade=%ld timeout=%ld "
                   "unstarted=%d ms=%u\n",
                   n_open, failed, f_emfile, f_addr, f_connect, f_tls, f_upgrade, f_timeout, nconn - next, t);
            fflush(stdout);
            ready = 1;
            // Connections still being set up when the ramp ends are abandoned.
            for (int i = 0; i < next; i++) {
                iconn_t *c = &conns[i];
                if (c->state >= I_CONNECTING && c->state <= I_UPGRADE) idle_setup_failed(c, &f_timeout);
            }
            fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
            stdin_watched = epoll_ctl(iep, EPOLL_CTL_ADD, 0, &sev) == 0;
        }
        if (check_target && (check_pending == 0 || t >= check_deadline)) {
            printf("CHECKED %ld %ld\n", check_ok, check_target);
            fflush(stdout);
            for (int i = 0; i < nconn; i++) conns[i].checking = 0;
            check_target = 0;
            check_pending = 0;
        }
        if (ready && !stdin_watched) {
            // stdin cannot be polled (a regular file): hold until it reads to its end.
            char b[64];
            while (read(0, b, sizeof b) > 0) {}
            break;
        }
        int n = epoll_wait(iep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            iconn_t *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    ssize_t r = read(0, line + linelen, sizeof line - 1 - linelen);
                    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { quit = 1; break; }
                    if (r < 0) break;
                    linelen += (size_t)r;
                    line[linelen] = 0;
                    char *nl;
                    while ((nl = strchr(line, '\n'))) {
                        *nl = 0;
                        long k;
                        if (sscanf(line, "CHECK %ld", &k) == 1 && k > 0 && n_open > 0 && !check_target) {
                            long stride = n_open / k > 0 ? n_open / k : 1, seen = 0;
                            for (int j = 0; j < nconn && check_sent < k; j++) {
                                if (conns[j].state != I_OPEN) continue;
                                if (seen++ % stride == 0) idle_send_check(&conns[j], (size_t)j);
                            }
                            check_target = check_sent;
                            check_sent = 0;
                            check_ok = 0;
                            check_deadline = ms_now() + 10000;
                        }
                        size_t rest = linelen - (size_t)(nl + 1 - line);
                        memmove(line, nl + 1, rest + 1);
                        linelen = rest;
                    }
                    if (linelen >= sizeof line - 1) linelen = 0;
                }
                continue;
            }
            if (c->state == I_OPEN) idle_open_readable(c, (size_t)(c - conns));
            else if (c->state >= I_CONNECTING && c->state <= I_UPGRADE) idle_advance(c, ctx);
        }
    }
    long failed = f_socket + f_emfile + f_addr + f_connect + f_tls + f_upgrade + f_timeout;
    printf("{\"mode\":\"%s\",\"connections\":%d,\"opened\":%ld,\"closed_while_held\":%ld,\"errors\":%ld,"
           "\"emfile\":%ld,\"addr\":%ld,\"connect\":%ld,\"tls\":%ld,\"upgrade\":%ld,\"timeout\":%ld}\n",
           mode, nconn, n_open + n_closed, n_closed, failed, f_emfile, f_addr, f_connect, f_tls, f_upgrade,
           f_timeout);
    return 0;
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
    if (!echo_mode) return run_idle(argv[1], nconn, seconds);
    // echo: setup is blocking (a few dozen connections), then one message in flight per connection.
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
    uint64_t warm = 1000000000ull;
    uint64_t stop = start + warm + (uint64_t)(seconds * 1e9);
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= stop) break;
        if (!measuring && t >= start + warm) measuring = 1;
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
    double elapsed = seconds;
    qsort(lat, latn, sizeof *lat, cmp_u32);
    uint32_t p50 = latn ? lat[latn / 2] : 0, p99 = latn ? lat[(size_t)((double)latn * 0.99)] : 0;
    printf("{\"mode\":\"%s\",\"connections\":%d,\"opened\":%d,\"messages\":%llu,\"rate\":%.1f,"
           "\"p50_us\":%u,\"p99_us\":%u,\"errors\":%llu}\n",
           argv[1], nconn, opened, (unsigned long long)messages, (double)messages / elapsed, p50, p99,
           (unsigned long long)errors);
    return 0;
}
