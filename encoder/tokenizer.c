/* tokenizer.c — CLIP byte-level BPE (see tokenizer.h for the contract).
 *
 * Layout: vocabulary strings live in one pool, found through an open-addressing table
 * (string → id); merges in a second table keyed by the pair of ids (→ rank, merged id).
 * A word is BPE'd with a linked list of symbols and a binary heap of candidate pairs,
 * O(n log n), which equals CLIP's "merge every occurrence of the lowest-ranked pair, repeat"
 * whenever every merge ranks after the merges that produce its parts (checked at load; true of
 * CLIP's list). Otherwise the literal quadratic algorithm runs. Short words are cached in a
 * direct-mapped table guarded by striped mutexes.
 */
#include "encoder/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <zlib.h>

#define N_MERGES_MAX (49152 - 256 - 2) /* CLIP's slice merges[1 : 49152-256-2+1] */
#define FILE_MAX ((size_t)256 << 20)   /* refuse vocabulary files larger than this */
#define CACHE_SLOTS 8192
#define CACHE_KEY_MAX 32
#define CACHE_IDS_MAX 14
#define CACHE_LOCKS 16
#define SOT_STR "<|startoftext|>"
#define EOT_STR "<|endoftext|>"
#define END_STR "</w>"

/* ---------------------------------------------------------------------------------------- */
/* HTML named character references: HTML5's full table (2125 names; some stand for two code
 * points), generated from Python's html.entities.html5 by tools/gen_html5_entities.py;
 * `legacy` names are also recognised without ';'. Sorted by strcmp for bsearch. */
struct entity {
    const char *name;
    int32_t cp, cp2; /* cp2: the second code point, or 0 */
    int legacy;
};

#include "encoder/html5_entities.inc"
#define N_ENTITIES (sizeof(entities) / sizeof(entities[0]))

/* Python's html._invalid_charrefs for 0x80..0x9F (windows-1252 reading); 0 = keep as is. */
static const uint16_t cp1252[32] = {
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0, 0x017D, 0, 0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
    0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
};

/* ---------------------------------------------------------------------------------------- */

struct entry {
    uint32_t off; /* into pool */
    uint32_t len;
    int32_t id;
};

struct merge_slot {
    int32_t a, b;  /* the pair of ids; a = -1: empty slot */
    int32_t rank;  /* position in the merges list */
    int32_t id;    /* id of the joined symbol */
};

struct cache_entry {
    uint64_t hash;
    uint8_t klen; /* 0: empty */
    uint8_t nids;
    char key[CACHE_KEY_MAX];
    int32_t ids[CACHE_IDS_MAX];
};

struct cache {
    pthread_mutex_t locks[CACHE_LOCKS];
    struct cache_entry slots[CACHE_SLOTS];
};

struct enc_tokenizer {
    char *pool;
    size_t pool_len, pool_cap;
    struct entry *ents;
    uint32_t n_ents, ents_cap;
    uint32_t *str_slots; /* entry index + 1; 0 = empty */
    uint32_t str_mask;
    struct merge_slot *merges;
    uint32_t merge_mask;
    uint32_t n_merges;
    int32_t byte_id[256];     /* byte symbol */
    int32_t byte_id_end[256]; /* byte symbol + "</w>" */
    int32_t sot, eot;
    int32_t vocab_size;
    int monotonic;
    struct cache *cache;
};

/* Scratch of one encode call. */
struct work {
    int32_t *cp, *cp2; /* code points */
    size_t n, cap, cap2;
    uint8_t *bytes; /* UTF-8 of one piece */
    size_t bytes_cap;
    int32_t *sym, *next, *prev; /* BPE symbols */
    int64_t *heap;              /* (rank << 32) | position */
    size_t sym_cap, heap_n;
};

/* Receives ids: the first `cap` are stored, all are counted; stops the text at `stop`. */
struct sink {
    int32_t *ids;
    size_t cap;
    size_t n;
    size_t stop;
};

