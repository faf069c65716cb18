/*
 A tiny SVG chart writer for reports: line charts (loss curves, accuracy vs length; optional log2 x
 axis) and grouped bar charts (scores per task or subset), one series per run, with axes, ticks, a
 legend and a title. Files are written atomically (llmc/utils.h AtomicFile). Any browser and most
 Markdown viewers show them.
*/
#ifndef LLMC_PLOT_H
#define LLMC_PLOT_H

#include <math.h>
#include <stdio.h>
#include "../utils.h"

typedef struct { const char *name; const double *x, *y; int n; } PlotSeries;

#define PLOT_W 640
#define PLOT_H 400
#define PLOT_L 70
#define PLOT_R 170
#define PLOT_T 40
#define PLOT_B 50

static const char *const plot_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static inline void svg_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') { fputs("&lt;", f); } else if (*s == '>') { fputs("&gt;", f); } else if (*s == '&') { fputs("&amp;", f); }
        else { fputc(*s, f); }
    }
}

static inline void svg_text(FILE *f, double x, double y, const char *anchor, int size, const char *s) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\" font-family=\"sans-serif\">", x, y, anchor, size);
    svg_escape(f, s);
    fputs("</text>\n", f);
}

// "Nice" axis bounds and step covering [lo, hi] with about 5 ticks.
static inline void nice_axis(double *lo, double *hi, double *step) {
    if (!(*hi > *lo)) { *hi = *lo + 1; }
    double raw = (*hi - *lo) / 5, mag = pow(10, floor(log10(raw))), r = raw / mag;
    *step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
    *lo = floor(*lo / *step) * *step;
    *hi = ceil(*hi / *step) * *step;
}

static inline void svg_frame(FILE *f, const char *title, const char *xlabel, const char *ylabel, double ylo, double yhi, double ystep) {
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", PLOT_W, PLOT_H, PLOT_W, PLOT_H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    svg_text(f, (PLOT_L + PLOT_W - PLOT_R) / 2.0, 24, "middle", 15, title);
    svg_text(f, (PLOT_L + PLOT_W - PLOT_R) / 2.0, PLOT_H - 10, "middle", 12, xlabel);
    fprintf(f, "<g transform=\"translate(16,%d) rotate(-90)\">", (PLOT_T + PLOT_H - PLOT_B) / 2);
    svg_text(f, 0, 0, "middle", 12, ylabel);
    fputs("</g>\n", f);
    double ph = PLOT_H - PLOT_T - PLOT_B;
    for (double v = ylo; v <= yhi + ystep * 1e-6; v += ystep) {
        double y = PLOT_T + ph * (1 - (v - ylo) / (yhi - ylo));
        char lab[32];
        snprintf(lab, sizeof(lab), "%g", fabs(v) < ystep * 1e-6 ? 0.0 : v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", PLOT_L, y, PLOT_W - PLOT_R, y);
        svg_text(f, PLOT_L - 6, y + 4, "end", 11, lab);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", PLOT_L, PLOT_T, PLOT_W - PLOT_L - PLOT_R, PLOT_H - PLOT_T - PLOT_B);
}

static inline void svg_legend(FILE *f, const PlotSeries *s, int ns) {
    for (int i = 0; i < ns; i++) {
        double y = PLOT_T + 10 + 18 * i;
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", PLOT_W - PLOT_R + 10, y - 10, plot_colors[i % 8]);
        svg_text(f, PLOT_W - PLOT_R + 28, y, "start", 11, s[i].name);
    }
}

// Line chart of every series (x ascending within a series). logx: log2 x axis (sequence lengths);
// from_zero: the y axis starts at 0 (scores), else it fits the data (losses).
static inline void svg_line_chart(const char *path, const char *title, const char *xlabel, const char *ylabel,
                                  const PlotSeries *s, int ns, int logx, int from_zero) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < ns; i++) {
        for (int k = 0; k < s[i].n; k++) {
            double x = logx ? log2(s[i].x[k]) : s[i].x[k];
            if (!isfinite(x) || !isfinite(s[i].y[k])) { continue; }
            xlo = fmin(xlo, x); xhi = fmax(xhi, x); ylo = fmin(ylo, s[i].y[k]); yhi = fmax(yhi, s[i].y[k]);
        }
    }
    if (!isfinite(xlo)) { xlo = 0; xhi = 1; ylo = 0; yhi = 1; }
    if (!(xhi > xlo)) { xhi = xlo + 1; }
    if (from_zero && ylo > 0) { ylo = 0; }
    double ystep;
    nice_axis(&ylo, &yhi, &ystep);
    AtomicFile af;
    atomic_open(&af, path);
    FILE *f = af.f;
    svg_frame(f, title, xlabel, ylabel, ylo, yhi, ystep);
    double pw = PLOT_W - PLOT_L - PLOT_R, ph = PLOT_H - PLOT_T - PLOT_B;
#define PX(x) (PLOT_L + pw * (((logx) ? log2(x) : (x)) - xlo) / (xhi - xlo))
#define PY(y) (PLOT_T + ph * (1 - ((y) - ylo) / (yhi - ylo)))
    if (logx) {  // one tick per power of two in range
        for (double e = ceil(xlo); e <= xhi; e += 1) {
            char lab[32];
            snprintf(lab, sizeof(lab), "%g", exp2(e));
            svg_text(f, PX(exp2(e)), PLOT_H - PLOT_B + 16, "middle", 11, lab);
        }
    } else {
        double a = xlo, b = xhi, step;
        nice_axis(&a, &b, &step);
        for (double v = a; v <= b + step * 1e-6; v += step) {
            if (v < xlo - step * 1e-6 || v > xhi + step * 1e-6) { continue; }
            char lab[32];
            snprintf(lab, sizeof(lab), "%g", v);
            svg_text(f, PX(v), PLOT_H - PLOT_B + 16, "middle", 11, lab);
        }
    }
    for (int i = 0; i < ns; i++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", plot_colors[i % 8]);
        for (int k = 0; k < s[i].n; k++) { if (isfinite(s[i].y[k])) { fprintf(f, "%.1f,%.1f ", PX(s[i].x[k]), PY(s[i].y[k])); } }
        fputs("\"/>\n", f);
        if (s[i].n <= 32) {
            for (int k = 0; k < s[i].n; k++) {
                if (isfinite(s[i].y[k])) { fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s[i].x[k]), PY(s[i].y[k]), plot_colors[i % 8]); }
            }
        }
    }
