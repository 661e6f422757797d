/* fuzz_filter.c — the filter language, text from a query string or an HTTP body: parse, and
 * for every tree that parses, the documented round trip: validate passes, format succeeds,
 * and parsing the formatted text gives a tree that formats to the same text. */
#include <stdlib.h>
#include <string.h>

#include "cirrus.pb-c.h"
#include "fuzz.h"
#include "shard/filter_parse.h"

#define TEXT_MAX (1u << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size), *a = NULL, *b = NULL;
    Cirrus__V1__Filter *f = NULL, *g = NULL;
    if (!text)
        return 0;
    if (cr_filter_parse(text, &f) != CR_OK)
        goto out;
    FUZZ_ASSERT(cr_filter_validate(f) == CR_OK);
    a = malloc(TEXT_MAX);
    b = malloc(TEXT_MAX);
    FUZZ_ASSERT(a && b);
    if (cr_filter_format(f, a, TEXT_MAX) != CR_OK)
        goto out; /* too long to print in TEXT_MAX: not a decoder fault */
    FUZZ_ASSERT(cr_filter_parse(a, &g) == CR_OK);
    FUZZ_ASSERT(cr_filter_format(g, b, TEXT_MAX) == CR_OK);
    FUZZ_ASSERT(strcmp(a, b) == 0);
out:
    if (f)
        cirrus__v1__filter__free_unpacked(f, NULL);
    if (g)
        cirrus__v1__filter__free_unpacked(g, NULL);
    free(a);
    free(b);
    free(text);
    return 0;
}