/* ---------------------------------------------------------------------------------------- */
/* Hashing */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_pair(int32_t a, int32_t b)
{
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint32_t pow2_at_least(size_t n)
{
    uint32_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* ---------------------------------------------------------------------------------------- */
/* Vocabulary: string → id */

static int32_t vocab_find(const enc_tokenizer *t, const char *s, size_t len)
{
    uint32_t i = (uint32_t)hash_bytes(s, len) & t->str_mask;
    for (;;) {
        uint32_t e = t->str_slots[i];
        if (!e)
            return -1;
        const struct entry *en = &t->ents[e - 1];
        if (en->len == len && memcmp(t->pool + en->off, s, len) == 0)
            return en->id;
        i = (i + 1) & t->str_mask;
    }
}

static cr_err vocab_init(enc_tokenizer *t, size_t n_strings)
{
    t->ents_cap = (uint32_t)n_strings;
    t->ents = calloc(n_strings ? n_strings : 1, sizeof(*t->ents));
    uint32_t slots = pow2_at_least(n_strings * 2);
    t->str_slots = calloc(slots, sizeof(*t->str_slots));
    t->str_mask = slots - 1;
    if (!t->ents || !t->str_slots)
        return cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory for %zu strings", n_strings);
    return CR_OK;
}

/* Adds or overwrites (a later id wins, as with Python's dict(zip(vocab, range))). */
static cr_err vocab_add(enc_tokenizer *t, const char *s, size_t len, int32_t id)
{
    if (len > UINT32_MAX / 2)
        return cr_error_set(CR_ERR_MODEL, "tokenizer: vocabulary string too long");
    uint32_t i = (uint32_t)hash_bytes(s, len) & t->str_mask;
    for (;;) {
        uint32_t e = t->str_slots[i];
        if (!e)
            break;
        struct entry *en = &t->ents[e - 1];
        if (en->len == len && memcmp(t->pool + en->off, s, len) == 0) {
            en->id = id;
            goto done;
        }
        i = (i + 1) & t->str_mask;
    }
    if (t->n_ents >= t->ents_cap)
        return cr_error_set(CR_ERR_INTERNAL, "tokenizer: vocabulary table full");
    if (t->pool_len + len + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
        while (cap < t->pool_len + len + 1)
            cap *= 2;
        if (cap > UINT32_MAX)
            return cr_error_set(CR_ERR_MODEL, "tokenizer: vocabulary too large");
        char *p = realloc(t->pool, cap);
        if (!p)
            return cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory");
        t->pool = p;
        t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_len, s, len);
    t->pool[t->pool_len + len] = '\0';
    t->ents[t->n_ents] = (struct entry){(uint32_t)t->pool_len, (uint32_t)len, id};
    t->pool_len += len + 1;
    t->str_slots[i] = ++t->n_ents;
done:
    if (id >= t->vocab_size)
        t->vocab_size = id + 1;
    return CR_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Merges: (id, id) → rank, joined id */

static const struct merge_slot *merge_find(const enc_tokenizer *t, int32_t a, int32_t b)
{
    uint32_t i = (uint32_t)hash_pair(a, b) & t->merge_mask;
    for (;;) {
        const struct merge_slot *m = &t->merges[i];
        if (m->a < 0)
            return NULL;
        if (m->a == a && m->b == b)
            return m;
        i = (i + 1) & t->merge_mask;
    }
}

/* Adds or overwrites (a repeated pair takes its later rank, as Python's dict does). */
static void merge_put(enc_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint32_t i = (uint32_t)hash_pair(a, b) & t->merge_mask;
    for (;;) {
        struct merge_slot *m = &t->merges[i];
        if (m->a < 0 || (m->a == a && m->b == b)) {
            if (m->a < 0)
                t->n_merges++;
            *m = (struct merge_slot){a, b, rank, id};
            return;
        }
        i = (i + 1) & t->merge_mask;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Files */

/* Reads a whole file, gunzipping it when it is gzip (zlib reads plain files as they are). */
static cr_err file_read(const char *path, char **out, size_t *out_len)
{
    cr_err rc = CR_OK;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        rc = cr_error_set(CR_ERR_IO, "tokenizer: cannot open %s: %s", path,
                          errno ? strerror(errno) : "out of memory");
        goto out;
    }
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            if (cap > FILE_MAX + 65536) {
                rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s is larger than %zu bytes", path,
                                  FILE_MAX);
                goto out;
            }
            char *p = realloc(buf, cap + 1);
            if (!p) {
                rc = cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory reading %s", path);
                goto out;
            }
            buf = p;
        }
        int n = gzread(gz, buf + len, (unsigned)(cap - len));
        if (n < 0) {
            int zerr = 0;
            const char *msg = gzerror(gz, &zerr);
            rc = cr_error_set(CR_ERR_IO, "tokenizer: cannot read %s: %s", path, msg);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    if (gz)
        gzclose(gz);
    free(buf);
    return rc;
}

static int is_sep(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* One parsed merge line: two symbols. */
struct merge_line {
    const char *a, *b;
    size_t alen, blen;
};

/* Splits `text` into lines and parses lines 1..N_MERGES_MAX as merges (line 0 is the
 * "#version" header). Returns the number of merges in *n; *lines is malloc'd. */
static cr_err merges_parse(const char *path, const char *text, size_t len,
                           struct merge_line **lines, size_t *n)
{
    struct merge_line *ml = malloc(N_MERGES_MAX * sizeof(*ml));
    if (!ml)
        return cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory");
    const char *p = text, *end = text + len;
    const char *nl = memchr(p, '\n', len);
    p = nl ? nl + 1 : end; /* skip the header line */
    size_t k = 0;
    while (p < end && k < N_MERGES_MAX) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *tok[3] = {NULL, NULL, NULL};
        size_t tlen[3] = {0, 0, 0};
        int nt = 0;
        const char *q = p;
        while (q < le) {
            while (q < le && is_sep(*q))
                q++;
            if (q >= le)
                break;
            const char *s = q;
            while (q < le && !is_sep(*q))
                q++;
            if (nt < 3) {
                tok[nt] = s;
                tlen[nt] = (size_t)(q - s);
            }
            nt++;
        }
        if (nt != 2) {
            /* CLIP reads a blank trailing line only past its slice; anything else is corrupt */
            if (nt == 0 && !nl)
                break;
            free(ml);
            return cr_error_set(CR_ERR_MODEL, "tokenizer: %s line %zu: expected two symbols",
                                path, k + 2);
        }
        ml[k++] = (struct merge_line){tok[0], tok[1], tlen[0], tlen[1]};
        p = nl ? nl + 1 : end;
    }
    *lines = ml;
    *n = k;
    return CR_OK;
}

/* Resolves the merges against the vocabulary, fills the byte and special ids, and checks the
 * rank order that the heap BPE relies on. */
static cr_err tokenizer_finish(enc_tokenizer *t, const char *path, const struct merge_line *ml,
                               size_t n_merges, const int32_t cp_of_byte[256])
{
    cr_err rc = CR_OK;
    int32_t *producer = NULL;
    char cat[512];

    uint32_t slots = pow2_at_least(n_merges * 2 + 1);
    t->merges = malloc(slots * sizeof(*t->merges));
    producer = malloc((size_t)(t->vocab_size > 0 ? t->vocab_size : 1) * sizeof(*producer));
    if (!t->merges || !producer) {
        rc = cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < slots; i++)
        t->merges[i].a = -1;
    t->merge_mask = slots - 1;
    for (int32_t i = 0; i < t->vocab_size; i++)
        producer[i] = -1;

    for (size_t r = 0; r < n_merges; r++) {
        const struct merge_line *m = &ml[r];
        if (m->alen + m->blen >= sizeof(cat)) {
            rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s: merge %zu is too long", path, r + 1);
            goto out;
        }
        memcpy(cat, m->a, m->alen);
        memcpy(cat + m->alen, m->b, m->blen);
        int32_t a = vocab_find(t, m->a, m->alen);
        int32_t b = vocab_find(t, m->b, m->blen);
        int32_t ab = vocab_find(t, cat, m->alen + m->blen);
        if (a < 0 || b < 0 || ab < 0) {
            rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s: merge %zu (\"%.*s %.*s\") uses a "
                              "symbol missing from the vocabulary", path, r + 1, (int)m->alen,
                              m->a, (int)m->blen, m->b);
            goto out;
        }
        merge_put(t, a, b, (int32_t)r, ab);
        producer[ab] = (int32_t)r; /* ranks rise, so this is the latest producer */
    }
    t->monotonic = 1;
    for (uint32_t i = 0; i < slots; i++) {
        const struct merge_slot *m = &t->merges[i];
        if (m->a >= 0 && (producer[m->a] >= m->rank || producer[m->b] >= m->rank))
            t->monotonic = 0;
    }

    for (int b = 0; b < 256; b++) {
        size_t n = (size_t)utf8proc_encode_char(cp_of_byte[b], (utf8proc_uint8_t *)cat);
        t->byte_id[b] = vocab_find(t, cat, n);
        memcpy(cat + n, END_STR, sizeof(END_STR));
        t->byte_id_end[b] = vocab_find(t, cat, n + sizeof(END_STR) - 1);
        if (t->byte_id[b] < 0 || t->byte_id_end[b] < 0) {
            rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s: no id for the symbol of byte 0x%02x",
                              path, b);
            goto out;
        }
    }
    t->sot = vocab_find(t, SOT_STR, strlen(SOT_STR));
    t->eot = vocab_find(t, EOT_STR, strlen(EOT_STR));
    if (t->sot < 0 || t->eot < 0)
        rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s: no %s or %s token", path, SOT_STR,
                          EOT_STR);
out:
    free(producer);
    return rc;
}

/* GPT-2/CLIP bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 to
 * U+0100.. in byte order; `order` lists the bytes in the order of the dict's values. */
static void byte_unicode(int order[256], int32_t cp_of_byte[256])
{
    int k = 0, n = 0;
    for (int b = 0; b < 256; b++) {
        if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
            order[k++] = b;
            cp_of_byte[b] = b;
        }
    }
    for (int b = 0; b < 256; b++) {
        if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
            order[k++] = b;
            cp_of_byte[b] = 256 + n++;
        }
    }
}

