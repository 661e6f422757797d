/* cirrus generate | job | cancel | jobs — generation jobs (try-on, editing, text to image)
 * through libcirrus: submit, wait with a progress bar, fetch the result PNG, cancel, list. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "client/jobs.h"
#include "common/config.h"
#include "common/fileio.h"
#include "gateway/jobs_json.h"

#define WAIT_DEFAULT_S 600 /* --wait gives up after this long unless --wait-timeout says */
#define WAIT_MAX_S 86400

static volatile sig_atomic_t wait_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    wait_interrupted = 1;
}

/* A libcirrus handle on the command's endpoint, with the --timeout per call. */
static int open_handle(cli_ctx *ctx, const char *cmd, cirrus **out)
{
    cirrus_options o = cirrus_default_options();
    o.timeout_ms = ctx->timeout_ms;
    /* --curve-secret/--curve-server-pub as for every other command (NULL: the environment's) */
    o.curve_secret_file = ctx->curve_secret;
    o.curve_server_pub = ctx->curve_server_pub;
    if (cirrus_open(out, ctx->endpoint, &o) != CIRRUS_OK) {
        cli_error(cmd, "%s (endpoint %s)", cirrus_errmsg(NULL), ctx->endpoint);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* ---- printing ------------------------------------------------------------------------- */

static void print_job_json(const cirrus_job *j)
{
    cli_print_json(cirrus_job_info_json(cirrus_job_info(j)));
}

/* "3.2 s" between two wall-clock times, or "-". */
static void fmt_span(char *buf, size_t n, uint64_t from, uint64_t to)
{
    if (!from || !to || to < from)
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.1f s", (double)(to - from) / 1000.0);
}

static void print_job_text(const cirrus_job *j)
{
    const Cirrus__V1__JobInfo *in = cirrus_job_info(j);
    char queued[32], ran[32];
    fmt_span(queued, sizeof queued, cirrus_job_created_ms(j), cirrus_job_started_ms(j));
    fmt_span(ran, sizeof ran, cirrus_job_started_ms(j), cirrus_job_ended_ms(j));
    printf("job       %s\n", cirrus_job_id(j));
    printf("kind      %s\n", cirrus_job_kind_name(cirrus_job_get_kind(j)));
    printf("state     %s\n", cirrus_job_state_name(cirrus_job_get_state(j)));
    printf("progress  %.0f%% (step %u)\n", 100.0 * cirrus_job_progress(j), cirrus_job_step(j));
    printf("attempts  %u\n", cirrus_job_attempts(j));
    printf("worker    %s\n", cirrus_job_worker(j)[0] ? cirrus_job_worker(j) : "-");
    printf("queued    %s\n", queued);
    printf("ran       %s\n", ran);
    printf("image     %s\n", cirrus_job_has_image(j) ? "yes" : "no");
    for (size_t i = 0; in && i < in->n_attempt_log; i++) {
        const Cirrus__V1__JobAttempt *a = in->attempt_log[i];
        if (a && a->reason && a->reason[0])
            printf("attempt   %zu on %s: %s\n", i + 1, a->worker, a->reason);
    }
    if (cirrus_job_error(j)[0])
        printf("error     %s\n", cirrus_job_error(j));
}

static void print_job(cli_ctx *ctx, const cirrus_job *j)
{
    if (ctx->json)
        print_job_json(j);
    else
        print_job_text(j);
}

/* Writes the job's image to path (through a temporary file, so that a failed write leaves no
 * half PNG under the name). */
static int write_image(const char *cmd, const cirrus_job *j, const char *path)
{
    size_t len;
    const void *img = cirrus_job_image(j, &len);
    char tmp[4096];
    FILE *f;
    int ok;
    if (!img) {
        cli_error(cmd, "job %s has no result image (%s%s%s)", cirrus_job_id(j),
                  cirrus_job_state_name(cirrus_job_get_state(j)),
                  cirrus_job_error(j)[0] ? ": " : "", cirrus_job_error(j));
        return CLI_FAIL;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        cli_error(cmd, "-o: path too long");
        return CLI_USAGE;
    }
    f = fopen(tmp, "wb");
    ok = f && fwrite(img, 1, len, f) == len;
    ok = f && fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        cli_error(cmd, "-o %s: cannot write the image", path);
        remove(tmp);
        return CLI_FAIL;
    }
    fprintf(stderr, "wrote %s (%zu bytes)\n", path, len);
    return CLI_OK;
}

/* ---- waiting -------------------------------------------------------------------------- */

/* The progress bar while waiting: percent of the job's fraction, the state and step in the
 * label (redrawn in place on a terminal, a line per 10% otherwise). */
typedef struct wait_view {
    cr_progress bar;
    char label[192];
    int started, quiet;
} wait_view;

static int on_progress(void *vw, const cirrus_job *j)
{
    wait_view *w = vw;
    uint64_t pct = (uint64_t)(cirrus_job_progress(j) * 100.0f + 0.5f);
    snprintf(w->label, sizeof w->label, "%s %s step %u%s", cirrus_job_id(j),
             cirrus_job_state_name(cirrus_job_get_state(j)), cirrus_job_step(j),
             cirrus_job_attempts(j) > 1 ? " (retried)" : "");
    if (!w->started) {
        cr_progress_begin(&w->bar, w->label, 100, w->quiet);
        w->started = 1;
    }
    if (pct > 100)
        pct = 100;
    cr_progress_add(&w->bar, pct > w->bar.done ? pct - w->bar.done : 0);
    return wait_interrupted;
}

/* Waits for job `id`, drawing its progress, then prints it and writes its image to out_path
 * (may be NULL). The exit code: CLI_OK only when the job succeeded (and the image was
 * written). */
static int wait_job(cli_ctx *ctx, const char *cmd, cirrus *c, const char *id, long long wait_s,
                    const char *out_path)
{
    struct sigaction sa, old;
    wait_view w;
    cirrus_job *j = NULL;
    cirrus_err rc;
    int ret = CLI_FAIL;

    memset(&w, 0, sizeof w);
    w.quiet = ctx->json;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    rc = cirrus_job_wait(c, id, (uint32_t)(wait_s * 1000), out_path != NULL, on_progress, &w,
                         &j);
    sigaction(SIGINT, &old, NULL);
    if (w.started)
        cr_progress_end(&w.bar);
    if (rc == CIRRUS_TIMEOUT && j) {
        cli_error(cmd, "job %s is still %s (%s); it goes on: 'cirrus job %s --wait' follows it",
                  id, cirrus_job_state_name(cirrus_job_get_state(j)),
                  wait_interrupted ? "interrupted" : "wait timeout", id);
        goto out;
    }
    if (rc) {
        cli_error(cmd, "job %s: %s", id, cirrus_errmsg(c));
        goto out;
    }
    print_job(ctx, j);
    if (cirrus_job_get_state(j) != CIRRUS_JOB_SUCCEEDED) {
        cli_error(cmd, "job %s %s%s%s", id, cirrus_job_state_name(cirrus_job_get_state(j)),
                  cirrus_job_error(j)[0] ? ": " : "", cirrus_job_error(j));
        goto out;
    }
    ret = out_path ? write_image(cmd, j, out_path) : CLI_OK;
out:
    cirrus_job_free(&j);
    return ret;
}

static int parse_wait_s(const char *cmd, const char *arg, long long *out)
{
    if (cr_parse_ll(arg, 1, WAIT_MAX_S, out)) {
        cli_error(cmd, "--wait-timeout: %s", cr_error_message());
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* ---- cirrus generate ------------------------------------------------------------------ */

static int usage_generate(FILE *out)
{
    fprintf(out,
            "Usage: cirrus generate [--kind tryon|edit|text2image] --person FILE\n"
            "                       (--garment FILE | --garment-id ID) --category C\n"
            "                       [--mask FILE] [--sketch FILE] [--text T] [--steps N]\n"
            "                       [--guidance G] [--seed S] [--width W] [--height H]\n"
            "                       [--key K] [--deadline-ms MS] [--wait] [--wait-timeout S]\n"
            "                       [-o OUT.png]\n"
            "Submits a generation job to the server's job broker and prints its id (with --json:\n"
            "the job). With --wait, shows its progress until it ends, prints it and, with -o,\n"
            "writes the result PNG; the exit status is 0 only when the job succeeded.\n"
            "  --kind K          tryon (default: the garment on the person), edit (the person's\n"
            "                    garment changed as --text / --sketch say), text2image\n"
            "  --person FILE     the person image (PNG, JPEG or WebP): tryon and edit\n"
            "  --garment FILE    the garment image, or\n"
            "  --garment-id ID   a catalog item: its stored image or image_uri\n"
            "  --category C      upper_body, lower_body or dresses (tryon and edit)\n"
            "  --mask FILE       where to paint in the person image (white)\n"
            "  --sketch FILE     a garment sketch (edit)\n"
            "  --text T          what to make (edit, text2image)\n"
            "  --steps N         denoising steps, 1..%d (default: the worker's)\n"
            "  --guidance G      guidance scale, 0..%g (default: the worker's)\n"
            "  --seed S          the same seed and inputs give the same image (default 0)\n"
            "  --width W, --height H  output size, multiples of 8 in %d..%d (default 384x512)\n"
            "  --key K           idempotency key: resubmitting it returns the same job\n"
            "  --deadline-ms MS  the job's time budget (default: the broker's)\n"
            "  --wait            wait for the end, with a progress bar (Ctrl-C stops waiting,\n"
            "                    not the job)\n"
            "  --wait-timeout S  give up waiting after S seconds (default %d)\n"
            "  -o, --out FILE    with --wait: write the result PNG there\n",
            CIRRUS_GEN_STEPS_MAX, (double)CIRRUS_GEN_GUIDANCE_MAX, CIRRUS_GEN_SIZE_MIN,
            CIRRUS_GEN_SIZE_MAX, WAIT_DEFAULT_S);
    return out == stdout ? CLI_OK : CLI_USAGE;
}

typedef struct gen_args {
    cirrus_generate_params p;
    const char *person, *garment, *mask, *sketch, *out;
    uint8_t *bufs[4]; /* the files read, freed at the end */
    int wait;
    long long wait_s;
} gen_args;

/* Reads `path` into the params field (data, len); the buffer goes to a->bufs[slot]. */
static int read_input(gen_args *a, int slot, const char *flag, const char *path,
                      const void **data, size_t *len)
{
    uint8_t *buf = NULL;
    if (!path)
        return CLI_OK;
    if (cr_file_read(path, &buf, len)) {
        cli_error("generate", "%s: %s", flag, cr_error_message());
        return CLI_FAIL;
    }
    if (!*len) {
        free(buf);
        cli_error("generate", "%s %s: the file is empty", flag, path);
        return CLI_USAGE;
    }
    a->bufs[slot] = buf;
    *data = buf;
    return CLI_OK;
}

/* The numeric options; the library checks their ranges, except the explicit 0 it would take
 * for "default". */
static int gen_number(gen_args *a, int c, const char *arg)
{
    long long v = 0;
    double d = 0;
    int bad = c == 'g' ? (int)cr_parse_double(arg, &d)
            : (int)cr_parse_ll(arg, c == 'S' ? 0 : 1,
                               c == 'S' ? INT64_MAX : c == 'D' ? UINT32_MAX : 1000000, &v);
    if (bad) {
        cli_error("generate", "%s: %s",
                  c == 'g' ? "--guidance" : c == 's' ? "--steps" : c == 'S' ? "--seed"
                  : c == 'W' ? "--width" : c == 'H' ? "--height" : "--deadline-ms",
                  cr_error_message());
        return CLI_USAGE;
    }
    switch (c) {
    case 'g': a->p.guidance = (float)d; break;
    case 's': a->p.steps = (uint32_t)v; break;
    case 'S': a->p.seed = (uint64_t)v; break;
    case 'W': a->p.width = (uint32_t)v; break;
    case 'H': a->p.height = (uint32_t)v; break;
    default: a->p.deadline_ms = (uint32_t)v; break;
    }
    return CLI_OK;
}

/* Returns -1 to go on, else the exit code. */
static int gen_parse(cli_ctx *ctx, gen_args *a, int argc, char **argv)
{
    static const struct option opts[] = {
        {"kind", required_argument, 0, 'k'},      {"person", required_argument, 0, 'p'},
        {"garment", required_argument, 0, 'G'},   {"garment-id", required_argument, 0, 'I'},
        {"category", required_argument, 0, 'c'},  {"mask", required_argument, 0, 'm'},
        {"sketch", required_argument, 0, 'K'},    {"text", required_argument, 0, 't'},
        {"steps", required_argument, 0, 's'},     {"guidance", required_argument, 0, 'g'},
        {"seed", required_argument, 0, 'S'},      {"width", required_argument, 0, 'W'},
        {"height", required_argument, 0, 'H'},    {"key", required_argument, 0, 'y'},
        {"deadline-ms", required_argument, 0, 'D'}, {"wait", no_argument, 0, 'w'},
        {"wait-timeout", required_argument, 0, 'T'}, {"out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    int c, rc;
    while ((c = cli_getopt(ctx, argc, argv, "o:", opts)) != -1) {
        switch (c) {
        case 'k':
            if (cirrus_job_kind_parse(optarg, &a->p.kind)) {
                cli_error("generate", "--%s", cr_error_message());
                return CLI_USAGE;
            }
            break;
        case 'p': a->person = optarg; break;
        case 'G': a->garment = optarg; break;
        case 'I': a->p.garment_item_id = optarg; break;
        case 'c': a->p.category = optarg; break;
        case 'm': a->mask = optarg; break;
        case 'K': a->sketch = optarg; break;
        case 't': a->p.text = optarg; break;
        case 'y': a->p.idempotency_key = optarg; break;
        case 'w': a->wait = 1; break;
        case 'o': a->out = optarg; break;
        case 'T':
            if ((rc = parse_wait_s("generate", optarg, &a->wait_s)))
                return rc;
            break;
        case 's': case 'g': case 'S': case 'W': case 'H': case 'D':
            if ((rc = gen_number(a, c, optarg)))
                return rc;
            break;
        case 'h': return usage_generate(stdout);
        default: return usage_generate(stderr);
        }
    }
    if (optind < argc) {
        cli_error("generate", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (a->out && !a->wait) {
        cli_error("generate", "-o needs --wait (or fetch it later: cirrus job ID -o FILE)");
        return CLI_USAGE;
    }
    return -1;
}

int cli_cmd_generate(cli_ctx *ctx, int argc, char **argv)
{
    gen_args a;
    cirrus *c = NULL;
    cirrus_job *j = NULL;
    char id[CIRRUS_JOB_ID_MAX + 1];
    int rc;

    memset(&a, 0, sizeof a);
    a.p = cirrus_generate_default();
    a.wait_s = WAIT_DEFAULT_S;
    rc = gen_parse(ctx, &a, argc, argv);
    if (rc >= 0)
        goto out;
    if ((rc = read_input(&a, 0, "--person", a.person, &a.p.person_image,
                         &a.p.person_image_len)) ||
        (rc = read_input(&a, 1, "--garment", a.garment, &a.p.garment_image,
                         &a.p.garment_image_len)) ||
        (rc = read_input(&a, 2, "--mask", a.mask, &a.p.mask, &a.p.mask_len)) ||
        (rc = read_input(&a, 3, "--sketch", a.sketch, &a.p.sketch, &a.p.sketch_len)) ||
        (rc = open_handle(ctx, "generate", &c)))
        goto out;
    rc = CLI_FAIL;
    if (cirrus_generate(c, &a.p, &j) != CIRRUS_OK) {
        cli_error("generate", "%s", cirrus_errmsg(c));
        goto out;
    }
    snprintf(id, sizeof id, "%s", cirrus_job_id(j));
    if (!a.wait) {
        if (ctx->json)
            print_job_json(j);
        else
            printf("%s\n", id);
        rc = CLI_OK;
        goto out;
    }
    if (!ctx->json)
        fprintf(stderr, "job %s submitted\n", id);
    rc = wait_job(ctx, "generate", c, id, a.wait_s, a.out);
out:
    cirrus_job_free(&j);
    cirrus_close(&c);
    for (size_t i = 0; i < sizeof a.bufs / sizeof a.bufs[0]; i++)
        free(a.bufs[i]);
    return rc;
}

/* ---- cirrus job ID, cirrus cancel ID -------------------------------------------------- */

static int usage_job(FILE *out)
{
    fprintf(out,
            "Usage: cirrus job ID [--wait] [--wait-timeout S] [-o OUT.png]\n"
            "Prints the job's state, progress, attempts and worker (--json: as JSON). With\n"
            "--wait, shows its progress until it ends (exit status 0 only when it succeeded);\n"
            "-o writes its result PNG (with --wait: once it succeeded; without: it must have).\n"
            "  --wait-timeout S  give up waiting after S seconds (default %d)\n",
            WAIT_DEFAULT_S);
    return out == stdout ? CLI_OK : CLI_USAGE;
}

int cli_cmd_job(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"wait", no_argument, 0, 'w'},
                                         {"wait-timeout", required_argument, 0, 'T'},
                                         {"out", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *id;
    long long wait_s = WAIT_DEFAULT_S;
    int c, wait = 0, rc;
    cirrus *h = NULL;
    cirrus_job *j = NULL;

    while ((c = cli_getopt(ctx, argc, argv, "o:", opts)) != -1) {
        switch (c) {
        case 'w': wait = 1; break;
        case 'o': out = optarg; break;
        case 'T':
            if ((rc = parse_wait_s("job", optarg, &wait_s)))
                return rc;
            break;
        case 'h': return usage_job(stdout);
        default: return usage_job(stderr);
        }
    }
    if (optind + 1 != argc) {
        cli_error("job", "expected one job id");
        return usage_job(stderr);
    }
    id = argv[optind];
    if ((rc = open_handle(ctx, "job", &h)))
        return rc;
    if (wait) {
        rc = wait_job(ctx, "job", h, id, wait_s, out);
    } else if (cirrus_job_status(h, id, out != NULL, &j) != CIRRUS_OK) {
        cli_error("job", "%s", cirrus_errmsg(h));
        rc = CLI_FAIL;
    } else {
        print_job(ctx, j);
        rc = out ? write_image("job", j, out) : CLI_OK;
    }
    cirrus_job_free(&j);
    cirrus_close(&h);
    return rc;
}

static int usage_cancel(FILE *out)
{
    fprintf(out, "Usage: cirrus cancel ID\n"
                 "Cancels the job: a queued one ends at once, a running one at its worker's next\n"
                 "step. Prints its state after the request (--json: the job). Cancelling a job\n"
                 "that already ended changes nothing.\n");
    return out == stdout ? CLI_OK : CLI_USAGE;
}

int cli_cmd_cancel(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    cirrus *h = NULL;
    cirrus_job *j = NULL;
    int c, rc;

    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1)
        return c == 'h' ? usage_cancel(stdout) : usage_cancel(stderr);
    if (optind + 1 != argc) {
        cli_error("cancel", "expected one job id");
        return usage_cancel(stderr);
    }
    if ((rc = open_handle(ctx, "cancel", &h)))
        return rc;
    if (cirrus_job_cancel(h, argv[optind], &j) != CIRRUS_OK) {
        cli_error("cancel", "%s", cirrus_errmsg(h));
        rc = CLI_FAIL;
    } else if (ctx->json) {
        print_job_json(j);
    } else {
        printf("job %s: %s\n", cirrus_job_id(j), cirrus_job_state_name(cirrus_job_get_state(j)));
    }
    cirrus_job_free(&j);
    cirrus_close(&h);
    return rc;
}

/* ---- cirrus jobs ---------------------------------------------------------------------- */

static int usage_jobs(FILE *out)
{
    fprintf(out, "Usage: cirrus jobs [--limit N]\n"
                 "Recent jobs, newest first: id, kind, state, progress, attempts, age, error\n"
                 "(--json: {\"jobs\": [...]}). --limit: 1..%d (default 50).\n",
            CIRRUS_JOBS_LIST_MAX);
    return out == stdout ? CLI_OK : CLI_USAGE;
}

static void print_jobs_text(const cirrus_job_list *l)
{
    int64_t now = (int64_t)time(NULL) * 1000;
    printf("%-36s %-10s %-9s %5s %3s %8s  %s\n", "JOB", "KIND", "STATE", "PROG", "ATT", "AGE",
           "ERROR");
    for (size_t i = 0; i < cirrus_job_list_count(l); i++) {
        const cirrus_job *j = cirrus_job_list_at(l, i);
        uint64_t created = cirrus_job_created_ms(j);
        double age = created && now > (int64_t)created ? (double)(now - (int64_t)created) / 1000
                                                        : 0;
        printf("%-36s %-10s %-9s %4.0f%% %3u %7.0fs  %s\n", cirrus_job_id(j),
               cirrus_job_kind_name(cirrus_job_get_kind(j)),
               cirrus_job_state_name(cirrus_job_get_state(j)), 100.0 * cirrus_job_progress(j),
               cirrus_job_attempts(j), age, cirrus_job_error(j));
    }
}

int cli_cmd_jobs(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"limit", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cirrus *h = NULL;
    cirrus_job_list *l = NULL;
    long long limit = 0;
    int c, rc;

    while ((c = cli_getopt(ctx, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'n':
            if (cr_parse_ll(optarg, 1, CIRRUS_JOBS_LIST_MAX, &limit)) {
                cli_error("jobs", "--limit: %s", cr_error_message());
                return CLI_USAGE;
            }
            break;
        case 'h': return usage_jobs(stdout);
        default: return usage_jobs(stderr);
        }
    }
    if (optind < argc) {
        cli_error("jobs", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if ((rc = open_handle(ctx, "jobs", &h)))
        return rc;
    if (cirrus_jobs(h, (uint32_t)limit, &l) != CIRRUS_OK) {
        cli_error("jobs", "%s", cirrus_errmsg(h));
        rc = CLI_FAIL;
    } else if (ctx->json) {
        json_t *arr = json_array(), *o = json_object();
        for (size_t i = 0; i < cirrus_job_list_count(l); i++)
            json_array_append_new(arr,
                                  cirrus_job_info_json(cirrus_job_info(cirrus_job_list_at(l, i))));
        json_object_set_new(o, "jobs", arr);
        cli_print_json(o);
    } else {
        print_jobs_text(l);
    }
    cirrus_job_list_free(&l);
    cirrus_close(&h);
    return rc;
}
