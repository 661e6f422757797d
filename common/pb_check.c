#include "common/pb_check.h"

/* Reads one varint (at most 10 bytes); 0 on truncation or overlong. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

static int skip(const uint8_t **p, const uint8_t *end, uint64_t n)
{
    if (n > (uint64_t)(end - *p))
        return 0;
    *p += n;
    return 1;
}

static cr_err scan(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                   int depth)
{
    if (depth > CR_PB_MAX_DEPTH)
        return cr_error_set(CR_ERR_PROTO, "message nested deeper than %d levels",
                            CR_PB_MAX_DEPTH);
    while (p < end) {
        uint64_t tag, v;
        const ProtobufCFieldDescriptor *fd;
        if (!read_varint(&p, end, &tag))
            return cr_error_set(CR_ERR_PROTO, "truncated field tag in %s", desc->short_name);
        if (tag >> 3 == 0 || tag >> 3 > 536870911u)
            return cr_error_set(CR_ERR_PROTO, "field number %llu in %s",
                                (unsigned long long)(tag >> 3), desc->short_name);
        switch (tag & 7) {
        case 0:
            if (!read_varint(&p, end, &v))
                return cr_error_set(CR_ERR_PROTO, "truncated varint in %s", desc->short_name);
            break;
        case 1:
        case 5:
            if (!skip(&p, end, (tag & 7) == 1 ? 8 : 4))
                return cr_error_set(CR_ERR_PROTO, "truncated fixed field in %s",
                                    desc->short_name);
            break;
        case 2:
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return cr_error_set(CR_ERR_PROTO, "truncated field in %s", desc->short_name);
            fd = protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
            if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
                cr_err rc = scan(fd->descriptor, p, p + v, depth + 1);
                if (rc)
                    return rc;
            }
            p += v;
            break;
        default:
            return cr_error_set(CR_ERR_PROTO, "wire type %u in %s", (unsigned)(tag & 7),
                                desc->short_name);
        }
    }
    return CR_OK;
}

cr_err cr_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len)
{
    cr_err rc;
    if (len && !data)
        return cr_error_set(CR_ERR_PROTO, "malformed %s message: no bytes", desc->short_name);
    rc = scan(desc, data, data + len, 1);
    return rc ? cr_error_wrap(rc, "malformed %s message (%zu bytes)", desc->short_name, len)
              : CR_OK;
}