static cr_err load_gz(enc_tokenizer *t, const char *path)
{
    cr_err rc;
    char *text = NULL;
    size_t len = 0, n_merges = 0;
    struct merge_line *ml = NULL;
    int order[256];
    int32_t cp_of_byte[256];
    char buf[512];

    byte_unicode(order, cp_of_byte);
    rc = file_read(path, &text, &len);
    if (rc)
        goto out;
    rc = merges_parse(path, text, len, &ml, &n_merges);
    if (rc)
        goto out;
    rc = vocab_init(t, 512 + n_merges + 2);
    if (rc)
        goto out;
    for (int i = 0; i < 256 && !rc; i++) {
        size_t n = (size_t)utf8proc_encode_char(cp_of_byte[order[i]], (utf8proc_uint8_t *)buf);
        rc = vocab_add(t, buf, n, i);
        memcpy(buf + n, END_STR, sizeof(END_STR));
        if (!rc)
            rc = vocab_add(t, buf, n + sizeof(END_STR) - 1, 256 + i);
    }
    for (size_t r = 0; r < n_merges && !rc; r++) {
        if (ml[r].alen + ml[r].blen >= sizeof(buf)) {
            rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s: merge %zu is too long", path, r + 1);
            break;
        }
        memcpy(buf, ml[r].a, ml[r].alen);
        memcpy(buf + ml[r].alen, ml[r].b, ml[r].blen);
        rc = vocab_add(t, buf, ml[r].alen + ml[r].blen, (int32_t)(512 + r));
    }
    if (!rc)
        rc = vocab_add(t, SOT_STR, strlen(SOT_STR), (int32_t)(512 + n_merges));
    if (!rc)
        rc = vocab_add(t, EOT_STR, strlen(EOT_STR), (int32_t)(512 + n_merges + 1));
    if (!rc)
        rc = tokenizer_finish(t, path, ml, n_merges, cp_of_byte);
out:
    free(ml);
    free(text);
    return rc;
}

static int path_is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int path_is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

