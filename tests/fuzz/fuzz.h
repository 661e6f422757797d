/* fuzz.h — the libFuzzer entry points every target in tests/fuzz/ defines. A target is built
 * twice: with clang's -fsanitize=fuzzer (`make fuzz`, build-fuzz/), and in every normal build
 * against driver.c, which replays the target's corpus (tests/fuzz/corpus/NAME/) as the ctest
 * `fuzz.NAME`: every input found and fixed stays a regression test. */
#ifndef CIRRUS_FUZZ_H
#define CIRRUS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: one-time setup (a vocabulary to load, log silencing). */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A NUL-terminated copy of data (malloc'd), or NULL when out of memory. Text decoders take
 * C strings; an embedded NUL just ends the text early, as it would for a caller. */
char *fuzz_cstr(const uint8_t *data, size_t size);

/* Unpacks data as `desc` through the bounded allocator servers use; when it unpacks, packs it
 * again and checks that the repacked bytes unpack and repack to themselves. Returns the
 * message (free with fuzz_pb_free) or NULL when data is not one. */
struct ProtobufCMessageDescriptor;
void *fuzz_pb_roundtrip(const struct ProtobufCMessageDescriptor *desc, const uint8_t *data,
                        size_t size);
void fuzz_pb_free(void *msg);

/* Aborts (a finding) when cond is false: an invariant of the decoder was broken. */
#define FUZZ_ASSERT(cond)                                                                     \
    do {                                                                                      \
        if (!(cond))                                                                          \
            fuzz_fail(__FILE__, __LINE__, #cond);                                             \
    } while (0)
void fuzz_fail(const char *file, int line, const char *what);

#endif
