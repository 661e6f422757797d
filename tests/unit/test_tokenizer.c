/* test_tokenizer.c — CLIP BPE tokenizer: parity with clip.tokenize on the clip-tiny fixture,
 * from both vocabulary sources, plus cleaning, truncation, errors, threads and speed. */
#include "common/test.h"
#include "encoder/tokenizer.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CTX ENC_TOKENIZER_CONTEXT

/* ---- a tiny safetensors reader (I32 tensors only), local to this test ---- */

struct tensor {
    int32_t *data;
    int64_t rows, cols;
};

static int st_read_i32(const char *path, const char *name, struct tensor *t)
{
    int ok = 0;
    FILE *f = fopen(path, "rb");
    unsigned char lenbuf[8];
    char *hdr = NULL;
    json_t *root = NULL;
    uint64_t hlen = 0;

    memset(t, 0, sizeof(*t));
    if (!f || fread(lenbuf, 1, 8, f) != 8)
        goto out;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | lenbuf[i];
    if (hlen == 0 || hlen > (1u << 24))
        goto out;
    hdr = malloc(hlen + 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen)
        goto out;
    hdr[hlen] = '\0';
    root = json_loads(hdr, 0, NULL);
    json_t *info = root ? json_object_get(root, name) : NULL;
    json_t *shape = json_object_get(info, "shape");
    json_t *offs = json_object_get(info, "data_offsets");
    const char *dtype = json_string_value(json_object_get(info, "dtype"));
    if (!info || !dtype || strcmp(dtype, "I32") != 0 ||
        json_array_size(shape) != 2 || json_array_size(offs) != 2)
        goto out;
    t->rows = json_integer_value(json_array_get(shape, 0));
    t->cols = json_integer_value(json_array_get(shape, 1));
    int64_t b = json_integer_value(json_array_get(offs, 0));
    int64_t e = json_integer_value(json_array_get(offs, 1));
    if (t->rows <= 0 || t->cols <= 0 || e - b != t->rows * t->cols * 4)
        goto out;
    t->data = malloc((size_t)(e - b));
    if (!t->data || fseek(f, (long)(8 + hlen + (uint64_t)b), SEEK_SET) != 0 ||
        fread(t->data, 1, (size_t)(e - b), f) != (size_t)(e - b))
        goto out;
    for (int64_t i = 0; i < t->rows * t->cols; i++) { /* little-endian on disk */
        const unsigned char *p = (const unsigned char *)&t->data[i];
        t->data[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                               (uint32_t)p[3] << 24);
    }
    ok = 1;
out:
    if (!ok) {
        free(t->data);
        t->data = NULL;
    }
    json_decref(root);
    free(hdr);
    if (f)
        fclose(f);
    return ok;
}

/* ---- helpers ---- */

static int encode_eq(const enc_tokenizer *tok, const char *a, const char *b)
{
    int32_t x[CTX], y[CTX];
    if (enc_tokenizer_encode(tok, a, x, NULL, NULL) || enc_tokenizer_encode(tok, b, y, NULL, NULL))
        return 0;
    return memcmp(x, y, sizeof(x)) == 0;
}

static void print_row(const char *what, const int32_t *ids)
{
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < CTX && (i < 2 || ids[i - 1] != 49407); i++)
        fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

static void check_rows(const enc_tokenizer *tok, json_t *texts, const struct tensor *exp,
                       const char *label)
{
    CR_CHECK_MSG(exp->data && exp->cols == CTX && exp->rows == (int64_t)json_array_size(texts),
                 "%s: fixture shape", label);
    if (!exp->data || exp->cols != CTX)
        return;
    for (size_t i = 0; i < json_array_size(texts) && (int64_t)i < exp->rows; i++) {
        const char *text = json_string_value(json_array_get(texts, i));
        int32_t out[CTX];
        int n_used = -1, trunc = -1;
        cr_err rc = enc_tokenizer_encode(tok, text, out, &n_used, &trunc);
        const int32_t *want = exp->data + i * CTX;
        int same = rc == CR_OK && memcmp(out, want, sizeof(out)) == 0;
        CR_CHECK_MSG(same, "%s %zu: \"%s\" (rc %d %s)", label, i, text, rc, cr_error_message());
        if (!same) {
            print_row("want", want);
            print_row("got ", out);
        }
        int want_used = 0;
        while (want_used < CTX && want[want_used])
            want_used++;
        CR_CHECK_MSG(n_used == want_used, "%s %zu: n_used %d, want %d", label, i, n_used,
                     want_used);
        CR_CHECK(trunc == 0);
    }
}

