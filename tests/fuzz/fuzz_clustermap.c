/* fuzz_clustermap.c — the cluster map file (an operator's JSON, or one a tool wrote): parse
 * and validate; a map that parses has its counts inside the limits and places every id in
 * one of its groups. */
#include <stdlib.h>

#include "coordinator/clustermap.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    coord_map *m = calloc(1, sizeof *m);
    FUZZ_ASSERT(m);
    if (text && coord_map_parse(text, m) == CR_OK) {
        FUZZ_ASSERT(m->n_groups >= 1 && m->n_groups <= COORD_MAX_GROUPS);
        for (int g = 0; g < m->n_groups; g++)
            FUZZ_ASSERT(m->n_replicas[g] >= 1 && m->n_replicas[g] <= COORD_MAX_REPLICAS);
        FUZZ_ASSERT(m->n_encoders >= 0 && m->n_encoders <= COORD_MAX_ENCODERS);
        static const char *const ids[] = {"a", "sku-1", "\xc3\xa9t\xc3\xa9"};
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
            int g = coord_map_group_of(m, ids[i]);
            FUZZ_ASSERT(g >= 0 && g < m->n_groups);
        }
    }
    free(m);
    free(text);
    return 0;
}
