/* Renders the report model as one self-contained HTML page: inline CSS and
 * SVG only (no scripts, fonts or network), legible when printed. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/report_internal.h"
#include "core/internal.h"

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int need = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (need < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->len + (size_t)need < b->cap) {
            b->len += (size_t)need;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 65536) + (size_t)need;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* Text from the input (file names, class names) is escaped. */
static void sb_escaped(sbuf *b, const char *t)
{
    for (; t && *t; t++) {
        switch (*t) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", *t);
        }
    }
}

static double get_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

static void fmt_num(sbuf *b, double v)
{
    if (isnan(v))
        sb_printf(b, "&ndash;");
    else
        sb_printf(b, "%.4f", v);
}

static const char *style =
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em;"
    "text-align:right}th{background:#eee}td.l,th.l{text-align:left}"
    "figure{display:inline-block;margin:1em 1em 1em 0;vertical-align:top}"
    "figcaption{font-size:.9em;max-width:26em}code{font-size:.9em;word-break:break-all}"
    "@media print{figure{page-break-inside:avoid}}";

/* Plot frame: 320x320 data area at (50,20) with axes and ticks 0..1. */
#define PX(v) (50.0 + 320.0 * (v))
#define PY(v) (340.0 - 320.0 * (v))

static void svg_axes(sbuf *b, const char *xlabel, const char *ylabel, double ymax)
{
    sb_printf(b, "<rect x=\"50\" y=\"20\" width=\"320\" height=\"320\" fill=\"none\" "
                 "stroke=\"#444\"/>\n");
    for (int i = 0; i <= 5; i++) {
        double v = i / 5.0;
        sb_printf(b, "<text x=\"%.1f\" y=\"356\" font-size=\"11\" text-anchor=\"middle\">%.1f</text>\n",
                  PX(v), v);
        sb_printf(b, "<text x=\"44\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.2g</text>\n",
                  PY(v) + 4, v * ymax);
    }
    sb_printf(b, "<text x=\"210\" y=\"376\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n",
              xlabel);
    sb_printf(b, "<text x=\"14\" y=\"180\" font-size=\"12\" text-anchor=\"middle\" "
                 "transform=\"rotate(-90 14 180)\">%s</text>\n", ylabel);
}

static void svg_reliability(sbuf *b, const cJSON *bins)
{
    sb_printf(b, "<figure><svg id=\"reliability\" xmlns=\"http://www.w3.org/2000/svg\" "
                 "width=\"390\" height=\"390\" viewBox=\"0 0 390 390\">\n");
    svg_axes(b, "confidence", "accuracy", 1.0);
    sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" "
                 "stroke-dasharray=\"4 3\"/>\n", PX(0), PY(0), PX(1), PY(1));
    const cJSON *bin;
    cJSON_ArrayForEach(bin, bins)
    {
        double lo = get_num(bin, "lo"), hi = get_num(bin, "hi"), acc = get_num(bin, "accuracy");
        double cnt = get_num(bin, "count");
        if (!(cnt > 0))
            continue;
        sb_printf(b, "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                     "fill=\"#4a7fb5\" stroke=\"#fff\"><title>(%.3f, %.3f]: n=%.0f, accuracy "
                     "%.4f, confidence %.4f</title></rect>\n",
                  PX(lo), PY(acc), PX(hi) - PX(lo), PY(0) - PY(acc), lo, hi, cnt, acc,
                  get_num(bin, "confidence"));
        sb_printf(b, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"8\" text-anchor=\"middle\" "
                     "fill=\"#333\">%.0f</text>\n", (PX(lo) + PX(hi)) / 2, PY(acc) - 3, cnt);
    }
    sb_printf(b, "</svg><figcaption>Reliability diagram: accuracy per equal-width confidence "
                 "bin (numbers = samples in the bin; dashed = perfect calibration; empty bins "
                 "omitted).</figcaption></figure>\n");
}