/* ---- the tests ---- */

static void test_fixture(const enc_tokenizer *tok, const char *shared, const char *label)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/fixtures/clip-tiny/cases.json", shared);
    json_t *cases = json_load_file(path, 0, NULL);
    CR_CHECK_MSG(cases != NULL, "cannot read %s", path);
    if (!cases)
        return;
    snprintf(path, sizeof(path), "%s/fixtures/clip-tiny/expected.safetensors", shared);
    struct tensor cap, pro;
    CR_CHECK(st_read_i32(path, "caption_tokens", &cap));
    CR_CHECK(st_read_i32(path, "prompt_tokens", &pro));
    char lab[64];
    snprintf(lab, sizeof(lab), "%s caption", label);
    check_rows(tok, json_object_get(cases, "captions"), &cap, lab);
    snprintf(lab, sizeof(lab), "%s prompt", label);
    check_rows(tok, json_object_get(cases, "prompts"), &pro, lab);
    free(cap.data);
    free(pro.data);
    json_decref(cases);
}

static void test_basics(const enc_tokenizer *tok)
{
    int32_t id = -1, out[CTX];
    int n_used = -1, trunc = -1;

    CR_CHECK(enc_tokenizer_sot(tok) == 49406);
    CR_CHECK(enc_tokenizer_eot(tok) == 49407);
    CR_CHECK(enc_tokenizer_vocab_size(tok) == 49408);
    CR_CHECK(enc_tokenizer_token_id(tok, "$</w>", &id) == CR_OK && id == 259);
    CR_CHECK(enc_tokenizer_token_id(tok, "!", &id) == CR_OK && id == 0);
    CR_CHECK(enc_tokenizer_token_id(tok, "<|endoftext|>", &id) == CR_OK && id == 49407);
    CR_CHECK(enc_tokenizer_token_id(tok, "no-such-token", &id) == CR_NOTFOUND);

    /* empty and blank text: [sot, eot, 0...] */
    const char *blank[] = {"", "   ", " \t\n\r\v\f ", "\xc2\xa0\xe3\x80\x80"};
    for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
        CR_CHECK(enc_tokenizer_encode(tok, blank[i], out, &n_used, &trunc) == CR_OK);
        int zeros = 1;
        for (int k = 2; k < CTX; k++)
            zeros &= out[k] == 0;
        CR_CHECK_MSG(out[0] == 49406 && out[1] == 49407 && zeros && n_used == 2 && !trunc,
                     "blank %zu", i);
    }

    /* "$" alone is the pseudo-token 259, as SEARLE needs; "a photo of $ that" has it 4th */
    CR_CHECK(enc_tokenizer_encode(tok, "$", out, &n_used, NULL) == CR_OK && out[1] == 259 &&
             n_used == 3);
    CR_CHECK(enc_tokenizer_encode(tok, "a photo of $ that", out, NULL, NULL) == CR_OK &&
             out[4] == 259);

    /* special tokens written in the text become the special ids, in any case */
    CR_CHECK(enc_tokenizer_encode(tok, "a<|endoftext|>b", out, &n_used, NULL) == CR_OK &&
             n_used == 5 && out[2] == 49407);
    CR_CHECK(encode_eq(tok, "<|ENDOFTEXT|>", "<|endoftext|>"));

    /* cleaning: HTML unescaped twice, white space collapsed, lower case, NFC */
    CR_CHECK(encode_eq(tok, "&amp;amp; &lt;b&gt;", "& <b>"));
    CR_CHECK(encode_eq(tok, "&#36;5 &#x24;5 &#X24;5", "$5 $5 $5"));
    CR_CHECK(encode_eq(tok, "caf&eacute; &eacutex &amp", "café éx &"));
    CR_CHECK(encode_eq(tok, "&nosuch; &#; &#x; & amp", "&nosuch; &#; &#x; & amp"));
    CR_CHECK(encode_eq(tok, "&#150;&#0;", "\xe2\x80\x93\xef\xbf\xbd")); /* cp1252, U+FFFD */
    CR_CHECK(encode_eq(tok, "a&nbsp;&nbsp;b", "a b"));
    /* HTML5's names beyond HTML 4 (encoder/html5_entities.inc), two-code-point ones too */
    CR_CHECK(encode_eq(tok, "&CounterClockwiseContourIntegral;", "\xe2\x88\xb3"));
    CR_CHECK(encode_eq(tok, "a&NotEqualTilde;b", "a\xe2\x89\x82\xcc\xb8" "b"));
    CR_CHECK(encode_eq(tok, "&amp;NotEqualTilde;", "\xe2\x89\x82\xcc\xb8"));
    CR_CHECK(encode_eq(tok, "&fjlig;ord &bne;", "fjord =\xe2\x83\xa5"));
    CR_CHECK(encode_eq(tok, "&rarr;&hearts;&check;&notinva;",
                       "\xe2\x86\x92\xe2\x99\xa5\xe2\x9c\x93\xe2\x88\x89"));
    CR_CHECK(encode_eq(tok, "&check &checkmark", "&check &checkmark")); /* ';' required */
    CR_CHECK(!encode_eq(tok, "&check;", "&check"));
    CR_CHECK(encode_eq(tok, "  Red\t\tDRESS \n", "red dress"));
    CR_CHECK(encode_eq(tok, "Cafe\xcc\x81", "caf\xc3\xa9")); /* e + combining acute → é */
    CR_CHECK(encode_eq(tok, "\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82"));
    CR_CHECK(!encode_eq(tok, "\xce\xa3\xce\x91", "\xcf\x82\xce\xb1")); /* Σ not final */
}

