#include "common/curve.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#define KEY_FILE_MAX 4096 /* a key file is a line or two; anything longer is not one */

int cr_curve_key_valid(const char *s)
{
    static const char z85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              ".-:+=^!/*?&<>()[]{}@%$#";
    if (!s || strlen(s) != CR_CURVE_KEY_LEN)
        return 0;
    for (const char *p = s; *p; p++)
        if (!strchr(z85, *p))
            return 0;
    return 1;
}

cr_err cr_curve_keygen(char pub[CR_CURVE_KEY_LEN + 1], char secret[CR_CURVE_KEY_LEN + 1])
{
    if (!zmq_has("curve"))
        return cr_error_set(CR_ERR_UNSUPPORTED, "this libzmq was built without CURVE");
    if (zmq_curve_keypair(pub, secret) != 0)
        return cr_error_set(CR_ERR_INTERNAL, "zmq_curve_keypair: %s", zmq_strerror(errno));
    return CR_OK;
}

/* Creates `path` with `mode` (never over an existing file) holding `text`. */
static cr_err write_new(const char *path, int mode, const char *text)
{
    size_t len = strlen(text);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    cr_err rc = CR_OK;
    if (fd < 0)
        return cr_error_set(CR_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)
        rc = cr_error_set(CR_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = cr_error_set(CR_ERR_IO, "cannot close %s: %s", path, strerror(errno));
    if (rc)
        unlink(path);
    return rc;
}

cr_err cr_curve_write_pair(const char *name, char pub[CR_CURVE_KEY_LEN + 1])
{
    char p[CR_CURVE_KEY_LEN + 1], s[CR_CURVE_KEY_LEN + 1], path[CR_CURVE_PATH_MAX];
    char text[256];
    cr_err rc = cr_curve_keygen(p, s);
    if (rc)
        return rc;
    if (snprintf(path, sizeof path, "%s.key", name) >= (int)sizeof path)
        return cr_error_set(CR_ERR_INVALID, "key name too long");
    snprintf(text, sizeof text,
             "# cirrus CURVE secret key: keep it private (its public key is in %s.pub)\n%s\n",
             name, s);
    rc = write_new(path, 0600, text);
    memset(s, 0, sizeof s);
    memset(text, 0, sizeof text);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s.pub", name);
    snprintf(text, sizeof text, "# cirrus CURVE public key\n%s\n", p);
    rc = write_new(path, 0644, text);
    if (rc) {
        snprintf(path, sizeof path, "%s.key", name);
        unlink(path);
        return rc;
    }
    if (pub)
        memcpy(pub, p, sizeof p);
    return CR_OK;
}

/* The first line of text that is not blank or a comment, trimmed, as a key. */
static cr_err parse_key(const char *text, const char *path, char out[CR_CURVE_KEY_LEN + 1])
{
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '\n'), *b = p, *e;
        if (!end)
            end = p + strlen(p);
        while (b < end && isspace((unsigned char)*b))
            b++;
        e = end;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (b < e && *b != '#') {
            char key[CR_CURVE_KEY_LEN + 1];
            if (e - b != CR_CURVE_KEY_LEN)
                break;
            memcpy(key, b, CR_CURVE_KEY_LEN);
            key[CR_CURVE_KEY_LEN] = '\0';
            if (!cr_curve_key_valid(key))
                break;
            memcpy(out, key, sizeof key);
            return CR_OK;
        }
        p = *end ? end + 1 : end;
    }
    return cr_error_set(CR_ERR_INVALID, "%s holds no Z85 key (40 characters on a line)", path);
}

/* Reads a small file whole into buf (NUL-terminated); st gets its status. */
static cr_err read_small(const char *path, char *buf, size_t cap, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0)
        return cr_error_set(CR_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return cr_error_set(CR_ERR_IO, "%s is not a regular file", path);
    }
    n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return cr_error_set(CR_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    buf[n] = '\0';
    return CR_OK;
}

cr_err cr_curve_read_key(const char *path, char out[CR_CURVE_KEY_LEN + 1])
{
    char buf[KEY_FILE_MAX];
    struct stat st;
    cr_err rc = read_small(path, buf, sizeof buf, &st);
    if (!rc)
        rc = parse_key(buf, path, out);
    memset(buf, 0, sizeof buf);
    return rc;
}

cr_err cr_curve_public_arg(const char *arg, char out[CR_CURVE_KEY_LEN + 1])
{
    if (!arg || !arg[0])
        return cr_error_set(CR_ERR_INVALID, "no server public key");
    if (cr_curve_key_valid(arg)) {
        memcpy(out, arg, CR_CURVE_KEY_LEN + 1);
        return CR_OK;
    }
    return cr_curve_read_key(arg, out);
}

