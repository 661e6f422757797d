#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common/log.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"catalog", bench_cmd_catalog, "synthetic garment catalog: PNG images + JSONL"},
    {"tiny-model", bench_cmd_tiny_model, "a small random CLIP + phi for demos without weights"},
    {"gen", bench_cmd_gen, "write clustered random vectors (.fvecs) and queries"},
    {"truth", bench_cmd_truth, "exact top-k ground truth (.ivecs) for queries"},
    {"search", bench_cmd_search, "QPS, latency percentiles and recall against an endpoint, "
                                 "or in-process (--peer)"},
    {"index", bench_cmd_index, "recall of a shard's index vs the same FAISS index in-process, "
                               "under three write patterns"},
    {"add", bench_cmd_add, "in-process FAISS peer of cirrus build: train once, add G groups"},
    {"echo", bench_cmd_echo, "bare ZeroMQ round trip on loopback: the transport floor"},
    {"jobs", bench_cmd_jobs, "job broker with no-op workers: submit->worker latency, jobs/s"},
    {"raw", bench_cmd_raw, "send raw bytes as one frame (tests of malformed input)"},
    {"soak", bench_cmd_soak, "hours of mixed load with the servers' RSS, fds and threads judged"},
    {"restart", bench_cmd_restart, "restart-to-ready time of a shard directory"},
    {"encoder", bench_cmd_encoder, "CLIP images/s, text latency, GFLOP/s; vs PyTorch (--peer)"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: cirrus-bench COMMAND [options]   (COMMAND --help for details)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    cr_log_set_level(CR_LOG_WARN);
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "cirrus-bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
