#ifndef FENCE_ROUTER_COPENSSL_SHIM_H
#define FENCE_ROUTER_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#endif
