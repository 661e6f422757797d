/* cirrus-encoder — serves CLIP embeddings and composed queries (EncodeImage, EncodeText,
 * Compose, Health, Stats) with dynamic batching. */
#include <stdio.h>
#include <string.h>

#include "common/curve_zap.h"
#include "common/daemon.h"
#include "common/log.h"
#include "encoder/server.h"

static cr_err parse_activation(const char *s, enc_clip_act *out)
{
    if (strcmp(s, "auto") == 0)
        *out = ENC_CLIP_ACT_AUTO;
    else if (strcmp(s, "quick_gelu") == 0)
        *out = ENC_CLIP_ACT_QUICK_GELU;
    else if (strcmp(s, "gelu") == 0)
        *out = ENC_CLIP_ACT_GELU;
    else
        return cr_error_set(CR_ERR_INVALID, "--activation must be auto, quick_gelu or gelu");
    return CR_OK;
}

int main(int argc, char **argv)
{
    char *model, *bind, *vocab, *phi, *combiner, *preprocess, *method, *activation, *log_level;
    char *precision;
    char *allow, *curve_secret, *curve_allow;
    long long batch, batch_wait, threads, workers, queue, max_pixels, deadline, image_work;
    long long request_work, drain;
    cr_opt opts[] = {
        {"model", CR_OPT_STRING, &model, NULL, 0, 0, 1,
         "CLIP weights: .safetensors (OpenAI or Hugging Face names) or a HF directory"},
        {"bind", CR_OPT_STRING, &bind, "tcp://127.0.0.1:7702", 0, 0, 0, "endpoint to serve on"},
        {"batch", CR_OPT_INT, &batch, "8", 1, 1024, 0,
         "images / texts / queries per forward pass"},
        {"batch-wait-ms", CR_OPT_INT, &batch_wait, "2", 0, 10000, 0,
         "longest wait for a batch to fill"},
        {"threads", CR_OPT_INT, &threads, "0", 0, 256, 0,
         "OpenBLAS threads of the inference thread (0 = online CPUs)"},
        {"workers", CR_OPT_INT, &workers, "2", 1, 64, 0, "decode / tokenize threads"},
        {"precision", CR_OPT_STRING, &precision, "fp32", 0, 0, 0,
         "fp32 | bf16 (the blocks' GEMMs in bf16, fp32 accumulation; needs AVX512_BF16)"},
        {"queue", CR_OPT_INT, &queue, "64", 1, 1000000, 0,
         "queued requests before 'overloaded'"},
        {"preprocess", CR_OPT_STRING, &preprocess, "clip", 0, 0, 0,
         "clip | targetpad | squarepad (use the same for indexing and querying)"},
        {"allow-preprocess", CR_OPT_STRING, &allow, "", 0, 0, 0,
         "pipelines a request may ask for besides --preprocess, e.g. clip,targetpad,squarepad "
         "(empty: only --preprocess; another one is refused)"},
        {"phi", CR_OPT_STRING, &phi, NULL, 0, 0, 0, "SEARLE phi head (.safetensors)"},
        {"combiner", CR_OPT_STRING, &combiner, NULL, 0, 0, 0,
         "CLIP4Cir combiner head (.safetensors)"},
        {"method", CR_OPT_STRING, &method, NULL, 0, 0, 0,
         "default compose method: searle|combiner|sum|text|image (default: the best loaded)"},
        {"vocab", CR_OPT_STRING, &vocab, NULL, 0, 0, 0,
         "tokenizer vocabulary (bpe_simple_vocab_16e6.txt.gz or vocab.json)"},
        {"activation", CR_OPT_STRING, &activation, "auto", 0, 0, 0,
         "auto | quick_gelu (OpenAI) | gelu (most LAION OpenCLIP models)"},
        {"max-pixels", CR_OPT_INT, &max_pixels, "0", 0, 1000000000, 0,
         "largest image accepted, in decoded pixels (0 = 89478485, Pillow's limit); an "
         "image's resize scratch may take 4 bytes per such pixel"},
        {"max-image-work", CR_OPT_INT, &image_work, "1073741824", 1, 1LL << 50, 0,
         "preprocessing work one image may cost, in pixel samples: decoded pixels plus every "
         "sample its resize reads (padding is not materialized); checked from the header "
         "before decoding"},
        {"max-request-work", CR_OPT_INT, &request_work, "2147483648", 1, 1LL << 50, 0,
         "the same summed over the images of one request (up to 256); a request over it is "
         "refused before any image is decoded"},
        {"deadline-ms", CR_OPT_INT, &deadline, "30000", 1, 3600000, 0,
         "deadline of requests that carry none; checked before each image and forward pass"},
        {"drain-ms", CR_OPT_INT, &drain, "30000", 1, 3600000, 0,
         "at stop, longest wait for requests in flight (then they are dropped)"},
        {"log-level", CR_OPT_STRING, &log_level, "info", 0, 0, 0, "debug|info|warn|error"},
        CR_CURVE_SERVER_OPTS(curve_secret, curve_allow),
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    enc_service_opts eo = enc_service_default_opts();
    enc_server_opts so = enc_server_default_opts();
    enc_service *svc = NULL;
    enc_server *srv = NULL;
    cr_curve curve;
    int curve_on = 0;
    int ret = cr_daemon_begin("cirrus-encoder", "CIRRUS_ENCODER", opts, nopts, argc, argv);
    cr_err rc;

    if (ret >= 0)
        return ret;
    if (cr_curve_flags(&curve, curve_secret, curve_allow, 1, &curve_on))
        return cr_daemon_end("encoder", cr_daemon_fail("%s", cr_error_message()));
    so.curve = curve_on ? &curve : NULL;
    eo.model = model;
    eo.vocab = vocab;
    eo.phi = phi;
    eo.combiner = combiner;
    eo.threads = (int)threads;
    eo.max_batch = (int)batch;
    eo.batch_wait_ms = (int)batch_wait;
    eo.queue = (int)queue;
    eo.max_pixels = (size_t)max_pixels;
    eo.max_image_work = (uint64_t)image_work;
    eo.max_request_work = (uint64_t)request_work;
    if (enc_clip_parse_precision(precision, &eo.precision))
        return cr_daemon_end("encoder", cr_daemon_fail("--precision: %s", cr_error_message()));
    if (enc_preprocess_parse(preprocess, &eo.preprocess) ||
        enc_preprocess_parse_list(allow, &eo.allow_preprocess) ||
        parse_activation(activation, &eo.activation)) {
        cr_daemon_fail("%s", cr_error_message());
        return cr_daemon_end("encoder", 2);
    }
    if (method) {
        enc_compose_method m;
        if (enc_compose_method_parse(method, &m)) {
            cr_daemon_fail("--method: %s", cr_error_message());
            return cr_daemon_end("encoder", 2);
        }
        eo.method = (int)m;
    }
    rc = enc_service_open(&svc, &eo);
    if (rc)
        return cr_daemon_end("encoder", cr_daemon_fail("%s", cr_error_message()));
    so.bind = bind;
    so.workers = (int)workers;
    so.default_deadline_ms = (uint32_t)deadline;
    so.drain_ms = (uint32_t)drain;
    rc = enc_server_open(&srv, svc, &so);
    if (rc) {
        ret = cr_daemon_fail("%s", cr_error_message());
    } else {
        cr_daemon_wait();
        rc = enc_server_close(&srv);
        ret = rc ? cr_daemon_fail("%s", cr_error_message()) : 0;
    }
    if (rc != CR_TIMEOUT) /* else a worker still uses the service */
        enc_service_close(&svc);
    return cr_daemon_end("encoder", ret);
}
