#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

cr_err cr_file_read(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long size;
    uint8_t *buf;
    if (!f)
        return cr_error_set(CR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return cr_error_set(CR_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    if ((size_t)size > CR_FILE_MAX_BYTES) {
        fclose(f);
        return cr_error_set(CR_ERR_IO, "%s: larger than 1 GiB", path);
    }
    buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return cr_error_set(buf ? CR_ERR_IO : CR_ERR_NOMEM, "%s: cannot read", path);
    }
    fclose(f);
    buf[size] = 0;
    *data = buf;
    *len = (size_t)size;
    return CR_OK;
}

cr_err cr_file_copy(const char *src, const char *dst, uint64_t *bytes)
{
    char buf[1 << 16];
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
    uint64_t total = 0;
    cr_err rc = CR_OK;
    ssize_t n;
    if (in < 0)
        return cr_error_set(CR_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = cr_error_set(CR_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
        goto out;
    }
    while ((n = read(in, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write(out, buf, (size_t)n) != n) {
            rc = cr_error_set(CR_ERR_IO, "copy %s to %s: %s", src, dst, strerror(errno));
            goto out;
        }
        total += (uint64_t)n;
    }
    if (fsync(out) != 0)
        rc = cr_error_set(CR_ERR_IO, "%s: fsync: %s", dst, strerror(errno));
out:
    close(in);
    if (out >= 0 && close(out) != 0 && !rc)
        rc = cr_error_set(CR_ERR_IO, "%s: close: %s", dst, strerror(errno));
    if (!rc && bytes)
        *bytes = total;
    return rc;
}
