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
    "figcaption{font-size:.9em;max-width:26em}.warning{color:#a33}code{font-size:.9em;word-break:break-all}"
    "@media print{figure{page-break-inside:avoid}}";

/* Plot frame: 320x320 data area at (50,20) with axes and ticks 0..1. */
#define PX(v) (50.0 + 320.0 * (v))
#define PY(v) (340.0 - 320.0 * (v))

static void svg_axes(sbuf *b, const char *xlabel, const char *ylabel, double ymax, int xticks)
{
    sb_printf(b, "<rect x=\"50\" y=\"20\" width=\"320\" height=\"320\" fill=\"none\" "
                 "stroke=\"#444\"/>\n");
    for (int i = 0; i <= 5; i++) {
        double v = i / 5.0;
        if (xticks)
            sb_printf(b, "<text x=\"%.1f\" y=\"356\" font-size=\"11\" "
                         "text-anchor=\"middle\">%.1f</text>\n", PX(v), v);
        sb_printf(b, "<text x=\"44\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.2g</text>\n",
                  PY(v) + 4, v * ymax);
    }
    sb_printf(b, "<text x=\"210\" y=\"376\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n",
              xlabel);
    sb_printf(b, "<text x=\"14\" y=\"180\" font-size=\"12\" text-anchor=\"middle\" "
                 "transform=\"rotate(-90 14 180)\">%s</text>\n", ylabel);
}

static void svg_reliability(sbuf *b, const cJSON *bins, const char *id, const char *title)
{
    sb_printf(b, "<figure><svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" "
                 "width=\"390\" height=\"390\" viewBox=\"0 0 390 390\">\n", id);
    svg_axes(b, "confidence", "accuracy", 1.0, 1);
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
    sb_printf(b, "</svg><figcaption>%s%sReliability diagram: accuracy per equal-width confidence "
                 "bin (numbers = samples in the bin; dashed = perfect calibration; empty bins "
                 "omitted).</figcaption></figure>\n", title ? title : "", title ? ". " : "");
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
    svg_axes(b, "confidence", "fraction of samples", peak, 1);
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
    svg_axes(b, "coverage", "selective risk (error rate)", top, 1);
    sb_printf(b, "<polyline fill=\"none\" stroke=\"#b5412e\" stroke-width=\"1.5\" points=\"");
    int n = cJSON_GetArraySize(cov);
    for (int i = 0; i < n; i++)
        sb_printf(b, "%.2f,%.2f ", PX(cJSON_GetArrayItem(cov, i)->valuedouble),
                  PY(cJSON_GetArrayItem(risk, i)->valuedouble / top));
    sb_printf(b, "\"/>\n</svg><figcaption>Risk-coverage curve: error rate among the most "
                 "confident predictions kept, as the confidence threshold is lowered.</figcaption></figure>\n");
}