#undef PX
#undef PY
    svg_legend(f, s, ns);
    fputs("</svg>\n", f);
    atomic_close(&af);
}

// Grouped bars: group g, series i has height s[i].y[g] (NaN = missing); s[i].n = number of groups.
static inline void svg_bar_chart(const char *path, const char *title, const char *ylabel, const char *const *groups,
                                 int ng, const PlotSeries *s, int ns) {
    double ylo = 0, yhi = 0, ystep;
    for (int i = 0; i < ns; i++) { for (int g = 0; g < ng; g++) { if (isfinite(s[i].y[g])) { yhi = fmax(yhi, s[i].y[g]); } } }
    nice_axis(&ylo, &yhi, &ystep);
    AtomicFile af;
    atomic_open(&af, path);
    FILE *f = af.f;
    svg_frame(f, title, "", ylabel, ylo, yhi, ystep);
    double pw = PLOT_W - PLOT_L - PLOT_R, ph = PLOT_H - PLOT_T - PLOT_B, gw = pw / (ng > 0 ? ng : 1), bw = gw * 0.8 / (ns > 0 ? ns : 1);
    for (int g = 0; g < ng; g++) {
        svg_text(f, PLOT_L + gw * (g + 0.5), PLOT_H - PLOT_B + 16, "middle", 10, groups[g]);
        for (int i = 0; i < ns; i++) {
            if (!isfinite(s[i].y[g])) { continue; }
            double h = ph * (s[i].y[g] - ylo) / (yhi - ylo);
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                    PLOT_L + gw * g + gw * 0.1 + bw * i, PLOT_T + ph - h, bw, h, plot_colors[i % 8]);
        }
    }
    svg_legend(f, s, ns);
    fputs("</svg>\n", f);
    atomic_close(&af);
}

#endif // LLMC_PLOT_H