cr_err cr_curve_load(cr_curve *c, const char *secret_file, const char *allow_dir)
{
    char buf[KEY_FILE_MAX];
    struct stat st;
    cr_curve k;
    cr_err rc;

    memset(&k, 0, sizeof k);
    if (!zmq_has("curve"))
        return cr_error_set(CR_ERR_UNSUPPORTED, "this libzmq was built without CURVE");
    rc = read_small(secret_file, buf, sizeof buf, &st);
    if (!rc && (st.st_mode & 077))
        /* As ssh does: a secret others may read is no longer a secret. */
        rc = cr_error_set(CR_ERR_INVALID, "%s is readable by others (mode %03o): chmod 600 it",
                          secret_file, (unsigned)(st.st_mode & 0777));
    if (!rc)
        rc = parse_key(buf, secret_file, k.secret);
    memset(buf, 0, sizeof buf);
    if (!rc && zmq_curve_public(k.pub, k.secret) != 0)
        rc = cr_error_set(CR_ERR_INVALID, "%s: not a CURVE secret key", secret_file);
    if (!rc && allow_dir) {
        if (stat(allow_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = cr_error_set(CR_ERR_IO, "--curve-allow %s is not a directory", allow_dir);
        else if (snprintf(k.allow_dir, sizeof k.allow_dir, "%s", allow_dir) >=
                 (int)sizeof k.allow_dir)
            rc = cr_error_set(CR_ERR_INVALID, "--curve-allow path too long");
    }
    if (!rc)
        *c = k;
    memset(&k, 0, sizeof k);
    return rc;
}

cr_err cr_curve_flags(cr_curve *c, const char *secret_file, const char *allow_dir,
                      int need_allow, int *on)
{
    cr_err rc;
    *on = 0;
    if (!secret_file && !allow_dir)
        return CR_OK;
    if (!secret_file)
        return cr_error_set(CR_ERR_INVALID, "--curve-allow needs --curve-secret");
    if (need_allow && !allow_dir)
        return cr_error_set(CR_ERR_INVALID, "--curve-secret needs --curve-allow DIR (the "
                                            "allowed clients' *.pub files)");
    rc = cr_curve_load(c, secret_file, allow_dir);
    if (!rc)
        *on = 1;
    return rc;
}

static cr_err setopt(void *sock, int opt, const void *v, size_t len, const char *what)
{
    if (zmq_setsockopt(sock, opt, v, len) != 0)
        return cr_error_set(CR_ERR_NET, "CURVE %s: %s", what, zmq_strerror(errno));
    return CR_OK;
}

cr_err cr_curve_setup_server(void *sock, const cr_curve *c)
{
    int one = 1;
    cr_err rc = setopt(sock, ZMQ_ZAP_DOMAIN, CR_CURVE_ZAP_DOMAIN, strlen(CR_CURVE_ZAP_DOMAIN),
                       "zap domain");
    if (!rc)
        rc = setopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one, "server");
    if (!rc)
        rc = setopt(sock, ZMQ_CURVE_SECRETKEY, c->secret, CR_CURVE_KEY_LEN, "secret key");
    return rc;
}

cr_err cr_curve_setup_client(void *sock, const cr_curve *c, const char *server_pub)
{
    cr_err rc;
    if (!cr_curve_key_valid(server_pub))
        return cr_error_set(CR_ERR_INVALID, "CURVE: the server public key is not a Z85 key");
    rc = setopt(sock, ZMQ_CURVE_SERVERKEY, server_pub, CR_CURVE_KEY_LEN, "server key");
    if (!rc)
        rc = setopt(sock, ZMQ_CURVE_PUBLICKEY, c->pub, CR_CURVE_KEY_LEN, "public key");
    if (!rc)
        rc = setopt(sock, ZMQ_CURVE_SECRETKEY, c->secret, CR_CURVE_KEY_LEN, "secret key");
    return rc;
}

int cr_endpoint_is_tcp(const char *ep)
{
    return ep && strncmp(ep, "tcp://", 6) == 0;
}

int cr_endpoint_is_local(const char *ep)
{
    const char *h;
    if (!ep)
        return 0;
    if (strncmp(ep, "inproc://", 9) == 0 || strncmp(ep, "ipc://", 6) == 0)
        return 1;
    if (!cr_endpoint_is_tcp(ep))
        return 0;
    h = ep + 6;
    return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
           strncmp(h, "[::1]:", 6) == 0 || strncmp(h, "lo:", 3) == 0;
}
