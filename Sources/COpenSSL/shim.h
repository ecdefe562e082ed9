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
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <time.h>
#include <pthread.h>
#include <stdlib.h>

static inline const char *ferry_openssl_build_version_text(void) { return OPENSSL_VERSION_TEXT; }

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

/* Bytes a memory BIO keeps allocated (it never shrinks on its own). */
static inline size_t ferry_BIO_mem_capacity(BIO *bio) {
    BUF_MEM *memory = NULL;
    BIO_get_mem_ptr(bio, &memory);
    return memory != NULL ? memory->max : 0;
}

static inline void ferry_OPENSSL_free(void *ptr) {
    OPENSSL_free(ptr);
}

static inline uint64_t ferry_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t ferry_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }

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

/* Reads up to max PEM certificates from path into out; returns the count, or -1 when the file
 * cannot be opened (errno tells why). */
static inline int ferry_read_certificates(const char *path, X509 **out, int max) {
    FILE *file = fopen(path, "r");
    if (!file) return -1;
    int count = 0;
    X509 *cert;
    while (count < max && (cert = PEM_read_X509(file, NULL, NULL, NULL)) != NULL) out[count++] = cert;
    ERR_clear_error();
    fclose(file);
    return count;
}

/* Reads a PEM private key; NULL with errno set when unreadable, or with OpenSSL's queue when not a key. */
static inline EVP_PKEY *ferry_read_private_key(const char *path) {
    FILE *file = fopen(path, "r");
    if (!file) return NULL;
    EVP_PKEY *key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    return key;
}

/* Generates an ECDSA P-256 key and a self-signed certificate for `san` (e.g.
 * "DNS:localhost,IP:127.0.0.1,IP:::1"), valid for `days`, and writes them as PEM, the key with
 * mode 0600. Returns 0, or -1 with OpenSSL's error queue or errno set. */
/* TLS-ALPN-01 (RFC 8737): puts the challenge certificate and key (one PEM text, certificate
 * first) on this connection in place of the context's. Returns 1 on success. */
static inline int ferry_SSL_use_pem_pair(SSL *ssl, const char *pem, int length) {
    int ok = 0;
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (bio == NULL) return 0;
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    EVP_PKEY *key = cert ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    if (cert && key && SSL_use_certificate(ssl, cert) == 1 && SSL_use_PrivateKey(ssl, key) == 1 &&
        SSL_check_private_key(ssl) == 1)
        ok = 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(bio);
    return ok;
}

static inline int ferry_write_self_signed(const char *cert_path, const char *key_path, const char *common_name,
                                          const char *san, long days) {
    int rc = -1;
    FILE *cert_file = NULL, *key_file = NULL;
    X509 *cert = X509_new();
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!cert || !key) goto done;
    X509_set_version(cert, 2);
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1) goto done;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (!bn) goto done;
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), days * 86400L);
    if (X509_set_pubkey(cert, key) != 1) goto done;
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Ferry self-signed", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    const char *extensions[][2] = {
        {"basicConstraints", "critical,CA:TRUE"},
        {"keyUsage", "critical,digitalSignature,keyCertSign"},
        {"extendedKeyUsage", "serverAuth"},
        {"subjectKeyIdentifier", "hash"},
        {"subjectAltName", san},
    };
    for (size_t i = 0; i < sizeof extensions / sizeof extensions[0]; i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf(NULL, &ctx, extensions[i][0], extensions[i][1]);
        if (!ext) goto done;
        X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (!X509_sign(cert, key, EVP_sha256())) goto done;
    int key_fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (key_fd < 0) goto done;
    key_file = fdopen(key_fd, "w");
    if (!key_file) { close(key_fd); goto done; }
    if (!PEM_write_PrivateKey(key_file, key, NULL, NULL, 0, NULL, NULL)) goto done;
    cert_file = fopen(cert_path, "w");
    if (!cert_file || !PEM_write_X509(cert_file, cert)) goto done;
    rc = 0;
done:
    if (cert_file && fclose(cert_file) != 0) rc = -1;
    if (key_file && fclose(key_file) != 0) rc = -1;
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}


/* Session ticket keys of one TLS listener, shared by its contexts (the default and the SNI ones).
 * A key is 80 bytes laid out as nginx's `ssl_session_ticket_key` files and OpenSSL's own
 * SSL_CTX_set_tlsext_ticket_keys: 16 bytes of name, 32 of HMAC-SHA256 key, 32 of AES-256-CBC key.
 * The first key encrypts new tickets; every key decrypts, and a ticket decrypted with an older key
 * is renewed with the first. The set is replaced as a whole under the lock (a rotation on a
 * running worker); handshakes copy the key they use out of it. */
typedef struct {
    unsigned char name[16];
    unsigned char hmac[32];
    unsigned char aes[32];
} ferry_ticket_key;

typedef struct {
    pthread_mutex_t lock;
    ferry_ticket_key *keys;
    int count;
} ferry_ticket_store;

static inline ferry_ticket_store *ferry_ticket_store_new(void) {
    ferry_ticket_store *store = calloc(1, sizeof *store);
    if (store != NULL) pthread_mutex_init(&store->lock, NULL);
    return store;
}