static void svg_histogram(sbuf *b, const cJSON *bins, double n)
{
    double peak = 0;
    const cJSON *bin;
    cJSON_ArrayForEach(bin, bins)
    {
        double c = get_num(bin, "count") / n;
        if (c > peak)
            peak = c;
    }
    if (!(peak > 0))
        peak = 1;
    sb_printf(b, "<figure><svg id=\"confidence-histogram\" xmlns=\"http://www.w3.org/2000/svg\" "
                 "width=\"390\" height=\"390\" viewBox=\"0 0 390 390\">\n");
    svg_axes(b, "confidence", "fraction of samples", peak);
    cJSON_ArrayForEach(bin, bins)
    {
        double lo = get_num(bin, "lo"), hi = get_num(bin, "hi");
        double all = get_num(bin, "count") / n / peak, ok = get_num(bin, "correct") / n / peak;
        if (!(all > 0))
            continue;
        sb_printf(b, "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                     "fill=\"#d9822b\"/>\n", PX(lo), PY(all), PX(hi) - PX(lo), PY(0) - PY(all));
        sb_printf(b, "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                     "fill=\"#4a7fb5\"/>\n", PX(lo), PY(ok), PX(hi) - PX(lo), PY(0) - PY(ok));
    }
    sb_printf(b, "</svg><figcaption>Confidence histogram (blue = correct, orange = wrong; "
                 "bars stacked to the bin's share of all samples).</figcaption></figure>\n");
}

static void svg_risk_coverage(sbuf *b, const cJSON *rc)
{
    const cJSON *cov = cJSON_GetObjectItemCaseSensitive(rc, "coverage");
    const cJSON *risk = cJSON_GetObjectItemCaseSensitive(rc, "risk");
    double top = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, risk) if (v->valuedouble > top) top = v->valuedouble;
    top = top > 0 ? ceil(top * 10) / 10 : 1;
    sb_printf(b, "<figure><svg id=\"risk-coverage\" xmlns=\"http://www.w3.org/2000/svg\" "
                 "width=\"390\" height=\"390\" viewBox=\"0 0 390 390\">\n");
    svg_axes(b, "coverage", "selective risk (error rate)", top);
    sb_printf(b, "<polyline fill=\"none\" stroke=\"#b5412e\" stroke-width=\"1.5\" points=\"");
    int n = cJSON_GetArraySize(cov);
    for (int i = 0; i < n; i++)
        sb_printf(b, "%.2f,%.2f ", PX(cJSON_GetArrayItem(cov, i)->valuedouble),
                  PY(cJSON_GetArrayItem(risk, i)->valuedouble / top));
    sb_printf(b, "\"/>\n</svg><figcaption>Risk-coverage curve: error rate among the most "
                 "confident predictions kept, as the confidence threshold is lowered.</figcaption></figure>\n");
}

static void html_metrics(sbuf *b, const cJSON *metrics, int with_ci)
{
    sb_printf(b, "<h2>Metrics</h2><table id=\"metrics\"><tr><th class=\"l\">metric</th>"
                 "<th>value</th>%s<th>better</th></tr>\n",
              with_ci ? "<th>95% CI low</th><th>95% CI high</th>" : "");
    const cJSON *m;
    cJSON_ArrayForEach(m, metrics)
    {
        sb_printf(b, "<tr><td class=\"l\">%s <code>%s</code></td><td>", get_str(m, "label"),
                  get_str(m, "name"));
        fmt_num(b, get_num(m, "value"));
        if (with_ci) {
            sb_printf(b, "</td><td>");
            fmt_num(b, get_num(m, "ci_low"));
            sb_printf(b, "</td><td>");
            fmt_num(b, get_num(m, "ci_high"));
        }
        sb_printf(b, "</td><td>%s</td></tr>\n", get_str(m, "better"));
    }
    sb_printf(b, "</table>\n");
}

static void html_per_class(sbuf *b, const cJSON *rows)
{
    sb_printf(b, "<h2>Per class</h2><table id=\"per-class\"><tr><th class=\"l\">class</th>"
                 "<th>support</th><th>predicted</th><th>precision</th><th>recall</th>"
                 "<th>mean p(true class)</th><th>mean confidence when predicted</th>"
                 "<th>one-vs-rest ECE</th></tr>\n");
    const cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        sb_printf(b, "<tr><td class=\"l\">%.0f: ", get_num(r, "index"));
        sb_escaped(b, get_str(r, "name"));
        sb_printf(b, "</td><td>%.0f</td><td>%.0f</td><td>", get_num(r, "support"),
                  get_num(r, "predicted"));
        const char *keys[] = {"precision", "recall", "mean_true_class_probability",
                              "mean_confidence_when_predicted", "one_vs_rest_ece"};
        for (int i = 0; i < 5; i++) {
            fmt_num(b, get_num(r, keys[i]));
            sb_printf(b, i < 4 ? "</td><td>" : "</td></tr>\n");
        }
    }
    sb_printf(b, "</table>\n");
}