static void html_metrics(sbuf *b, const cJSON *metrics, int with_ci, const char *scope)
{
    sb_printf(b, "<h2>Metrics%s</h2><table id=\"metrics\"><tr><th class=\"l\">metric</th>"
                 "<th>value</th>%s<th>better</th></tr>\n", scope,
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
    static const char *const shown[] = {"source", "sha256", "n", "num_classes", "input",
                                        "renormalized", "class_names", NULL};
    const cJSON *item;
    cJSON_ArrayForEach(item, d) /* fields added by candor calibrate (model, fingerprints) */
    {
        int known = 0;
        for (int i = 0; shown[i]; i++)
            known |= strcmp(item->string, shown[i]) == 0;
        if (known || !(cJSON_IsString(item) || cJSON_IsNumber(item)))
            continue;
        sb_printf(b, "<tr><th class=\"l\">");
        sb_escaped(b, item->string);
        sb_printf(b, "</th><td class=\"l\"><code>");
        if (cJSON_IsNumber(item))
            sb_printf(b, "%.17g", item->valuedouble);
        else
            sb_escaped(b, item->valuestring);
        sb_printf(b, "</code></td></tr>");
    }
    cJSON_ArrayForEach(item, s)
    {
        sb_printf(b, "<tr><th class=\"l\">");
        sb_escaped(b, item->string);
        sb_printf(b, "</th><td class=\"l\">");
        if (cJSON_IsNumber(item))
            sb_printf(b, "%.17g", item->valuedouble);
        else if (cJSON_IsBool(item))
            sb_printf(b, "%s", cJSON_IsTrue(item) ? "yes" : "no");
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

/* One metric with its interval, "value [low, high]". */
static void fmt_ci(sbuf *b, const cJSON *m)
{
    fmt_num(b, get_num(m, "value"));
    double lo = get_num(m, "ci_low"), hi = get_num(m, "ci_high");
    if (!isnan(lo) && !isnan(hi))
        sb_printf(b, " <small>[%.4f, %.4f]</small>", lo, hi);
}

static const cJSON *side_metrics(const cJSON *split, const char *side)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(split, side),
                                            "metrics");
}

static void html_split(sbuf *b, const cJSON *split, int index)
{
    const char *name = get_str(split, "name");
    sb_printf(b, "<h3>Split: ");
    sb_escaped(b, name);
    sb_printf(b, " (n = %.0f)</h3><table class=\"before-after\" id=\"before-after-%d\">"
                 "<tr><th class=\"l\">metric</th><th>before calibration</th>"
                 "<th>after calibration</th><th>better</th></tr>\n", get_num(split, "n"), index);
    const cJSON *before = side_metrics(split, "before"), *after = side_metrics(split, "after");
    int n = cJSON_GetArraySize(before);
    for (int i = 0; i < n; i++) {
        const cJSON *mb = cJSON_GetArrayItem(before, i), *ma = cJSON_GetArrayItem(after, i);
        sb_printf(b, "<tr><td class=\"l\">%s <code>%s</code></td><td>", get_str(mb, "label"),
                  get_str(mb, "name"));
        fmt_ci(b, mb);
        sb_printf(b, "</td><td>");
        fmt_ci(b, ma);
        sb_printf(b, "</td><td>%s</td></tr>\n", get_str(mb, "better"));
    }
    sb_printf(b, "</table>\n");
    const char *sides[2] = {"before", "after"};
    for (int s = 0; s < 2; s++) {
        char id[64], title[160];
        snprintf(id, sizeof id, "reliability-%d-%s", index, sides[s]);
        snprintf(title, sizeof title, "%s split, %s calibration", name, sides[s]);
        for (char *c = title; *c; c++)
            if (*c == '<' || *c == '>' || *c == '&' || *c == '"')
                *c = '_'; /* the title goes into the page unescaped */
        svg_reliability(b, cJSON_GetObjectItemCaseSensitive(
                               cJSON_GetObjectItemCaseSensitive(split, sides[s]), "reliability"),
                        id, title);
    }
}

static void html_calibration(sbuf *b, const cJSON *cal)
{
    if (!cal)
        return;
    sb_printf(b, "<h2>Before and after calibration</h2><p>Method <b>");
    sb_escaped(b, get_str(cal, "method"));
    sb_printf(b, "</b>, fitted on ");
    sb_escaped(b, get_str(cal, "fitted_on"));
    double t = get_num(cal, "temperature");
    if (!isnan(t))
        sb_printf(b, "; temperature T = %.6g", t);
    double nb = get_num(cal, "fit_nll_before"), na = get_num(cal, "fit_nll_after");
    if (!isnan(nb))
        sb_printf(b, "; NLL on the fitting data %.6f &rarr; %.6f", nb, na);
    sb_printf(b, ". Intervals in brackets: 95%% percentile bootstrap.</p>\n");
    const char *warn = get_str(cal, "warning");
    if (*warn) {
        sb_printf(b, "<p class=\"warning\"><b>Warning:</b> ");
        sb_escaped(b, warn);
        sb_printf(b, "</p>\n");
    }
    const cJSON *split;
    int i = 0;
    cJSON_ArrayForEach(split, cJSON_GetObjectItemCaseSensitive(cal, "splits"))
        html_split(b, split, i++);
}

static void svg_set_sizes(sbuf *b, const cJSON *hist, double n)
{
    int bars = cJSON_GetArraySize(hist);
    double peak = 0;
    for (int s = 0; s < bars; s++)
        peak = fmax(peak, cJSON_GetArrayItem(hist, s)->valuedouble / n);
    if (!(peak > 0))
        peak = 1;
    sb_printf(b, "<figure><svg id=\"set-size-histogram\" xmlns=\"http://www.w3.org/2000/svg\" "
                 "width=\"390\" height=\"390\" viewBox=\"0 0 390 390\">\n");
    svg_axes(b, "", "fraction of samples", peak, 0);
    double w = 320.0 / bars;
    for (int s = 0; s < bars; s++) {
        double c = cJSON_GetArrayItem(hist, s)->valuedouble, f = c / n / peak;
        double x = 50 + w * s;
        if (c > 0)
            sb_printf(b, "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                         "height=\"%.2f\" fill=\"#6a8f3a\" stroke=\"#fff\"><title>size %d: "
                         "%.0f</title></rect>\n", x, PY(f), w, PY(0) - PY(f), s, c);
        if (bars <= 30 || s % 5 == 0)
            sb_printf(b, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"9\" text-anchor=\"middle\" "
                         "fill=\"#333\">%d</text>\n", x + w / 2, PY(0) + 14, s);
    }
    sb_printf(b, "<text x=\"210\" y=\"382\" font-size=\"12\" text-anchor=\"middle\">"
                 "prediction set size</text>\n");
    sb_printf(b, "</svg><figcaption>Conformal prediction set sizes on the evaluation rows "
                 "(0 = empty set).</figcaption></figure>\n");
}

static void html_conformal(sbuf *b, const cJSON *c)
{
    if (!c)
        return;
    double cov = get_num(c, "empirical_coverage"), target = get_num(c, "target_coverage");
    sb_printf(b, "<h2>Conformal prediction sets</h2><table id=\"conformal\">"
                 "<tr><th class=\"l\">score</th><td class=\"l\">%s%s%s</td></tr>",
              get_str(c, "score"),
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "randomized")) ? ", randomized"
                                                                                : "",
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "mondrian"))
                  ? ", class-conditional (Mondrian)" : "");
    if (!isnan(get_num(c, "lambda")))
        sb_printf(b, "<tr><th class=\"l\">RAPS &lambda;, k<sub>reg</sub></th><td class=\"l\">"
                     "%.4g, %.0f</td></tr>", get_num(c, "lambda"), get_num(c, "k_reg"));
    sb_printf(b, "<tr><th class=\"l\">&alpha;</th><td class=\"l\">%.4g</td></tr>"
                 "<tr><th class=\"l\">calibration points n, rank k = &lceil;(n+1)(1&minus;&alpha;)"
                 "&rceil;</th><td class=\"l\">%.0f, %.0f</td></tr>"
                 "<tr><th class=\"l\">q&#770;</th><td class=\"l\">",
              get_num(c, "alpha"), get_num(c, "n_cal"), get_num(c, "rank_k"));
    fmt_num(b, get_num(c, "qhat"));
    sb_printf(b, "</td></tr><tr><th class=\"l\">empirical coverage on %.0f evaluation rows</th>"
                 "<td class=\"l\">%.4f (target 1&minus;&alpha; = %.4f; guarantee in expectation: "
                 "%.4f &le; coverage &lt; %.4f)</td></tr>"
                 "<tr><th class=\"l\">mean set size</th><td class=\"l\">%.4f</td></tr></table>\n",
              get_num(c, "n_eval"), cov, target, target, get_num(c, "coverage_upper_bound"),
              get_num(c, "mean_set_size"));
    svg_set_sizes(b, cJSON_GetObjectItemCaseSensitive(c, "set_size_histogram"),
                  get_num(c, "n_eval"));
}

