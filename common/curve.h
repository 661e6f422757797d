/* curve.h — CURVE (ZeroMQ's CurveZMQ: Curve25519 keys, encrypted and authenticated
 * connections) for every TCP socket of cirrus (DESIGN §4). inproc:// stays plaintext; ipc://
 * is protected by its file's permissions and stays plaintext too.
 *
 * Keys are Z85 text (40 characters). `cirrus keygen --out NAME` writes NAME.key (the secret,
 * mode 0600) and NAME.pub (the public key); a file holds its key on the first line that is
 * not a comment (#). A server loads its secret and an allow directory (one client public key
 * per *.pub file, checked by the ZAP handler of curve_zap.h); a client loads its secret and
 * is told the server's public key.
 *
 *   cr_curve c;
 *   rc = cr_curve_load(&c, "node.key", "allowed/");      // servers: allow dir required
 *   rc = cr_curve_setup_server(front, &c);                // before zmq_bind
 *   rc = cr_curve_setup_client(dealer, &c, server_pub);   // before zmq_connect
 *
 * The functions keep no state; a cr_curve is plain data, copied freely.
 */
#ifndef CR_CURVE_H
#define CR_CURVE_H

#include <stddef.h>

#include "common/err.h"

#define CR_CURVE_KEY_LEN 40 /* Z85 characters of a 32-byte key */
#define CR_CURVE_PATH_MAX 1024
#define CR_CURVE_ZAP_DOMAIN "cirrus"

typedef struct cr_curve {
    char secret[CR_CURVE_KEY_LEN + 1];
    char pub[CR_CURVE_KEY_LEN + 1]; /* derived from the secret */
    char allow_dir[CR_CURVE_PATH_MAX]; /* "" for a client-only key */
} cr_curve;

/* Makes a fresh key pair. CR_ERR_UNSUPPORTED when this libzmq has no CURVE. */
cr_err cr_curve_keygen(char pub[CR_CURVE_KEY_LEN + 1], char secret[CR_CURVE_KEY_LEN + 1]);

/* Writes NAME.key (mode 0600, created anew: an existing file is CR_ERR_IO) and NAME.pub
 * (0644) with a fresh pair; pub (may be NULL) gets the public key. */
cr_err cr_curve_write_pair(const char *name, char pub[CR_CURVE_KEY_LEN + 1]);

/* 1 when s is exactly a 40-character Z85 key. */
int cr_curve_key_valid(const char *s);

/* Reads the key of a .key or .pub file. CR_ERR_IO (unreadable), CR_ERR_INVALID (no key). */
cr_err cr_curve_read_key(const char *path, char out[CR_CURVE_KEY_LEN + 1]);

/* `arg` is a Z85 public key or the path of a file holding one (a .pub file). */
cr_err cr_curve_public_arg(const char *arg, char out[CR_CURVE_KEY_LEN + 1]);

/* Loads secret_file (and derives its public key); allow_dir (may be NULL: a client only)
 * must be a readable directory. *c is written only on success. */
cr_err cr_curve_load(cr_curve *c, const char *secret_file, const char *allow_dir);

/* A daemon's --curve-secret and --curve-allow: both NULL = CURVE off (*on = 0); a server
 * (need_allow) must give both, a client the secret alone. *c is written when *on = 1. */
cr_err cr_curve_flags(cr_curve *c, const char *secret_file, const char *allow_dir,
                      int need_allow, int *on);

/* Makes `sock` (not yet bound) a CURVE server with c's secret, its connections checked by
 * the ZAP handler under CR_CURVE_ZAP_DOMAIN. CR_ERR_NET when the options are refused. */
cr_err cr_curve_setup_server(void *sock, const cr_curve *c);

/* Makes `sock` (not yet connected) a CURVE client with c's key pair, talking only to the
 * server whose public key is server_pub (Z85). */
cr_err cr_curve_setup_client(void *sock, const cr_curve *c, const char *server_pub);

/* 1 when `ep` encrypts nothing on the network by design or cannot be reached from another
 * host: inproc://, ipc://, or tcp:// on 127.0.0.0/8, ::1 or localhost. */
int cr_endpoint_is_local(const char *ep);

/* 1 for a tcp:// endpoint (the ones CURVE applies to). */
int cr_endpoint_is_tcp(const char *ep);

#endif