static cr_err load_hf(enc_tokenizer *t, const char *vocab_path, const char *merges_path)
{
    cr_err rc = CR_OK;
    json_t *root = NULL;
    json_error_t jerr;
    char *text = NULL;
    size_t len = 0, n_merges = 0;
    struct merge_line *ml = NULL;
    int order[256];
    int32_t cp_of_byte[256];
    const char *key;
    json_t *val;

    byte_unicode(order, cp_of_byte);
    if (!path_is_file(vocab_path)) {
        rc = cr_error_set(CR_ERR_IO, "tokenizer: cannot open %s: no such file", vocab_path);
        goto out;
    }
    root = json_load_file(vocab_path, 0, &jerr);
    if (!root) {
        rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s:%d: %s", vocab_path, jerr.line, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s: expected an object of token ids",
                          vocab_path);
        goto out;
    }
    rc = vocab_init(t, json_object_size(root));
    if (rc)
        goto out;
    json_object_foreach(root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= (json_int_t)1 << 24) {
            rc = cr_error_set(CR_ERR_MODEL, "tokenizer: %s: bad id for \"%s\"", vocab_path, key);
            goto out;
        }
        rc = vocab_add(t, key, strlen(key), (int32_t)id);
        if (rc)
            goto out;
    }
    rc = file_read(merges_path, &text, &len);
    if (rc)
        goto out;
    rc = merges_parse(merges_path, text, len, &ml, &n_merges);
    if (rc)
        goto out;
    rc = tokenizer_finish(t, merges_path, ml, n_merges, cp_of_byte);
out:
    free(ml);
    free(text);
    json_decref(root);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Writes "<directory of file>/<name>" into buf. */
static cr_err sibling_path(char *buf, size_t cap, const char *file, const char *name)
{
    const char *slash = strrchr(file, '/');
    int dlen = slash ? (int)(slash - file) : 1;
    const char *dir = slash ? file : ".";
    int n = snprintf(buf, cap, "%.*s/%s", dlen, dir, name);
    if (n < 0 || (size_t)n >= cap)
        return cr_error_set(CR_ERR_INVALID, "tokenizer: path too long: %s", file);
    return CR_OK;
}

cr_err enc_tokenizer_default_path(char *buf, size_t cap)
{
    char cand[3][4096];
    int nc = 0;
    const char *env = getenv("CIRRUS_VOCAB");
    if (!buf || cap == 0)
        return cr_error_set(CR_ERR_INVALID, "tokenizer: no buffer for the default path");
    if (env && *env)
        snprintf(cand[nc++], sizeof(cand[0]), "%s", env);
    env = getenv("CIRRUS_SOURCE_DIR");
    if (env && *env)
        snprintf(cand[nc++], sizeof(cand[0]), "%s/encoder/data/%s", env,
                 ENC_TOKENIZER_VOCAB_FILE);
    if (sibling_path(cand[nc], sizeof(cand[0]), __FILE__, "data/" ENC_TOKENIZER_VOCAB_FILE) ==
        CR_OK)
        nc++;
    for (int i = 0; i < nc; i++) {
        struct stat st;
        if (stat(cand[i], &st) == 0) {
            int n = snprintf(buf, cap, "%s", cand[i]);
            if (n < 0 || (size_t)n >= cap)
                return cr_error_set(CR_ERR_INVALID, "tokenizer: buffer of %zu bytes too small "
                                    "for %s", cap, cand[i]);
            return CR_OK;
        }
    }
    return cr_error_set(CR_NOTFOUND, "tokenizer: no vocabulary found (tried $CIRRUS_VOCAB, "
                        "$CIRRUS_SOURCE_DIR/encoder/data/, %s)", nc ? cand[nc - 1] : "-");
}

