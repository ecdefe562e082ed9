// wsecho: a small, fast, neutral WebSocket echo backend for the benchmark suite.
//
// One thread, epoll, plain TCP on loopback. Accepts any HTTP/1.1 request with
// `Upgrade: websocket` (any path), answers 101, then echoes every data frame
// unmasked, answers pings, and echoes close. Plain HTTP requests get a 200
// "ok" and keep-alive. It exists so that the proxies are what is measured,
// not the backend: it does no allocation per message beyond its buffers.
// Buffers are allocated when a connection first has data and given back once
// a WebSocket has been set up (and until its first frame), so idle WebSockets
// cost a few dozen bytes here and one process holds ~19,900 of them under a
// 20,000-descriptor limit (the scale run in scale.py).
//
// Build: cc -O2 -o wsecho wsecho.c -lcrypto
// Run:   wsecho PORT
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

#define OUTBUF (BUF * 2)

typedef struct {
    int fd;
    int upgraded;
    int framed; // has carried a WebSocket frame: keeps its buffers from then on
    size_t inlen;
    unsigned char *in; // BUF bytes, or NULL while idle
    size_t outlen;
    unsigned char *out; // OUTBUF bytes, or NULL while idle
} conn_t;

static int epfd;

static void conn_close(conn_t *c) {
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static int ensure_buffers(conn_t *c) {
    if (!c->in) c->in = malloc(BUF);
    if (!c->out) c->out = malloc(OUTBUF);
    return c->in && c->out ? 0 : -1;
}

// An upgraded connection that has not carried a frame yet and has nothing buffered gives its
// buffers back: idle WebSockets must not cost 192 KiB each.
static void maybe_release(conn_t *c) {
    if (c->upgraded && !c->framed && c->inlen == 0 && c->outlen == 0) {
        free(c->in);
        free(c->out);
        c->in = c->out = NULL;
    }
}

static int flush_out(conn_t *c) {
    size_t off = 0;
    if (!c->out) return 0;
    while (off < c->outlen) {
        ssize_t n = send(c->fd, c->out + off, c->outlen - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            return -1;
        }
        off += (size_t)n;
    }
    memmove(c->out, c->out + off, c->outlen - off);
    c->outlen -= off;
    struct epoll_event ev = {.events = EPOLLIN | (c->outlen ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

static int out_append(conn_t *c, const void *p, size_t n) {
    if (c->outlen + n > OUTBUF) return -1;
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
    return 0;
}

static const char *find_header(const char *req, const char *name, size_t *len) {
    size_t nl = strlen(name);
    const char *p = strstr(req, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            *len = (size_t)(e - v);
            return v;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

// Returns bytes consumed, 0 when more input is needed, -1 on error.
static ssize_t handle_http(conn_t *c) {
    unsigned char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end) return c->inlen >= BUF ? -1 : 0;
    size_t hlen = (size_t)(end - c->in) + 4;
    char req[BUF + 1];
    memcpy(req, c->in, hlen);
    req[hlen] = 0;
    size_t klen = 0;
    const char *key = find_header(req, "Sec-WebSocket-Key", &klen);
    if (key) {
        char buf[128];
        if (klen > 60) return -1;
        memcpy(buf, key, klen);
        memcpy(buf + klen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
        unsigned char digest[SHA_DIGEST_LENGTH];
        SHA1((unsigned char *)buf, klen + 36, digest);
        unsigned char accept[64];
        EVP_EncodeBlock(accept, digest, SHA_DIGEST_LENGTH);
        char resp[256];
        int n = snprintf(resp, sizeof resp,
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: %s\r\n\r\n",
                         accept);
        if (out_append(c, resp, (size_t)n) < 0) return -1;
        c->upgraded = 1;
    } else {
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
        if (out_append(c, ok, sizeof ok - 1) < 0) return -1;
    }
    return (ssize_t)hlen;
}

static ssize_t handle_frame(conn_t *c) {
    if (c->inlen < 2) return 0;
    unsigned char *p = c->in;
    int opcode = p[0] & 0x0f;
    int masked = p[1] & 0x80;
    uint64_t len = p[1] & 0x7f;
    size_t h = 2;
    if (len == 126) {
        if (c->inlen < 4) return 0;
        len = ((uint64_t)p[2] << 8) | p[3];
        h = 4;
    } else if (len == 127) {
        if (c->inlen < 10) return 0;
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
        h = 10;
    }
    if (len > BUF / 2) return -1;
    size_t mh = masked ? 4 : 0;
    if (c->inlen < h + mh + len) return 0;
    unsigned char *mask = p + h;
    unsigned char *payload = p + h + mh;
    if (masked)
        for (uint64_t i = 0; i < len; i++) payload[i] ^= mask[i & 3];
    unsigned char hdr[10];
    size_t hl;
    int out_op = opcode == 0x9 ? 0xA : opcode;
    hdr[0] = (unsigned char)(0x80 | out_op);
    if (len < 126) {
        hdr[1] = (unsigned char)len;
        hl = 2;
    } else {
        hdr[1] = 126;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        hl = 4;
    }
    c->framed = 1;
    if (opcode != 0xA) { // pongs are not answered
        if (out_append(c, hdr, hl) < 0 || out_append(c, payload, len) < 0) return -1;
    }
    if (opcode == 0x8) return -2;
    return (ssize_t)(h + mh + len);
}

static void on_readable(conn_t *c) {
    if (ensure_buffers(c) < 0) { conn_close(c); return; }
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->inlen, BUF - c->inlen, 0);
        if (n == 0) { conn_close(c); return; }
        if (n < 0) {
            if (errno == EAGAIN) { maybe_release(c); break; }
            if (errno == EINTR) continue;
            conn_close(c);
            return;
        }
        c->inlen += (size_t)n;
        for (;;) {
            ssize_t used = c->upgraded ? handle_frame(c) : handle_http(c);
            if (used == -2) { flush_out(c); conn_close(c); return; }
            if (used < 0) { conn_close(c); return; }
            if (used == 0) break;
            memmove(c->in, c->in + used, c->inlen - (size_t)used);
            c->inlen -= (size_t)used;
        }
        if (flush_out(c) < 0) { conn_close(c); return; }
        if (c->inlen == BUF) { conn_close(c); return; }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: wsecho PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        perror("wsecho: bind");
        return 1;
    }
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
                }
                if (errno == EMFILE || errno == ENFILE) usleep(10000); // out of descriptors: no busy loop
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (flush_out(c) < 0) { conn_close(c); continue; }
                if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) maybe_release(c);
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}
