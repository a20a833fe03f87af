#ifndef FENCE_ROUTER_COPENSSL_SHIM_H
#define FENCE_ROUTER_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/bn.h>

// Macros Swift cannot import.
static inline long fr_bio_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }
#endif