cr_err enc_tokenizer_open(enc_tokenizer **out, const char *path)
{
    cr_err rc = CR_OK;
    enc_tokenizer *t = NULL;
    char def[4096], a[4096], b[4096];
    int cache_locks = 0;

    if (!out)
        return cr_error_set(CR_ERR_INVALID, "tokenizer: out is NULL");
    if (!path) {
        rc = enc_tokenizer_default_path(def, sizeof(def));
        if (rc)
            return rc == CR_NOTFOUND ? CR_ERR_IO : rc;
        path = def;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        return cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory");

    if (path_is_dir(path)) {
        int n = snprintf(a, sizeof(a), "%s/%s", path, ENC_TOKENIZER_VOCAB_FILE);
        int m = snprintf(b, sizeof(b), "%s/vocab.json", path);
        if (n < 0 || (size_t)n >= sizeof(a) || m < 0 || (size_t)m >= sizeof(b)) {
            rc = cr_error_set(CR_ERR_INVALID, "tokenizer: path too long: %s", path);
            goto out;
        }
        if (path_is_file(a)) {
            rc = load_gz(t, a);
        } else if (path_is_file(b)) {
            rc = sibling_path(a, sizeof(a), b, "merges.txt");
            if (!rc)
                rc = load_hf(t, b, a);
        } else {
            rc = cr_error_set(CR_ERR_IO, "tokenizer: %s holds neither %s nor vocab.json", path,
                              ENC_TOKENIZER_VOCAB_FILE);
        }
    } else if (ends_with(path, ".json")) {
        rc = sibling_path(a, sizeof(a), path, "merges.txt");
        if (!rc)
            rc = load_hf(t, path, a);
    } else if (ends_with(path, "merges.txt")) {
        rc = sibling_path(a, sizeof(a), path, "vocab.json");
        if (!rc)
            rc = load_hf(t, a, path);
    } else {
        rc = load_gz(t, path);
    }
    if (rc)
        goto out;

    t->cache = calloc(1, sizeof(*t->cache));
    if (!t->cache) {
        rc = cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory for the word cache");
        goto out;
    }
    for (; cache_locks < CACHE_LOCKS; cache_locks++) {
        if (pthread_mutex_init(&t->cache->locks[cache_locks], NULL) != 0) {
            rc = cr_error_set(CR_ERR_INTERNAL, "tokenizer: pthread_mutex_init failed");
            goto out;
        }
    }
    *out = t;
    t = NULL;
out:
    if (t) {
        if (t->cache) {
            for (int i = 0; i < cache_locks; i++)
                pthread_mutex_destroy(&t->cache->locks[i]);
            free(t->cache);
            t->cache = NULL;
        }
        enc_tokenizer_close(&t);
    }
    return rc;
}

void enc_tokenizer_close(enc_tokenizer **pp)
{
    if (!pp || !*pp)
        return;
    enc_tokenizer *t = *pp;
    if (t->cache) {
        for (int i = 0; i < CACHE_LOCKS; i++)
            pthread_mutex_destroy(&t->cache->locks[i]);
        free(t->cache);
    }
    free(t->merges);
    free(t->str_slots);
    free(t->ents);
    free(t->pool);
    free(t);
    *pp = NULL;
}

cr_err enc_tokenizer_token_id(const enc_tokenizer *tok, const char *token, int32_t *id)
{
    if (!tok || !token || !id)
        return cr_error_set(CR_ERR_INVALID, "tokenizer: NULL argument");
    int32_t v = vocab_find(tok, token, strlen(token));
    if (v < 0)
        return cr_error_set(CR_NOTFOUND, "tokenizer: no token \"%s\"", token);
    *id = v;
    return CR_OK;
}

int32_t enc_tokenizer_sot(const enc_tokenizer *tok)
{
    return tok->sot;
}

int32_t enc_tokenizer_eot(const enc_tokenizer *tok)
{
    return tok->eot;
}

int32_t enc_tokenizer_vocab_size(const enc_tokenizer *tok)
{
    return tok->vocab_size;
}

/* ---------------------------------------------------------------------------------------- */
/* Scratch */

static void work_free(struct work *w)
{
    free(w->cp);
    free(w->cp2);
    free(w->bytes);
    free(w->sym);
    free(w->next);
    free(w->prev);
    free(w->heap);
}

/* New capacity (a power of two, at least 64) for `need` elements. */
static size_t grown_cap(size_t cap, size_t need)
{
    size_t c = cap ? cap : 64;
    while (c < need)
        c *= 2;
    return c;
}

static cr_err grow_i32(int32_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return CR_OK;
    size_t c = grown_cap(*cap, need);
    int32_t *q = realloc(*p, c * sizeof(*q));
    if (!q)
        return cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory");
    *p = q;
    *cap = c;
    return CR_OK;
}

static cr_err grow_u8(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return CR_OK;
    size_t c = grown_cap(*cap, need);
    uint8_t *q = realloc(*p, c);
    if (!q)
        return cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory");
    *p = q;
    *cap = c;
    return CR_OK;
}

static cr_err work_sym_reserve(struct work *w, size_t n)
{
    if (n <= w->sym_cap)
        return CR_OK;
    size_t c = w->sym_cap ? w->sym_cap : 64;
    while (c < n)
        c *= 2;
    int32_t *s = realloc(w->sym, c * sizeof(*s));
    if (s)
        w->sym = s;
    int32_t *nx = realloc(w->next, c * sizeof(*nx));
    if (nx)
        w->next = nx;
    int32_t *pv = realloc(w->prev, c * sizeof(*pv));
    if (pv)
        w->prev = pv;
    int64_t *h = realloc(w->heap, 3 * c * sizeof(*h));
    if (h)
        w->heap = h;
    if (!s || !nx || !pv || !h)
        return cr_error_set(CR_ERR_NOMEM, "tokenizer: out of memory");
    w->sym_cap = c;
    return CR_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Unicode classes */

/* regex's \s: the White_Space property. */
static int is_ws(int32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Python's str.isspace(), what str.strip() removes: White_Space plus U+001C..U+001F. */
static int is_pyspace(int32_t c)
{
    return is_ws(c) || (c >= 0x1C && c <= 0x1F);
}

static int is_letter(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

static int is_number(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* Unicode "Cased" (approximated: a cased letter category or any case mapping). */
static int is_cased(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower(c) != c || utf8proc_toupper(c) != c;
}

/* Unicode "Case_Ignorable": Mn Me Cf Lm Sk and the word-break MidLetter/MidNumLet/quote set. */
static int is_case_ignorable(int32_t c)
{
    switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4:
    case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55:
    case 0xFF07: case 0xFF0E: case 0xFF1A:
        return 1;
    default:
        break;
    }
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}

/* ---------------------------------------------------------------------------------------- */
/* Cleaning */

/* Decodes and NFC-normalizes `text` into w->cp. */
static cr_err text_decode(const char *text, struct work *w)
{
    size_t len = strlen(text);
    const utf8proc_uint8_t *s = (const utf8proc_uint8_t *)text;
    size_t i = 0;
    while (i < len && s[i] < 0x80)
        i++;
    if (i == len) { /* ASCII: NFC is the identity */
        if (grow_i32(&w->cp, &w->cap, len + 1))
            return CR_ERR_NOMEM;
        for (i = 0; i < len; i++)
            w->cp[i] = s[i];
        w->n = len;
        return CR_OK;
    }
    while (i < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0)
            return cr_error_set(CR_ERR_INVALID, "tokenizer: text is not valid UTF-8 "
                                "(byte 0x%02x at offset %zu)", s[i], i);
        i += (size_t)k;
    }
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    if (grow_i32(&w->cp, &w->cap, len + 1))
        return CR_ERR_NOMEM;
    utf8proc_ssize_t n = utf8proc_decompose(s, (utf8proc_ssize_t)len, w->cp,
                                            (utf8proc_ssize_t)w->cap, opt);
    if (n > (utf8proc_ssize_t)w->cap) {
        if (grow_i32(&w->cp, &w->cap, (size_t)n))
            return CR_ERR_NOMEM;
        n = utf8proc_decompose(s, (utf8proc_ssize_t)len, w->cp, (utf8proc_ssize_t)w->cap, opt);
    }
    if (n < 0)
        return cr_error_set(CR_ERR_INVALID, "tokenizer: cannot normalize text: %s",
                            utf8proc_errmsg(n));
    n = utf8proc_normalize_utf32(w->cp, n, opt);
    if (n < 0)
        return cr_error_set(CR_ERR_INVALID, "tokenizer: cannot normalize text: %s",
                            utf8proc_errmsg(n));
    w->n = (size_t)n;
    return CR_OK;
}

/* Index of the entity named by the n code points s, or -1. */
static int entity_find(const int32_t *s, size_t n)
{
    if (n > ENTITY_NAME_MAX)
        return -1;
    int lo = 0, hi = (int)N_ENTITIES - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const char *name = entities[mid].name;
        int cmp = 0;
        size_t k = 0;
        for (; k < n && name[k]; k++) {
            int32_t c = (unsigned char)name[k];
            if (s[k] != c) {
                cmp = s[k] < c ? -1 : 1;
                break;
            }
        }
        if (!cmp)
            cmp = k < n ? 1 : (name[k] ? -1 : 0);
        if (!cmp)
            return mid;
        if (cmp < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

static int is_hex(int32_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_val(int32_t c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Python's html.unescape replacement of a numeric reference. Returns -1 for "" (dropped). */
static int32_t charref_value(uint64_t num)
{
    if (num == 0)
        return 0xFFFD;
    if (num == 0x0D)
        return 0x0D;
    if (num >= 0x80 && num <= 0x9F)
        return cp1252[num - 0x80] ? cp1252[num - 0x80] : (int32_t)num;
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF)
        return 0xFFFD;
    if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) ||
        num == 0x7F || (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
        return -1;
    return (int32_t)num;
}

/* Python's html.unescape(), in place (the result is never longer). */
static void html_unescape(struct work *w)
{
    int32_t *c = w->cp;
    size_t n = w->n, i = 0, o = 0;
    while (i < n) {
        if (c[i] != '&') {
            c[o++] = c[i++];
            continue;
        }
        size_t j = i + 1;
        if (j < n && c[j] == '#') {
            int hex = j + 1 < n && (c[j + 1] == 'x' || c[j + 1] == 'X');
            size_t d = j + 1 + (size_t)hex, k = d;
            uint64_t num = 0;
            while (k < n && (hex ? is_hex(c[k]) : (c[k] >= '0' && c[k] <= '9'))) {
                if (num <= 0x10FFFF) /* saturate: anything larger is U+FFFD anyway */
                    num = num * (hex ? 16 : 10) + (uint64_t)(hex ? hex_val(c[k]) : c[k] - '0');
                k++;
            }
            if (k == d) { /* "&#" or "&#x" without digits: not a reference */
                c[o++] = c[i++];
                continue;
            }
            if (k < n && c[k] == ';')
                k++;
            int32_t v = charref_value(num);
            if (v >= 0)
                c[o++] = v;
            i = k;
            continue;
        }
        /* named: [^\t\n\f <&#;]{1,32};? */
        size_t k = j;
        while (k < n && k - j < 32 && c[k] != '\t' && c[k] != '\n' && c[k] != '\f' &&
               c[k] != ' ' && c[k] != '<' && c[k] != '&' && c[k] != '#' && c[k] != ';')
            k++;
        if (k == j) {
            c[o++] = c[i++];
            continue;
        }
        size_t name_len = k - j;
        int semi = k < n && c[k] == ';';
        size_t end = k + (size_t)semi;
        int e = entity_find(c + j, name_len);
        if (e >= 0 && (semi || entities[e].legacy)) {
            c[o++] = entities[e].cp;
            if (entities[e].cp2) /* "&" + name (+ ";") is at least 3 code points: fits */
                c[o++] = entities[e].cp2;
            i = end;
            continue;
        }
        /* longest legacy prefix s[:x], 2 <= x <= len(s)-1, of s = name + (";" if semi) */
        size_t max_x = name_len + (size_t)semi - 1;
        if (max_x > ENTITY_NAME_MAX)
            max_x = ENTITY_NAME_MAX;
        int found = 0;
        for (size_t x = max_x; x >= 2 && !found; x--) {
            e = entity_find(c + j, x);
            if (e >= 0 && entities[e].legacy) {
                c[o++] = entities[e].cp; /* no legacy name has two code points */
                i = j + x; /* the rest of the match is copied as text */
                found = 1;
            }
        }
        if (!found) {
            while (i < end)
                c[o++] = c[i++];
        }
    }
    w->n = o;
}

/* strip, collapse \s+ to ' ', strip — in place. */
static void whitespace_clean(struct work *w)
{
    int32_t *c = w->cp;
    size_t b = 0, e = w->n, o = 0;
    while (b < e && is_pyspace(c[b]))
        b++;
    while (e > b && is_pyspace(c[e - 1]))
        e--;
    for (size_t i = b; i < e;) {
        if (is_ws(c[i])) {
            while (i < e && is_ws(c[i]))
                i++;
            c[o++] = ' ';
        } else {
            c[o++] = c[i++];
        }
    }
    b = 0;
    while (b < o && is_pyspace(c[b]))
        b++;
    while (o > b && is_pyspace(c[o - 1]))
        o--;
    if (b)
        memmove(c, c + b, (o - b) * sizeof(*c));
    w->n = o - b;
}

/* Python's str.lower(): w->cp → w->cp2 (U+0130 becomes two code points, Σ may become ς). */
static cr_err lowercase(struct work *w)
{
    const int32_t *c = w->cp;
    size_t n = w->n, o = 0;
    if (grow_i32(&w->cp2, &w->cap2, 2 * n + 1))
        return CR_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        int32_t ch = c[i];
        if (ch < 0x80) {
            w->cp2[o++] = (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
        } else if (ch == 0x130) {
            w->cp2[o++] = 'i';
            w->cp2[o++] = 0x307;
        } else if (ch == 0x3A3) {
            size_t j = i;
            while (j > 0 && is_case_ignorable(c[j - 1]))
                j--;
            int final = j > 0 && is_cased(c[j - 1]);
            if (final) {
                j = i + 1;
                while (j < n && is_case_ignorable(c[j]))
                    j++;
                final = j == n || !is_cased(c[j]);
            }
            w->cp2[o++] = final ? 0x3C2 : 0x3C3;
        } else {
            w->cp2[o++] = utf8proc_tolower(ch);
        }
    }
    w->n = o;
    return CR_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* BPE */

static void heap_push(struct work *w, int64_t v)
{
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p] <= v)
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = v;
}

static int64_t heap_pop(struct work *w)
{
    int64_t top = w->heap[0], v = w->heap[--w->heap_n];
    size_t n = w->heap_n, i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        if (l + 1 < n && w->heap[l + 1] < w->heap[l])
            l++;
        if (w->heap[l] >= v)
            break;
        w->heap[i] = w->heap[l];
        i = l;
    }
    if (n)
        w->heap[i] = v;
    return top;
}

static void push_pair(const enc_tokenizer *t, struct work *w, int32_t pos)
{
    int32_t q = w->next[pos];
    if (q < 0)
        return;
    const struct merge_slot *m = merge_find(t, w->sym[pos], w->sym[q]);
    if (m)
        heap_push(w, ((int64_t)m->rank << 32) | pos);
}

/* Merges the n symbols in w->sym; returns the number left, compacted at the front. */
static size_t bpe_heap(const enc_tokenizer *t, struct work *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        w->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        w->prev[i] = (int32_t)i - 1;
    }
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(t, w, (int32_t)i);
    while (w->heap_n) {
        int64_t top = heap_pop(w);
        int32_t p = (int32_t)(top & 0xFFFFFFFF), rank = (int32_t)(top >> 32);
        if (w->sym[p] < 0)
            continue; /* merged into its left neighbour */
        int32_t q = w->next[p];
        if (q < 0)
            continue;
        const struct merge_slot *m = merge_find(t, w->sym[p], w->sym[q]);
        if (!m || m->rank != rank)
            continue; /* stale: a neighbour changed */
        w->sym[p] = m->id;
        w->sym[q] = -1;
        w->next[p] = w->next[q];
        if (w->next[q] >= 0)
            w->prev[w->next[q]] = p;
        if (w->prev[p] >= 0)
            push_pair(t, w, w->prev[p]);
        push_pair(t, w, p);
    }
    size_t o = 0;
    for (int32_t i = 0; i >= 0; i = w->next[i])
        w->sym[o++] = w->sym[i];
    return o;
}

/* CLIP's loop, literally: merge every occurrence of the lowest-ranked pair, repeat. */
static size_t bpe_simple(const enc_tokenizer *t, struct work *w, size_t n)
{
    int32_t *s = w->sym;
    while (n > 1) {
        const struct merge_slot *best = NULL;
        for (size_t i = 0; i + 1 < n; i++) {
            const struct merge_slot *m = merge_find(t, s[i], s[i + 1]);
            if (m && (!best || m->rank < best->rank))
                best = m;
        }
        if (!best)
            break;
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && s[i] == best->a && s[i + 1] == best->b) {
                s[o++] = best->id;
                i += 2;
            } else {
                s[o++] = s[i++];
            }
        }
        n = o;
    }
    return n;
}

static void sink_push(struct sink *k, int32_t id)
{
    if (k->n < k->cap)
        k->ids[k->n] = id;
    k->n++;
}

/* BPE of one pre-token given as UTF-8 bytes; ids go to the sink. */
static cr_err bpe_word(const enc_tokenizer *t, struct work *w, const uint8_t *b, size_t n,
                       struct sink *k)
{
    struct cache *c = t->cache;
    uint64_t h = 0;
    size_t slot = 0;
    if (n <= CACHE_KEY_MAX) {
        h = hash_bytes(b, n);
        slot = (size_t)(h % CACHE_SLOTS);
        pthread_mutex_t *lk = &c->locks[slot % CACHE_LOCKS];
        pthread_mutex_lock(lk);
        const struct cache_entry *e = &c->slots[slot];
        if (e->klen == n && e->hash == h && memcmp(e->key, b, n) == 0) {
            for (size_t i = 0; i < e->nids; i++)
                sink_push(k, e->ids[i]);
            pthread_mutex_unlock(lk);
            return CR_OK;
        }
        pthread_mutex_unlock(lk);
    }
    if (work_sym_reserve(w, n))
        return CR_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        w->sym[i] = i + 1 < n ? t->byte_id[b[i]] : t->byte_id_end[b[i]];
    size_t m = t->monotonic ? bpe_heap(t, w, n) : bpe_simple(t, w, n);
    for (size_t i = 0; i < m; i++)
        sink_push(k, w->sym[i]);
    if (n <= CACHE_KEY_MAX && m <= CACHE_IDS_MAX) {
        pthread_mutex_t *lk = &c->locks[slot % CACHE_LOCKS];
        pthread_mutex_lock(lk);
        struct cache_entry *e = &c->slots[slot];
        e->hash = h;
        e->klen = (uint8_t)n;
        e->nids = (uint8_t)m;
        memcpy(e->key, b, n);
        memcpy(e->ids, w->sym, m * sizeof(int32_t));
        pthread_mutex_unlock(lk);
    }
    return CR_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Pre-tokenizer: CLIP's regex, case-insensitive */

static int32_t fold(int32_t c)
{
    return c == 0x17F ? 's' : c; /* ſ: the one lower-case letter that folds into [a-z] here */
}

/* Length of `lit` matched case-insensitively at c[0..n), or 0. */
static size_t match_lit(const int32_t *c, size_t n, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++) {
        if (k >= n || fold(c[k]) != (unsigned char)lit[k])
            return 0;
    }
    return k;
}

/* Matched by no alternative of the regex, so skipped: white space, and U+0345 (COMBINING GREEK
 * YPOGEGRAMMENI), which under IGNORECASE folds to a letter (ι) and so leaves the class
 * [^\s\p{L}\p{N}] without entering [\p{L}]. */
static int is_skipped(int32_t c)
{
    return is_ws(c) || c == 0x345;
}

static size_t match_at(const int32_t *c, size_t n)
{
    static const char *const lits[] = {SOT_STR, EOT_STR, "'s", "'t", "'re", "'ve", "'m",
                                       "'ll", "'d"};
    for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
        size_t m = match_lit(c, n, lits[i]);
        if (m)
            return m;
    }
    size_t k = 0;
    if (is_letter(c[0])) {
        while (k < n && is_letter(c[k]))
            k++;
        return k;
    }
    if (is_number(c[0]))
        return 1;
    while (k < n && !is_skipped(c[k]) && !is_letter(c[k]) && !is_number(c[k]))
        k++;
    return k;
}

