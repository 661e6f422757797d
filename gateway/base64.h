/* base64.h — decoding the base64 fields of the HTTP API (images). */
#ifndef GW_BASE64_H
#define GW_BASE64_H

#include <protobuf-c/protobuf-c.h>

#include "common/err.h"

/* Decodes s (standard or URL-safe alphabet; '=' and line breaks ignored) into out->data
 * (malloc'd; free it). CR_ERR_INVALID "FIELD: not base64" on a character outside both. */
cr_err gw_base64_decode(const char *s, const char *field, ProtobufCBinaryData *out);

#endif