/* `keys`: `count` keys of 80 bytes each, back to back. Returns 0 on success. */
static inline int ferry_ticket_store_set(ferry_ticket_store *store, const unsigned char *keys, int count) {
    if (count <= 0 || sizeof(ferry_ticket_key) != 80) return -1;
    ferry_ticket_key *copy = malloc((size_t)count * sizeof *copy);
    if (copy == NULL) return -1;
    memcpy(copy, keys, (size_t)count * 80);
    pthread_mutex_lock(&store->lock);
    ferry_ticket_key *old = store->keys;
    int oldCount = store->count;
    store->keys = copy;
    store->count = count;
    pthread_mutex_unlock(&store->lock);
    if (old != NULL) {
        OPENSSL_cleanse(old, (size_t)oldCount * sizeof *old);
        free(old);
    }
    return 0;
}

static inline void ferry_ticket_store_free(ferry_ticket_store *store) {
    if (store == NULL) return;
    if (store->keys != NULL) {
        OPENSSL_cleanse(store->keys, (size_t)store->count * sizeof *store->keys);
        free(store->keys);
    }
    pthread_mutex_destroy(&store->lock);
    free(store);
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb's callback: 1 = use this key, 2 = decrypted with an older
 * key (issue a fresh ticket), 0 = unknown key name (full handshake), -1 = failure. */
static inline int ferry_ticket_key_callback(
    SSL *ssl, unsigned char *keyName, unsigned char *iv, EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int encrypt
) {
    ferry_ticket_store *store = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (store == NULL) return -1;
    ferry_ticket_key key;
    int result = 0;
    pthread_mutex_lock(&store->lock);
    if (encrypt) {
        if (store->count > 0) {
            key = store->keys[0];
            result = 1;
        } else {
            result = -1;
        }
    } else {
        for (int index = 0; index < store->count; index++) {
            if (memcmp(store->keys[index].name, keyName, 16) == 0) {
                key = store->keys[index];
                result = index == 0 ? 1 : 2;
                break;
            }
        }
    }
    pthread_mutex_unlock(&store->lock);
    if (result <= 0) return result;
    if (encrypt) {
        memcpy(keyName, key.name, 16);
        if (RAND_bytes(iv, 16) <= 0) result = -1;
    }
    if (result > 0) {
        int ok = encrypt ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key.aes, iv)
                         : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key.aes, iv);
        OSSL_PARAM params[3];
        params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, sizeof key.hmac);
        params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
        params[2] = OSSL_PARAM_construct_end();
        if (ok != 1 || EVP_MAC_CTX_set_params(mac, params) != 1) result = -1;
    }
    OPENSSL_cleanse(&key, sizeof key);
    return result;
}

/* Makes `ctx` issue and accept tickets with `store`'s keys (kept as the context's app data). */
static inline int ferry_SSL_CTX_use_ticket_store(SSL_CTX *ctx, ferry_ticket_store *store) {
    SSL_CTX_set_app_data(ctx, store);
    return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ferry_ticket_key_callback);
}


/* The DNS names and IP addresses of a certificate's subjectAltName, comma-separated into `out`
 * (truncated to `size`); returns how many names there were. */
static inline int ferry_X509_alt_names(X509 *certificate, char *out, size_t size) {
    if (size > 0) out[0] = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(certificate, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) return 0;
    int count = sk_GENERAL_NAME_num(names);
    size_t used = 0;
    for (int index = 0; index < count; index++) {
        const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, index);
        char text[256];
        text[0] = 0;
        if (name->type == GEN_DNS) {
            const unsigned char *data = ASN1_STRING_get0_data(name->d.dNSName);
            int length = ASN1_STRING_length(name->d.dNSName);
            snprintf(text, sizeof text, "%.*s", length, (const char *)data);
        } else if (name->type == GEN_IPADD) {
            const unsigned char *data = ASN1_STRING_get0_data(name->d.iPAddress);
            int length = ASN1_STRING_length(name->d.iPAddress);
            if (length == 4) {
                snprintf(text, sizeof text, "%u.%u.%u.%u", data[0], data[1], data[2], data[3]);
            } else if (length == 16) {
                size_t at = 0;
                for (int part = 0; part < 8 && at < sizeof text; part++) {
                    at += (size_t)snprintf(text + at, sizeof text - at, part ? ":%x" : "%x",
                                           (unsigned)(data[2 * part] << 8 | data[2 * part + 1]));
                }
            }
        }
        size_t length = strlen(text);
        if (length > 0 && used + length + 2 < size) {
            if (used > 0) out[used++] = ',';
            memcpy(out + used, text, length);
            used += length;
            out[used] = 0;
        }
    }
    GENERAL_NAMES_free(names);
    return count;
}

/* A certificate's notAfter as Unix seconds (0 when it cannot be read). */
static inline long long ferry_X509_not_after(X509 *certificate) {
    struct tm time;
    memset(&time, 0, sizeof time);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(certificate), &time) != 1) return 0;
    return (long long)timegm(&time);
}

#endif