/* Writes "red " n times into text (cap bytes). */
static void repeat_red(char *text, size_t cap, int n)
{
    size_t o = 0;
    for (int i = 0; i < n && o + 5 <= cap; i++, o += 4)
        memcpy(text + o, "red ", 4);
    text[o] = '\0';
}

static void test_truncation(const enc_tokenizer *tok)
{
    char text[1024];
    int32_t out[CTX], red = -1;
    int n_used = -1, trunc = -1;
    size_t n_total = 0;

    CR_CHECK(enc_tokenizer_token_id(tok, "red</w>", &red) == CR_OK);
    /* 75 words fit exactly (sot + 75 + eot = 77) */
    repeat_red(text, sizeof(text), 75);
    CR_CHECK(enc_tokenizer_encode(tok, text, out, &n_used, &trunc) == CR_OK);
    CR_CHECK(n_used == 77 && trunc == 0 && out[75] == red && out[76] == 49407);
    /* 76 and more are cut: the first 75 kept, eot last */
    repeat_red(text, sizeof(text), 200);
    CR_CHECK(enc_tokenizer_encode(tok, text, out, &n_used, &trunc) == CR_OK);
    CR_CHECK(n_used == 77 && trunc == 1 && out[0] == 49406 && out[1] == red &&
             out[75] == red && out[76] == 49407);
    /* the unlimited tokenize() counts them all */
    int32_t ids[8];
    CR_CHECK(enc_tokenizer_tokenize(tok, text, ids, 8, &n_total) == CR_OK && n_total == 200 &&
             ids[7] == red);
    CR_CHECK(enc_tokenizer_tokenize(tok, "", NULL, 0, &n_total) == CR_OK && n_total == 0);

    /* one very long word stays fast and exact at its start */
    size_t big = 1 << 18;
    char *w = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        w[i] = (char)('a' + (i * 7 + i / 13) % 26);
    w[big] = '\0';
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CR_CHECK(enc_tokenizer_encode(tok, w, out, &n_used, &trunc) == CR_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CR_CHECK(n_used == 77 && trunc == 1 && out[76] == 49407);
    printf("256 KiB single word: %.3f s\n",
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    free(w);
}

static void test_invalid(const enc_tokenizer *tok)
{
    const char *bad[] = {"\xff", "abc\xc3", "\xc0\xaf", "\xed\xa0\x80", "ok \xf4\x90\x80\x80",
                         "\x80"};
    int32_t out[CTX];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (int k = 0; k < CTX; k++)
            out[k] = 7;
        int n_used = -1;
        cr_err rc = enc_tokenizer_encode(tok, bad[i], out, &n_used, NULL);
        int zeros = 1;
        for (int k = 0; k < CTX; k++)
            zeros &= out[k] == 0;
        CR_CHECK_MSG(rc == CR_ERR_INVALID && zeros && n_used == 0, "bad utf-8 %zu: rc %d", i,
                     rc);
        CR_CHECK(strstr(cr_error_message(), "UTF-8") != NULL);
    }
    size_t n = 0;
    CR_CHECK(enc_tokenizer_tokenize(tok, "\xfe", NULL, 0, &n) == CR_ERR_INVALID);
    CR_CHECK(enc_tokenizer_encode(tok, NULL, out, NULL, NULL) == CR_ERR_INVALID);
}

/* The 15 fixture captions, repeated. */
static const char *const captions[] = {
    "is red and has short sleeves",
    "has a v-neck, isn't striped; costs $20!!",
    "  multiple   spaces\tand\nnewlines  ",
    "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9""e colour, na\xc3\xafve fa\xc3\xa7""ade",
    "\xe6\x97\xa5\xe6\x9c\xac\xe3\x81\xae" "T\xe3\x82\xb7\xe3\x83\xa3\xe3\x83\x84 with "
    "\xe6\xbc\xa2\xe5\xad\x97 print",
    "&amp; html entities &quot;quoted&quot; &lt;b&gt;",
    "size 42 and 3.5cm heel, 100% cotton",
    "it's they're we've I'm you'll he'd IT'S",
    "ALL CAPS SHOUTING AND MiXeD cAsE",
    "a long-sleeved navy blue cotton shirt with a button-down collar and a chest pocket",
};
#define N_CAPTIONS (sizeof(captions) / sizeof(captions[0]))

struct thread_arg {
    const enc_tokenizer *tok;
    int32_t (*want)[CTX];
    int mismatches;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int r = 0; r < 500; r++) {
        for (size_t i = 0; i < N_CAPTIONS; i++) {
            int32_t out[CTX];
            if (enc_tokenizer_encode(a->tok, captions[i], out, NULL, NULL) != CR_OK ||
                memcmp(out, a->want[i], sizeof(out)) != 0)
                a->mismatches++;
        }
    }
    return NULL;
}