static int is_exact(const int32_t *c, size_t n, const char *lit)
{
    size_t k = 0;
    for (; k < n && lit[k]; k++) {
        if (c[k] != (unsigned char)lit[k])
            return 0;
    }
    return k == n && !lit[k];
}

static cr_err text_tokenize(const enc_tokenizer *t, const char *text, struct work *w,
                            struct sink *k)
{
    cr_err rc = text_decode(text, w);
    if (rc)
        return rc;
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0;
        while (i < w->n && w->cp[i] != '&')
            i++;
        if (i < w->n)
            html_unescape(w);
    }
    whitespace_clean(w);
    rc = lowercase(w);
    if (rc)
        return rc;
    const int32_t *c = w->cp2;
    size_t n = w->n;
    for (size_t i = 0; i < n && k->n < k->stop;) {
        if (is_skipped(c[i])) {
            i++;
            continue;
        }
        size_t m = match_at(c + i, n - i);
        if (is_exact(c + i, m, SOT_STR)) {
            sink_push(k, t->sot);
        } else if (is_exact(c + i, m, EOT_STR)) {
            sink_push(k, t->eot);
        } else {
            if (grow_u8(&w->bytes, &w->bytes_cap, 4 * m))
                return CR_ERR_NOMEM;
            size_t nb = 0;
            for (size_t j = 0; j < m; j++)
                nb += (size_t)utf8proc_encode_char(c[i + j], w->bytes + nb);
            rc = bpe_word(t, w, w->bytes, nb, k);
            if (rc)
                return rc;
        }
        i += m;
    }
    return CR_OK;
}

