/* Entry point: dispatches to the subcommands. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Subcommands are linked in from their own files; a weak declaration lets the
 * tool build while a subcommand is still being written. */
#pragma weak cmd_info
#pragma weak cmd_run
#pragma weak cmd_predict
#pragma weak cmd_bench
#pragma weak cmd_calibrate
#pragma weak cmd_report
#pragma weak cmd_explain
#pragma weak cmd_demo
#pragma weak cmd_global
#pragma weak cmd_surrogate
#pragma weak cmd_robustness

typedef struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "describe a model: inputs, outputs, ops, parameters, MACs"},
    {"run", cmd_run, "run a model on .npy tensors and write the raw outputs"},
    {"predict", cmd_predict, "classify images or tensors, with uncertainty"},
    {"bench", cmd_bench, "measure latency, throughput and memory"},
    {"calibrate", cmd_calibrate, "fit calibration and conformal prediction on labelled data"},
    {"report", cmd_report, "calibration report from a CSV of predictions"},
    {"explain", cmd_explain, "saliency maps and explanations"},
    {"global", cmd_global, "dataset-level explanations: class saliency, channel importance, TCAV"},
    {"surrogate", cmd_surrogate, "distil the model into a decision tree over interpretable features"},
    {"robustness", cmd_robustness, "adversarial attacks (FGSM/PGD): accuracy and uncertainty-based detection"},
    {"demo", cmd_demo, "the guided tour on the bundled models"},
};

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("candor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail_err(const char *cmd, const cd_error *err)
{
    fprintf(stderr, "candor %s: error (%s): %s\n", cmd, cd_status_name(err->code), err->message);
    return 1;
}

cd_status cli_set_error(cd_error *err, cd_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

bool cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: candor COMMAND [ARGS...]\n\n"
               "candor runs ONNX convolutional networks on the CPU and pairs every answer with\n"
               "how sure the model is, where it is unsure and why it decided.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].fn)
            fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'candor COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("candor %s\n", CANDOR_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].fn && strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "candor: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