static void html_abstention(sbuf *b, const cJSON *a)
{
    if (!a)
        return;
    const cJSON *cal = cJSON_GetObjectItemCaseSensitive(a, "calibration");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(a, "evaluation");
    sb_printf(b, "<h2>Risk-controlled abstention</h2><p>Predict only when %s is past the "
                 "threshold; otherwise <i>abstain &mdash; refer</i>. The threshold keeps the "
                 "Clopper&ndash;Pearson upper bound of the selective error on the calibration "
                 "data &le; %.4g at confidence %.4g.%s</p><table id=\"abstention\">"
                 "<tr><th class=\"l\"></th><th>threshold</th><th>n</th><th>coverage</th>"
                 "<th>selective risk</th><th>risk upper bound</th></tr>\n",
              get_str(a, "uncertainty"), get_num(a, "target_risk"),
              get_num(a, "confidence_level"),
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "feasible"))
                  ? "" : " <b>No threshold meets the target: every prediction abstains.</b>");
    sb_printf(b, "<tr><td class=\"l\">calibration</td><td>");
    fmt_num(b, get_num(a, "threshold"));
    sb_printf(b, "</td><td>%.0f</td><td>", get_num(cal, "n"));
    fmt_num(b, get_num(cal, "coverage"));
    sb_printf(b, "</td><td>");
    fmt_num(b, get_num(cal, "selective_risk"));
    sb_printf(b, "</td><td>");
    fmt_num(b, get_num(cal, "risk_upper_bound"));
    sb_printf(b, "</td></tr>\n<tr><td class=\"l\">evaluation (achieved)</td><td></td>"
                 "<td>%.0f</td><td>", get_num(ev, "n"));
    fmt_num(b, get_num(ev, "coverage"));
    sb_printf(b, "</td><td>");
    fmt_num(b, get_num(ev, "selective_risk"));
    sb_printf(b, "</td><td></td></tr></table>\n");
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
                 get_num(s, "bootstrap") > 0,
                 cJSON_GetObjectItemCaseSensitive(root, "calibration")
                     ? " (evaluation data, after calibration)" : "");
    html_calibration(&b, cJSON_GetObjectItemCaseSensitive(root, "calibration"));
    html_conformal(&b, cJSON_GetObjectItemCaseSensitive(root, "conformal"));
    html_abstention(&b, cJSON_GetObjectItemCaseSensitive(root, "abstention"));
    const cJSON *rel = cJSON_GetObjectItemCaseSensitive(root, "reliability");
    sb_printf(&b, "<h2>Plots%s</h2>\n", cJSON_GetObjectItemCaseSensitive(root, "calibration")
                                             ? " (evaluation data, after calibration)" : "");
    svg_reliability(&b, rel, "reliability", NULL);
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