cr_err enc_tokenizer_tokenize(const enc_tokenizer *tok, const char *text, int32_t *ids,
                              size_t cap, size_t *n_total)
{
    struct work w = {0};
    struct sink k = {ids, ids ? cap : 0, 0, SIZE_MAX};
    if (!tok || !text || !n_total)
        return cr_error_set(CR_ERR_INVALID, "tokenizer: NULL argument");
    cr_err rc = text_tokenize(tok, text, &w, &k);
    work_free(&w);
    *n_total = rc ? 0 : k.n;
    return rc;
}

cr_err enc_tokenizer_encode(const enc_tokenizer *tok, const char *text,
                            int32_t out[ENC_TOKENIZER_CONTEXT], int *n_used, int *truncated)
{
    enum { CTX = ENC_TOKENIZER_CONTEXT };
    struct work w = {0};
    int32_t body[CTX - 1];
    /* one id more than fits tells that the text was truncated */
    struct sink k = {body, CTX - 1, 0, CTX - 1};
    cr_err rc;

    if (out)
        memset(out, 0, CTX * sizeof(*out));
    if (n_used)
        *n_used = 0;
    if (truncated)
        *truncated = 0;
    if (!tok || !text || !out)
        return cr_error_set(CR_ERR_INVALID, "tokenizer: NULL argument");
    rc = text_tokenize(tok, text, &w, &k);
    work_free(&w);
    if (rc)
        return rc;
    size_t keep = k.n > CTX - 2 ? CTX - 2 : k.n;
    out[0] = tok->sot;
    memcpy(out + 1, body, keep * sizeof(*out));
    out[1 + keep] = tok->eot;
    if (n_used)
        *n_used = (int)keep + 2;
    if (truncated)
        *truncated = k.n > CTX - 2;
    return CR_OK;
}
