/* cirrus embed | tokenize — local tools: run the CLIP model or the tokenizer in-process. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "cli/cli.h"
#include "common/config.h"
#include "encoder/image.h"
#include "encoder/server.h"
#include "encoder/tokenizer.h"

static int usage_embed(FILE *out)
{
    fprintf(out,
            "Usage: cirrus embed --model PATH [--vocab PATH] [--preprocess clip|targetpad|"
            "squarepad]\n"
            "                    [--threads T] [--precision fp32|bf16] [--normalize] [--image FILE]... [--text TEXT]...\n"
            "Runs the model in-process and prints one JSON object per input, in argument order:\n"
            "  {\"kind\":\"image\"|\"text\",\"input\":...,\"embedding\":[...]}\n"
            "Embeddings are raw (as CLIP's encode_image / encode_text) unless --normalize.\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

typedef struct embed_input {
    int is_image;
    const char *arg;
} embed_input;

static json_t *embedding_json(const float *v, int d)
{
    json_t *a = json_array();
    for (int i = 0; i < d; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

int cli_cmd_embed(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"vocab", required_argument, 0, 'v'},
        {"preprocess", required_argument, 0, 'p'}, {"image", required_argument, 0, 'i'},
        {"text", required_argument, 0, 't'},    {"normalize", no_argument, 0, 'n'},
        {"threads", required_argument, 0, 'T'}, {"help", no_argument, 0, 'h'},
        {"precision", required_argument, 0, 'R'},
        {0, 0, 0, 0}};
    enc_service_opts eo = enc_service_default_opts();
    enc_service *svc = NULL;
    embed_input *in = calloc((size_t)argc, sizeof *in);
    enc_blob *blobs = NULL;
    const char **texts = NULL;
    float *img_out = NULL, *txt_out = NULL;
    size_t n = 0, ni = 0, nt = 0, ki = 0, kt = 0;
    int normalize = 0, rc = CLI_USAGE, c, d;
    long long v;

    if (!in) {
        cli_error("embed", "out of memory");
        return CLI_FAIL;
    }
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'm': eo.model = optarg; break;
        case 'v': eo.vocab = optarg; break;
        case 'p':
            if (enc_preprocess_parse(optarg, &eo.preprocess)) {
                cli_error("embed", "--preprocess: %s", cr_error_message());
                goto out;
            }
            break;
        case 'i': in[n].is_image = 1; in[n++].arg = optarg; ni++; break;
        case 't': in[n].is_image = 0; in[n++].arg = optarg; nt++; break;
        case 'n': normalize = 1; break;
        case 'T':
            if (cr_parse_ll(optarg, 0, 256, &v)) {
                cli_error("embed", "--threads: %s", cr_error_message());
                goto out;
            }
            eo.threads = (int)v;
            break;
        case 'R':
            if (enc_clip_parse_precision(optarg, &eo.precision)) {
                cli_error("embed", "--precision: %s", cr_error_message());
                goto out;
            }
            break;
        case 'h': rc = usage_embed(stdout); goto out;
        default: rc = usage_embed(stderr); goto out;
        }
    }
    if (optind < argc) {
        cli_error("embed", "unexpected argument '%s' (texts go after --text)", argv[optind]);
        goto out;
    }
    if (!eo.model || n == 0) {
        cli_error("embed", "--model and at least one --image or --text are required");
        rc = usage_embed(stderr);
        goto out;
    }
    rc = CLI_FAIL;
    blobs = calloc(ni ? ni : 1, sizeof *blobs);
    texts = calloc(nt ? nt : 1, sizeof *texts);
    if (!blobs || !texts) {
        cli_error("embed", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!in[i].is_image) {
            texts[kt++] = in[i].arg;
            continue;
        }
        if (cr_file_read(in[i].arg, (uint8_t **)&blobs[ki].data, &blobs[ki].len)) {
            cli_error("embed", "--image: %s", cr_error_message());
            goto out;
        }
        ki++;
    }
    /* One request per kind: each is a single forward pass of its whole batch. */
    eo.batch_wait_ms = 0;
    eo.max_batch = 1024;
    if (enc_service_open(&svc, &eo)) {
        cli_error("embed", "%s", cr_error_message());
        goto out;
    }
    d = enc_service_embed_dim(svc);
    img_out = malloc((ni ? ni : 1) * (size_t)d * sizeof *img_out);
    txt_out = malloc((nt ? nt : 1) * (size_t)d * sizeof *txt_out);
    if (!img_out || !txt_out) {
        cli_error("embed", "out of memory");
        goto out;
    }
    if (ni && enc_service_embed_images(svc, blobs, ni, ENC_SERVICE_PREPROCESS_DEFAULT,
                                       normalize, img_out)) {
        cli_error("embed", "%s", cr_error_message());
        goto out;
    }
    if (nt && enc_service_embed_texts(svc, texts, nt, normalize, txt_out, NULL)) {
        cli_error("embed", "%s", cr_error_message());
        goto out;
    }
    ki = kt = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        const float *e = in[i].is_image ? img_out + (ki++) * (size_t)d
                                        : txt_out + (kt++) * (size_t)d;
        json_object_set_new(o, "kind", json_string(in[i].is_image ? "image" : "text"));
        json_object_set_new(o, "input", json_string(in[i].arg));
        json_object_set_new(o, "embedding", embedding_json(e, d));
        cli_print_json(o);
    }
    rc = CLI_OK;
out:
    enc_service_close(&svc);
    for (size_t i = 0; blobs && i < ki; i++)
        free((void *)blobs[i].data);
    free(blobs);
    free(texts);
    free(img_out);
    free(txt_out);
    free(in);
    return rc;
}

int cli_cmd_tokenize(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"vocab", required_argument, 0, 'v'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *vocab = NULL;
    enc_tokenizer *tok = NULL;
    int c, rc = CLI_OK;

    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        if (c == 'v') {
            vocab = optarg;
            continue;
        }
        printf("Usage: cirrus tokenize [--vocab PATH] TEXT...\n"
               "Prints, per TEXT, one JSON array of %d token ids (start and end of text, zero\n"
               "padded; long texts truncated) as clip.tokenize(text, truncate=True).\n",
               ENC_TOKENIZER_CONTEXT);
        return c == 'h' ? CLI_OK : CLI_USAGE;
    }
    if (optind >= argc) {
        cli_error("tokenize", "give at least one TEXT");
        return CLI_USAGE;
    }
    if (enc_tokenizer_open(&tok, vocab)) {
        cli_error("tokenize", "%s", cr_error_message());
        return CLI_FAIL;
    }
    for (int i = optind; i < argc; i++) {
        int32_t ids[ENC_TOKENIZER_CONTEXT];
        json_t *a;
        if (enc_tokenizer_encode(tok, argv[i], ids, NULL, NULL)) {
            cli_error("tokenize", "argument %d: %s", i - optind + 1, cr_error_message());
            rc = CLI_FAIL;
            break;
        }
        a = json_array();
        for (int k = 0; k < ENC_TOKENIZER_CONTEXT; k++)
            json_array_append_new(a, json_integer(ids[k]));
        cli_print_json(a);
    }
    enc_tokenizer_close(&tok);
    return rc;
}
