/* pb_check.h — a pass over protobuf bytes from a peer BEFORE protobuf-c unpacks them.
 *
 * protobuf-c's unpack recurses once per level of message nesting, with no limit: a 0.8 MB
 * Request holding a filter nested 200,000 levels deep (`not not not ...`) overflows a
 * thread's stack and kills the node (found by tests/fuzz/fuzz_request.c). It also accepts a
 * field number 0 written as a two-byte tag, which the protobuf spec forbids and which it then
 * refuses when the message is packed again and forwarded. This check walks the bytes against
 * the message's descriptor — without allocating, iteratively per level and recursing only
 * into message-typed fields, at most CR_PB_MAX_DEPTH deep — and refuses both, and groups
 * (wire types 3 and 4, unused by cirrus.proto). Every unpack of untrusted bytes goes
 * through it (cr_wire_unpack, the socket layer, libcirrus). */
#ifndef CR_PB_CHECK_H
#define CR_PB_CHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Deepest message nesting accepted. The deepest legitimate message is a filter at its own
 * depth limit (64 Filter levels; an and/or level costs two messages) inside a Request:
 * 2 * 64 + 4 levels. */
#define CR_PB_MAX_DEPTH 160

/* CR_OK, or CR_ERR_PROTO saying what is wrong (too deep, field number 0, a group, truncated).
 * Bytes that pass may still be refused by protobuf-c (e.g. a bad UTF-8 string). */
cr_err cr_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len);

#endif