static void test_threads_and_speed(const enc_tokenizer *tok)
{
    int32_t want[N_CAPTIONS][CTX];
    for (size_t i = 0; i < N_CAPTIONS; i++)
        CR_CHECK(enc_tokenizer_encode(tok, captions[i], want[i], NULL, NULL) == CR_OK);

    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){tok, want, 0};
        CR_CHECK(pthread_create(&th[i], NULL, thread_main, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CR_CHECK_MSG(args[i].mismatches == 0, "thread %d: %d mismatches", i,
                     args[i].mismatches);
    }

    /* 10k distinct-ish captions (a number makes each one differ) */
    struct timespec t0, t1;
    char text[256];
    int errors = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 10000; i++) {
        int32_t out[CTX];
        snprintf(text, sizeof(text), "%s #%d", captions[i % N_CAPTIONS], i);
        errors += enc_tokenizer_encode(tok, text, out, NULL, NULL) != CR_OK;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("10k captions: %.3f s (%.1f us each)\n", s, s * 100.0);
    CR_CHECK(errors == 0);
    CR_CHECK_MSG(s < 5.0, "10k captions took %.3f s", s); /* target < 1 s; loose on busy CI */
}

static void test_open_paths(const char *shared)
{
    char path[4096], def[4096];
    enc_tokenizer *tok = NULL;

    CR_CHECK(enc_tokenizer_open(&tok, "/nonexistent/vocab.txt.gz") == CR_ERR_IO && !tok);
    CR_CHECK(enc_tokenizer_open(&tok, "/nonexistent/vocab.json") == CR_ERR_IO && !tok);
    CR_CHECK(enc_tokenizer_open(NULL, "x") == CR_ERR_INVALID);
    enc_tokenizer_close(&tok); /* NULL-safe */
    enc_tokenizer_close(NULL);

    /* a directory: the .gz is preferred */
    snprintf(path, sizeof(path), "%s/data/clip", shared);
    CR_CHECK(enc_tokenizer_open(&tok, path) == CR_OK && tok);
    if (tok)
        CR_CHECK(encode_eq(tok, "hello", "HELLO"));
    enc_tokenizer_close(&tok);
    CR_CHECK(tok == NULL);

    /* merges.txt given: vocab.json beside it */
    snprintf(path, sizeof(path), "%s/data/clip/merges.txt", shared);
    CR_CHECK(enc_tokenizer_open(&tok, path) == CR_OK && tok);
    enc_tokenizer_close(&tok);

    /* the default path: $CIRRUS_VOCAB first */
    snprintf(path, sizeof(path), "%s/data/clip/vocab.json", shared);
    setenv("CIRRUS_VOCAB", path, 1);
    CR_CHECK(enc_tokenizer_default_path(def, sizeof(def)) == CR_OK && strcmp(def, path) == 0);
    CR_CHECK(enc_tokenizer_default_path(def, 4) == CR_ERR_INVALID);
    CR_CHECK(enc_tokenizer_open(&tok, NULL) == CR_OK && tok);
    enc_tokenizer_close(&tok);
    unsetenv("CIRRUS_VOCAB");
    /* then the project's own copy (from $CIRRUS_SOURCE_DIR or the source tree) */
    cr_err rc = enc_tokenizer_default_path(def, sizeof(def));
    CR_CHECK_MSG(rc == CR_OK, "default vocabulary: %s", cr_error_message());
    if (rc == CR_OK) {
        printf("default vocabulary: %s\n", def);
        CR_CHECK(enc_tokenizer_open(&tok, NULL) == CR_OK && tok);
        if (tok)
            CR_CHECK(enc_tokenizer_sot(tok) == 49406);
        enc_tokenizer_close(&tok);
    }
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return 0;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* A tiny Hugging Face vocabulary whose merges are not in rank order ("bc b" ranks before the
 * "b c" that makes "bc"): the tokenizer must then follow CLIP's loop literally, merging every
 * "b c" before any "bc b". Also malformed merges files. */
static void test_small_vocab(void)
{
    char dir[] = "/tmp/cirrus-tok-XXXXXX", vpath[256], mpath[256];
    enc_tokenizer *tok = NULL;
    json_t *v = json_object();
    int k = 0;

    CR_CHECK(mkdtemp(dir) != NULL);
    snprintf(vpath, sizeof(vpath), "%s/vocab.json", dir);
    snprintf(mpath, sizeof(mpath), "%s/merges.txt", dir);
    for (int pass = 0; pass < 2; pass++) {
        k = 0;
        for (int b = 0; b < 256; b++) { /* GPT-2 byte symbols; ids need not be CLIP's here */
            int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            int cp = printable ? b : 0x100 + k % 256;
            char key[16];
            if (!printable)
                k++;
            if (cp < 0x80)
                snprintf(key, sizeof(key), "%c%s", cp, pass ? "</w>" : "");
            else
                snprintf(key, sizeof(key), "%c%c%s", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F),
                         pass ? "</w>" : "");
            json_object_set_new(v, key, json_integer(pass * 256 + b));
        }
    }
    json_object_set_new(v, "bc", json_integer(512));
    json_object_set_new(v, "bcb", json_integer(513));
    json_object_set_new(v, "<|startoftext|>", json_integer(514));
    json_object_set_new(v, "<|endoftext|>", json_integer(515));
    CR_CHECK(json_dump_file(v, vpath, 0) == 0);
    json_decref(v);

    CR_CHECK(write_text(mpath, "#version: 0.2\nbc b\nb c\n"));
    cr_err rc = enc_tokenizer_open(&tok, vpath);
    CR_CHECK_MSG(rc == CR_OK, "small vocab: %s", cr_error_message());
    if (tok) {
        int32_t out[CTX];
        int n_used = 0;
        /* "bcbcx": every "b c" first → bc bc x</w>; no "bc bc" merge */
        CR_CHECK(enc_tokenizer_encode(tok, "bcbcx", out, &n_used, NULL) == CR_OK);
        CR_CHECK_MSG(n_used == 5 && out[0] == 514 && out[1] == 512 && out[2] == 512 &&
                     out[3] == 256 + 'x' && out[4] == 515, "got %d: %d %d %d %d", n_used,
                     out[1], out[2], out[3], out[4]);
        /* "bcbx": b c b x</w> → bc b x</w> → bcb x</w> */
        CR_CHECK(enc_tokenizer_encode(tok, "bcbx", out, &n_used, NULL) == CR_OK);
        CR_CHECK(n_used == 4 && out[1] == 513 && out[2] == 256 + 'x');
        enc_tokenizer_close(&tok);
    }

    CR_CHECK(write_text(mpath, "#version: 0.2\nb c\nbc zz\n"));
    CR_CHECK(enc_tokenizer_open(&tok, vpath) == CR_ERR_MODEL && !tok);
    CR_CHECK(write_text(mpath, "#version: 0.2\nb c d\n"));
    CR_CHECK(enc_tokenizer_open(&tok, vpath) == CR_ERR_MODEL && !tok);
    CR_CHECK(write_text(vpath, "{\"a\": \"x\"}"));
    CR_CHECK(enc_tokenizer_open(&tok, vpath) == CR_ERR_MODEL && !tok);
    CR_CHECK(write_text(vpath, "[1, 2"));
    CR_CHECK(enc_tokenizer_open(&tok, vpath) == CR_ERR_MODEL && !tok);
    remove(vpath);
    remove(mpath);
    rmdir(dir);
}

int main(void)
{
    CR_TEST_BEGIN();
    const char *shared = cr_test_shared_dir();
    char path[4096];
    enc_tokenizer *gz = NULL, *hf = NULL;

    snprintf(path, sizeof(path), "%s/data/clip/bpe_simple_vocab_16e6.txt.gz", shared);
    cr_err rc = enc_tokenizer_open(&gz, path);
    CR_CHECK_MSG(rc == CR_OK, "open %s: %s", path, cr_error_message());
    snprintf(path, sizeof(path), "%s/data/clip/vocab.json", shared);
    rc = enc_tokenizer_open(&hf, path);
    CR_CHECK_MSG(rc == CR_OK, "open %s: %s", path, cr_error_message());

    if (gz) {
        test_fixture(gz, shared, "gz");
        test_basics(gz);
        test_truncation(gz);
        test_invalid(gz);
        test_threads_and_speed(gz);
    }
    if (hf) {
        test_fixture(hf, shared, "hf");
        test_basics(hf);
    }
    enc_tokenizer_close(&gz);
    enc_tokenizer_close(&hf);
    test_open_paths(shared);
    test_small_vocab();
    return CR_TEST_END();
}
