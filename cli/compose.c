/* cirrus compose — runs a composition head locally (no endpoint): a reference image (or its
 * raw embedding) and a caption become one normalized query vector, printed as JSON. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "encoder/clip_model.h"
#include "encoder/compose.h"
#include "encoder/image.h"
#include "encoder/tokenizer.h"

static int usage_compose(FILE *out)
{
    fprintf(out,
            "Usage: cirrus compose --model PATH --method searle|combiner|sum|text|image\n"
            "                      (--image FILE | --ref-vector F1,F2,...) --caption TEXT\n"
            "                      [--caption2 TEXT] [--template T] [--phi FILE]\n"
            "                      [--combiner FILE] [--vocab PATH]\n"
            "                      [--preprocess clip|targetpad|squarepad]\n"
            "  --model PATH       CLIP weights (.safetensors or a Hugging Face directory)\n"
            "  --method M         composition method (default searle)\n"
            "  --image FILE       reference image, encoded with the model\n"
            "  --ref-vector V     reference as a raw (unnormalized) image embedding\n"
            "  --caption TEXT     modification text (\"\" allowed)\n"
            "  --caption2 TEXT    second caption (FashionIQ: both orders averaged)\n"
            "  --template T       SEARLE prompt, one '$' and one '{}' (default \"%s\")\n"
            "  --phi FILE         SEARLE phi head (.safetensors)\n"
            "  --combiner FILE    CLIP4Cir Combiner head (.safetensors)\n"
            "  --vocab PATH       tokenizer vocabulary (default: the bundled one)\n"
            "  --preprocess P     image pipeline (default clip)\n"
            "Prints {\"method\":...,\"embedding\":[...],\"truncated\":bool}; the embedding is "
            "L2-normalized.\n",
            ENC_COMPOSE_DEFAULT_TEMPLATE);
    return out == stdout ? CLI_OK : CLI_USAGE;
}

typedef struct compose_args {
    const char *model, *phi, *combiner, *vocab, *image, *caption, *caption2, *tmpl;
    enc_compose_method method;
    enc_preprocess pre;
    float *ref;
    size_t ref_n;
} compose_args;

/* Returns -1 to go on, else the exit code. */
static int compose_parse(cli_ctx *ctx, compose_args *a, int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'M'},    {"method", required_argument, 0, 'm'},
        {"phi", required_argument, 0, 'p'},      {"combiner", required_argument, 0, 'C'},
        {"vocab", required_argument, 0, 'V'},    {"preprocess", required_argument, 0, 'P'},
        {"image", required_argument, 0, 'i'},    {"ref-vector", required_argument, 0, 'r'},
        {"caption", required_argument, 0, 'c'},  {"caption2", required_argument, 0, '2'},
        {"template", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'M': a->model = optarg; break;
        case 'p': a->phi = optarg; break;
        case 'C': a->combiner = optarg; break;
        case 'V': a->vocab = optarg; break;
        case 'i': a->image = optarg; break;
        case 'c': a->caption = optarg; break;
        case '2': a->caption2 = optarg; break;
        case 't': a->tmpl = optarg; break;
        case 'm':
            if (enc_compose_method_parse(optarg, &a->method)) {
                cli_error("compose", "--method: %s", cr_error_message());
                return CLI_USAGE;
            }
            break;
        case 'P':
            if (enc_preprocess_parse(optarg, &a->pre)) {
                cli_error("compose", "--preprocess: %s", cr_error_message());
                return CLI_USAGE;
            }
            break;
        case 'r':
            free(a->ref);
            a->ref = NULL;
            if (cli_parse_vector(optarg, &a->ref, &a->ref_n)) {
                cli_error("compose", "--ref-vector: %s", cr_error_message());
                return CLI_USAGE;
            }
            break;
        case 'h': return usage_compose(stdout);
        default: return usage_compose(stderr);
        }
    }
    if (optind < argc) {
        cli_error("compose", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (!a->model) {
        cli_error("compose", "--model is required");
        return CLI_USAGE;
    }
    if (!a->image == !a->ref) {
        cli_error("compose", "give exactly one of --image and --ref-vector");
        return CLI_USAGE;
    }
    if (!a->caption && a->method != ENC_COMPOSE_IMAGE) {
        cli_error("compose", "--caption is required (\"\" is allowed)");
        return CLI_USAGE;
    }
    if (a->method == ENC_COMPOSE_SEARLE && !a->phi) {
        cli_error("compose", "--method searle needs --phi FILE");
        return CLI_USAGE;
    }
    if (a->method == ENC_COMPOSE_COMBINER && !a->combiner) {
        cli_error("compose", "--method combiner needs --combiner FILE");
        return CLI_USAGE;
    }
    return -1;
}

/* Encodes the reference image with the model into a fresh embed_dim array. */
static cr_err encode_image(const enc_clip *model, const char *path, enc_preprocess pre,
                           float **out)
{
    enc_image *img = NULL;
    float *px = NULL, *emb = NULL;
    int s = enc_clip_image_size(model);
    cr_err rc = enc_image_load_file(path, 0, &img);
    if (rc)
        goto out;
    px = malloc((size_t)3 * s * s * sizeof *px);
    emb = malloc((size_t)enc_clip_embed_dim(model) * sizeof *emb);
    if (!px || !emb) {
        rc = cr_error_set(CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    rc = enc_image_preprocess(img, pre, s, px);
    if (!rc)
        rc = enc_clip_encode_images(model, px, 1, emb);
    if (!rc) {
        *out = emb;
        emb = NULL;
    }
out:
    free(px);
    free(emb);
    enc_image_free(&img);
    return rc;
}

int cli_cmd_compose(cli_ctx *ctx, int argc, char **argv)
{
    compose_args a;
    enc_clip *model = NULL;
    enc_tokenizer *tok = NULL;
    enc_composer *cmp = NULL;
    float *ref = NULL, *emb = NULL;
    int rc, truncated = 0, d;
    json_t *o, *arr;

    memset(&a, 0, sizeof a);
    a.method = ENC_COMPOSE_SEARLE;
    a.pre = ENC_PREPROCESS_CLIP;
    rc = compose_parse(ctx, &a, argc, argv);
    if (rc >= 0)
        goto out;
    rc = CLI_FAIL;
    if (enc_clip_open(&model, a.model, NULL)) {
        cli_error("compose", "--model: %s", cr_error_message());
        goto out;
    }
    if (enc_tokenizer_open(&tok, a.vocab)) {
        cli_error("compose", "vocabulary: %s", cr_error_message());
        goto out;
    }
    /* Only the head the method needs is loaded. */
    if (enc_composer_open(&cmp, model, tok, a.method == ENC_COMPOSE_SEARLE ? a.phi : NULL,
                          a.method == ENC_COMPOSE_COMBINER ? a.combiner : NULL)) {
        cli_error("compose", "%s", cr_error_message());
        goto out;
    }
    d = enc_clip_embed_dim(model);
    if (a.ref) {
        if (a.ref_n != (size_t)d) {
            cli_error("compose", "--ref-vector has %zu values, the model's embed_dim is %d",
                      a.ref_n, d);
            rc = CLI_USAGE;
            goto out;
        }
    } else if (encode_image(model, a.image, a.pre, &ref)) {
        cli_error("compose", "--image %s: %s", a.image, cr_error_message());
        goto out;
    }
    emb = malloc((size_t)d * sizeof *emb);
    if (!emb) {
        cli_error("compose", "out of memory");
        goto out;
    }
    enc_compose_input in = {.ref = a.ref ? a.ref : ref,
                            .caption = a.caption ? a.caption : "",
                            .caption2 = a.caption2,
                            .method = a.method,
                            .prompt_template = a.tmpl};
    if (enc_composer_run(cmp, &in, 1, emb, &truncated)) {
        cli_error("compose", "%s", cr_error_message());
        goto out;
    }
    o = json_object();
    arr = json_array();
    for (int j = 0; j < d; j++)
        json_array_append_new(arr, json_real(emb[j]));
    json_object_set_new(o, "method", json_string(enc_compose_method_name(a.method)));
    json_object_set_new(o, "embedding", arr);
    json_object_set_new(o, "truncated", json_boolean(truncated));
    cli_print_json(o);
    rc = CLI_OK;
out:
    free(emb);
    free(ref);
    free(a.ref);
    enc_composer_close(&cmp);
    enc_tokenizer_close(&tok);
    enc_clip_close(&model);
    return rc;
}
