/* cirrus-bench catalog — a synthetic product catalog for demos and tests: PNG images of
 * garments (shapes × colors × patterns) and a JSONL file in the `cirrus ingest` format.
 * Each product comes in several colors (attribute "product" groups them). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench.h"
#include "common/config.h"
#include "cli/progress.h"
#include "encoder/image.h"

#define IMG 96

static const char *const categories[] = {"tshirt", "dress", "trousers", "skirt", "coat"};
static const char *const colors[] = {"red", "blue", "green", "black", "white", "yellow", "pink"};
static const unsigned char rgb[][3] = {{200, 30, 40},  {40, 60, 190},  {40, 150, 60},
                                       {25, 25, 25},   {240, 240, 235}, {235, 200, 40},
                                       {240, 130, 170}};
static const char *const patterns[] = {"plain", "striped", "dotted", "checked"};

/* 1 when (x, y) is inside the garment's silhouette. */
static int inside(int cat, int x, int y)
{
    int cx = IMG / 2, dx = x > cx ? x - cx : cx - x;
    switch (cat) {
    case 0: /* t-shirt: body + short sleeves */
        return (y >= 20 && y < 80 && dx < 20) || (y >= 20 && y < 40 && dx < 38);
    case 1: /* dress: narrow top, flared skirt */
        return y >= 12 && y < 88 && dx < 10 + (y - 12) * 3 / 8;
    case 2: /* trousers: waist + two legs */
        return (y >= 12 && y < 30 && dx < 22) || (y >= 30 && y < 88 && dx >= 3 && dx < 22);
    case 3: /* skirt: short trapezoid */
        return y >= 30 && y < 70 && dx < 14 + (y - 30) / 2;
    default: /* coat: long body + long sleeves */
        return (y >= 10 && y < 90 && dx < 22) || (y >= 10 && y < 70 && dx < 34 && dx >= 24);
    }
}

static void draw(unsigned char *px, int cat, int color, int pattern, unsigned seed)
{
    _Static_assert(IMG == BENCH_CATALOG_IMG, "bench.h's catalog image size");
    unsigned char bg = (unsigned char)(225 + seed % 25);
    for (int y = 0; y < IMG; y++)
        for (int x = 0; x < IMG; x++) {
            unsigned char *p = px + 3 * (y * IMG + x);
            int on = inside(cat, x, y), stripe = 0;
            if (!on) {
                p[0] = p[1] = p[2] = bg;
                continue;
            }
            if (pattern == 1)
                stripe = (y / 5) % 2;
            else if (pattern == 2)
                stripe = (x % 8 - 4) * (x % 8 - 4) + (y % 8 - 4) * (y % 8 - 4) < 5;
            else if (pattern == 3)
                stripe = ((x / 6) + (y / 6)) % 2;
            for (int c = 0; c < 3; c++) {
                int v = rgb[color][c];
                if (stripe)
                    v = v > 128 ? v - 90 : v + 90;
                p[c] = (unsigned char)v;
            }
        }
}

/* Product i's image as `cirrus-bench catalog` writes it (RGB, 96 x 96). */
void bench_catalog_draw(unsigned char *px, long long i)
{
    long long product = i / 7;
    draw(px, (int)(product % 5), (int)(i % 7), (int)((product / 5) % 4), (unsigned)i * 2654435761u);
}

int bench_cmd_catalog(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"n", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    long long n = 2000;
    char path[4096];
    unsigned char *px = malloc(IMG * IMG * 3);
    FILE *jf;
    cr_progress prog;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'o') out = optarg;
        else if (c == 'n' && !cr_parse_ll(optarg, 1, 10000000, &n)) ;
        else {
            printf("Usage: cirrus-bench catalog --out DIR [--n N]\n"
                   "Writes DIR/images/*.png and DIR/catalog.jsonl (the cirrus ingest format).\n");
            free(px);
            return c == 'h' ? 0 : 2;
        }
    }
    if (!out || !px) {
        fprintf(stderr, "cirrus-bench catalog: --out is required\n");
        free(px);
        return 2;
    }
    mkdir(out, 0755);
    snprintf(path, sizeof path, "%s/images", out);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/catalog.jsonl", out);
    if (!(jf = fopen(path, "w"))) {
        fprintf(stderr, "cirrus-bench catalog: cannot write %s\n", path);
        free(px);
        return 1;
    }
    cr_progress_begin(&prog, "images", (uint64_t)n, 0);
    for (long long i = 0; i < n; i++) {
        /* Products of 7 color variants each: same shape and pattern, differing colors. */
        long long product = i / 7;
        int cat = (int)(product % 5), pattern = (int)((product / 5) % 4), color = (int)(i % 7);
        double price = 9.99 + (double)((product * 37) % 120) + color * 0.5;
        bench_catalog_draw(px, i);
        snprintf(path, sizeof path, "%s/images/sku-%lld.png", out, i);
        if (enc_image_write_png(path, IMG, IMG, px)) {
            fprintf(stderr, "cirrus-bench catalog: %s\n", cr_error_message());
            fclose(jf);
            free(px);
            return 1;
        }
        fprintf(jf,
                "{\"id\":\"sku-%lld\",\"image\":\"images/sku-%lld.png\",\"attributes\":"
                "{\"category\":\"%s\",\"color\":\"%s\",\"pattern\":\"%s\",\"price\":%.2f,"
                "\"product\":\"p-%lld\",\"in_stock\":%s}}\n",
                i, i, categories[cat], colors[color], patterns[pattern], price, product,
                (i % 5) ? "true" : "false");
        cr_progress_add(&prog, 1);
    }
    cr_progress_end(&prog);
    fclose(jf);
    free(px);
    printf("wrote %lld products to %s/catalog.jsonl\n", n, out);
    return 0;
}
