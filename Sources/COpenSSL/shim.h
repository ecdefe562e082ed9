#ifndef FERRY_COPENSSL_SHIM_H
#define FERRY_COPENSSL_SHIM_H

// OpenSSL 3 through the distribution's libssl-dev. Functions that OpenSSL
// exposes only as macros are wrapped here as `static inline` functions with a
// `ferry_` prefix so Swift can call them.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

static inline long ferry_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}

static inline long ferry_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_max_proto_version(ctx, version);
}

static inline long ferry_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

static inline long ferry_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

static inline long ferry_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}

static inline size_t ferry_BIO_pending(BIO *bio) {
    return BIO_ctrl_pending(bio);
}

static inline void ferry_OPENSSL_free(void *ptr) {
    OPENSSL_free(ptr);
}

static inline uint64_t ferry_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t ferry_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }

static inline long ferry_SSL_CTX_set_tlsext_ticket_keys(SSL_CTX *ctx, unsigned char *keys, long length) {
    return SSL_CTX_set_tlsext_ticket_keys(ctx, keys, length);
}

static inline long ferry_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return SSL_CTX_set1_groups_list(ctx, list);
}

typedef int (*ferry_servername_cb)(SSL *ssl, int *alert, void *arg);

static inline long ferry_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, ferry_servername_cb cb) {
    return SSL_CTX_set_tlsext_servername_callback(ctx, cb);
}

static inline long ferry_SSL_CTX_set_tlsext_servername_arg(SSL_CTX *ctx, void *arg) {
    return SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

static inline uint64_t ferry_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }
static inline uint64_t ferry_SSL_OP_ENABLE_KTLS(void) { return SSL_OP_ENABLE_KTLS; }
static inline long ferry_SSL_MODE_RELEASE_BUFFERS(void) { return SSL_MODE_RELEASE_BUFFERS; }
static inline long ferry_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER(void) { return SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER; }
static inline int ferry_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }
static inline int ferry_TLS1_3_VERSION(void) { return TLS1_3_VERSION; }
static inline long ferry_SSL_SESS_CACHE_SERVER(void) { return SSL_SESS_CACHE_SERVER; }
static inline long ferry_SSL_SESS_CACHE_CLIENT(void) { return SSL_SESS_CACHE_CLIENT; }

/* EVP_EC_gen is a macro in OpenSSL 3. */
static inline EVP_PKEY *ferry_EVP_EC_gen_P256(void) { return EVP_EC_gen("P-256"); }

/* Collects OpenSSL's error queue into buf as "reason; reason"; returns the first error code. */
static inline unsigned long ferry_ERR_collect(char *buf, size_t len) {
    unsigned long first = 0, code;
    size_t used = 0;
    if (len) buf[0] = 0;
    while ((code = ERR_get_error()) != 0) {
        if (!first) first = code;
        if (used + 4 < len) {
            if (used) { buf[used++] = ';'; buf[used++] = ' '; buf[used] = 0; }
            ERR_error_string_n(code, buf + used, len - used);
            used = strlen(buf);
        }
    }
    return first;
}

#endif