static void html_settings(sbuf *b, const cJSON *root)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "settings");
    sb_printf(b, "<h2>Data and settings</h2><table id=\"settings\">");
    sb_printf(b, "<tr><th class=\"l\">input file</th><td class=\"l\"><code>");
    sb_escaped(b, get_str(d, "source"));
    sb_printf(b, "</code></td></tr><tr><th class=\"l\">SHA-256</th><td class=\"l\"><code>%s"
                 "</code></td></tr>", get_str(d, "sha256"));
    sb_printf(b, "<tr><th class=\"l\">samples n</th><td class=\"l\">%.0f</td></tr>"
                 "<tr><th class=\"l\">classes K</th><td class=\"l\">%.0f</td></tr>",
              get_num(d, "n"), get_num(d, "num_classes"));
    sb_printf(b, "<tr><th class=\"l\">input</th><td class=\"l\">%s%s</td></tr>",
              get_str(d, "input"),
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "renormalized"))
                  ? "; rows renormalised to sum to 1 (--renormalize)" : "");
    const cJSON *item;
    cJSON_ArrayForEach(item, s)
    {
        sb_printf(b, "<tr><th class=\"l\">%s</th><td class=\"l\">", item->string);
        if (cJSON_IsNumber(item))
            sb_printf(b, "%.17g", item->valuedouble);
        else
            sb_escaped(b, cJSON_GetStringValue(item));
        sb_printf(b, "</td></tr>");
    }
    const char *cmd = get_str(root, "command_line");
    if (*cmd) {
        sb_printf(b, "<tr><th class=\"l\">command</th><td class=\"l\"><code>");
        sb_escaped(b, cmd);
        sb_printf(b, "</code></td></tr>");
    }
    sb_printf(b, "<tr><th class=\"l\">generated by</th><td class=\"l\">%s</td></tr></table>\n",
              get_str(root, "generated_by"));
}

static void html_definitions(sbuf *b)
{
    sb_printf(b,
              "<h2>Definitions</h2><ul>"
              "<li>ECE = &Sigma;<sub>m</sub> |B<sub>m</sub>|/n &middot; |acc(B<sub>m</sub>) &minus; "
              "conf(B<sub>m</sub>)| over equal-width bins ((m&minus;1)/M, m/M] of the top-class "
              "probability; empty bins contribute 0. MCE = largest gap over non-empty bins.</li>"
              "<li>Adaptive ECE: the same sum over M equal-mass groups of the sorted confidences "
              "(the first n mod M groups one larger).</li>"
              "<li>Classwise ECE: mean over classes of the one-vs-rest ECE of p<sub>k</sub> binned "
              "over all samples.</li>"
              "<li>Brier = (1/n) &Sigma;<sub>i</sub> &Sigma;<sub>k</sub> (p<sub>ik</sub> &minus; "
              "1[y<sub>i</sub>=k])&sup2;, range [0, 2]. NLL in nats with p clamped at 1e-12.</li>"
              "<li>AUROC: probability that a correct prediction has higher confidence than a wrong "
              "one (ties count one half). AURC: area under the risk-coverage curve; excess AURC "
              "subtracts the oracle that ranks every correct prediction first.</li>"
              "<li>Intervals: percentile bootstrap over samples (seeded), when requested.</li>"
              "</ul>\n");
}

cd_status cd_report_write_html(const cd_report *r, const char *path, cd_error *err)
{
    const cJSON *root = r->root;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "settings");
    sbuf b = {0};
    sb_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<title>candor calibration report</title><style>%s</style></head><body>\n",
              style);
    sb_printf(&b, "<h1>Calibration report</h1><p>");
    sb_escaped(&b, get_str(d, "source"));
    sb_printf(&b, ": %.0f samples, %.0f classes, %s.</p>\n", get_num(d, "n"),
              get_num(d, "num_classes"), get_str(d, "input"));
    html_metrics(&b, cJSON_GetObjectItemCaseSensitive(root, "metrics"),
                 get_num(s, "bootstrap") > 0);
    const cJSON *rel = cJSON_GetObjectItemCaseSensitive(root, "reliability");
    sb_printf(&b, "<h2>Plots</h2>\n");
    svg_reliability(&b, rel);
    svg_histogram(&b, rel, get_num(d, "n"));
    svg_risk_coverage(&b, cJSON_GetObjectItemCaseSensitive(root, "risk_coverage"));
    html_per_class(&b, cJSON_GetObjectItemCaseSensitive(root, "per_class"));
    html_settings(&b, root);
    html_definitions(&b);
    sb_printf(&b, "</body></html>\n");
    if (b.failed) {
        free(b.s);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "report: HTML text");
    }
    cd_status st = cd_write_file_atomic(path, b.s, b.len, err);
    free(b.s);
    return st;
}
