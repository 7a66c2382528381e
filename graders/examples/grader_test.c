/* graders/examples/grader_test.c: a stand-alone unit-test harness for rft
 * grader plugins. Copy it next to your grader; it needs only rft_grader.h and
 * jansson (libjansson-dev), not rft. It loads the plugin the way rft does
 * (dlopen, rft_grader_v1, ABI check, create with a JSON config), offers the
 * same host functions (item_get with dotted paths and [index], strings
 * unquoted, other values as compact JSON; item_json; log), and grades every
 * case of a JSON Lines file:
 *
 *   {"item": {...}, "output_text": "...", "expect": 1.0}          a score
 *   {"item": {...}, "output_text": "...", "expect": "abstain"}    RFT_ABSTAIN
 *   {"item": {...}, "output_text": "...", "expect": "error"}      RFT_ERROR
 *   optional per case: "finished": false, "tokens": [1, 2, 3]
 *
 * Build and run:
 *   cc -O2 grader_test.c $(pkg-config --cflags --libs rft-grader jansson) -ldl -o grader_test
 *   ./grader_test ./libmine.so cases.jsonl [--config '{"tolerance": 0.01}'] [--tol 1e-9] [-v]
 * Exit status 0 when every case passes, 1 when one fails, 2 on bad usage. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rft_grader.h"

/* ---- the host side: an item is a JSON row plus the strings handed out ---- */
struct rft_item {
    json_t *row;
    char *strings[256]; /* freed after each grade() */
    int n_strings;
};

static char *keep(rft_item *it, char *s) {
    if (s && it->n_strings < 256) it->strings[it->n_strings++] = s; /* beyond 256 in one call: leaked, still valid */
    return s;
}

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put_str(sbuf *b, const char *s, size_t n) {
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\', tmp[1] = (char)c;
            put(b, tmp, 2);
        } else if (c == '\n') put(b, "\\n", 2);
        else if (c == '\r') put(b, "\\r", 2);
        else if (c == '\t') put(b, "\\t", 2);
        else if (c == '\b') put(b, "\\b", 2);
        else if (c == '\f') put(b, "\\f", 2);
        else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            put(b, tmp, 6);
        } else put(b, (const char *)&s[i], 1);
    }
    put(b, "\"", 1);
}

/* compact JSON as rft writes it: reals in their shortest round-trip form */
static void put_json(sbuf *b, json_t *v) {
    char tmp[40];
    const char *k;
    json_t *x;
    int first = 1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        put(b, "{", 1);
        json_object_foreach(v, k, x) {
            if (!first) put(b, ",", 1);
            first = 0;
            put_str(b, k, strlen(k));
            put(b, ":", 1);
            put_json(b, x);
        }
        put(b, "}", 1);
        break;
    case JSON_ARRAY:
        put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) put(b, ",", 1);
            put_json(b, json_array_get(v, i));
        }
        put(b, "]", 1);
        break;
    case JSON_STRING: put_str(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        put(b, tmp, strlen(tmp));
        break;
    case JSON_REAL:
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, json_real_value(v));
            if (strtod(tmp, NULL) == json_real_value(v)) break;
        }
        if (!strpbrk(tmp, ".eEin")) strcat(tmp, ".0");
        put(b, tmp, strlen(tmp));
        break;
    case JSON_TRUE: put(b, "true", 4); break;
    case JSON_FALSE: put(b, "false", 5); break;
    case JSON_NULL: put(b, "null", 4); break;
    }
}

static json_t *lookup(json_t *v, const char *path) {
    const char *p = path;
    while (v && *p) {
        if (*p == '[') {
            char *end;
            long long i = strtoll(p + 1, &end, 10);
            if (end == p + 1 || *end != ']' || !json_is_array(v)) return NULL;
            if (i < 0) i += (long long)json_array_size(v);
            v = i >= 0 ? json_array_get(v, (size_t)i) : NULL;
            p = end + 1;
            if (*p == '.') p++;
            continue;
        }
        size_t n = strcspn(p, ".[");
        if (!n) return NULL;
        if (json_is_object(v)) {
            v = json_object_getn(v, p, n);
        } else if (json_is_array(v)) {
            char *end;
            long long i = strtoll(p, &end, 10);
            if (end != p + n || i < 0) return NULL;
            v = json_array_get(v, (size_t)i);
        } else {
            return NULL;
        }
        p += n;
        if (*p == '.' && !*++p) return NULL;
    }
    return v;
}

static const char *h_item_get(const rft_item *item, const char *path, size_t *len) {
    json_t *v = lookup(item->row, path);
    if (!v) return NULL;
    if (json_is_string(v)) {
        if (len) *len = json_string_length(v);
        return json_string_value(v);
    }
    sbuf b = {0};
    put_json(&b, v);
    if (len) *len = b.n;
    return keep((rft_item *)item, b.p);
}

static const char *h_item_json(const rft_item *item, size_t *len) {
    sbuf b = {0};
    put_json(&b, item->row);
    if (len) *len = b.n;
    return keep((rft_item *)item, b.p);
}

static int verbose = 0;
static void h_log(const rft_host *host, int level, const char *msg) {
    (void)host;
    if (verbose || level >= RFT_LOG_WARN) fprintf(stderr, "grader log (%d): %s\n", level, msg);
}

static const rft_host host = {RFT_GRADER_ABI_VERSION, h_item_get, h_item_json, h_log};

int main(int argc, char **argv) {
    const char *plugin = NULL, *cases = NULL, *config = "{}";
    double tol = 1e-9;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc) tol = atof(argv[++i]);
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else if (!plugin) plugin = argv[i];
        else if (!cases) cases = argv[i];
        else plugin = NULL, i = argc;
    }
    if (!plugin || !cases) {
        fprintf(stderr, "usage: grader_test PLUGIN.so CASES.jsonl [--config JSON] [--tol X] [-v]\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s%s", strchr(plugin, '/') ? "" : "./", plugin);
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        fprintf(stderr, "%s: cannot load: %s\n", plugin, dlerror());
        return 2;
    }
    const rft_grader *(*entry)(void) = (const rft_grader *(*)(void))dlsym(dl, "rft_grader_v1");
    const rft_grader *g = entry ? entry() : NULL;
    if (!g) {
        fprintf(stderr, "%s: no rft_grader_v1 symbol (or it returned NULL)\n", plugin);
        return 2;
    }
    if (g->abi_version != RFT_GRADER_ABI_VERSION) {
        fprintf(stderr, "%s: ABI version %u, this harness is version %d\n", plugin, g->abi_version,
                RFT_GRADER_ABI_VERSION);
        return 2;
    }
    char err[1024] = "";
    void *state = NULL;
    if (g->create(config, &host, &state, err, sizeof err) != RFT_OK) {
        fprintf(stderr, "%s: create failed: %s\n", plugin, err);
        return 2;
    }
    FILE *f = fopen(cases, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", cases);
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, n = 0, failed = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        json_error_t je;
        json_t *c = json_loads(line, 0, &je);
        json_t *item = json_object_get(c, "item"), *text = json_object_get(c, "output_text");
        json_t *expect = json_object_get(c, "expect"), *tokens = json_object_get(c, "tokens");
        if (!c || !json_is_object(item) || !json_is_string(text) || !expect) {
            fprintf(stderr, "%s:%d: need {\"item\": {...}, \"output_text\": \"...\", \"expect\": ...}\n", cases,
                    lineno);
            return 2;
        }
        int32_t tok[4096];
        size_t nt = 0;
        for (; tokens && nt < json_array_size(tokens) && nt < 4096; nt++)
            tok[nt] = (int32_t)json_integer_value(json_array_get(tokens, nt));
        json_t *fin = json_object_get(c, "finished");
        rft_sample s = {json_string_value(text), json_string_length(text), nt ? tok : NULL, nt,
                        fin ? json_is_true(fin) : 1};
        rft_item it = {.row = item};
        double score = NAN;
        err[0] = 0;
        int st = g->grade(state, &s, &it, &score, err, sizeof err);
        for (int i = 0; i < it.n_strings; i++) free(it.strings[i]);
        char got[1200], want[64];
        if (st == RFT_OK) snprintf(got, sizeof got, "%.17g", score);
        else if (st == RFT_ABSTAIN) snprintf(got, sizeof got, "abstain");
        else if (st == RFT_ERROR) snprintf(got, sizeof got, "error (%s)", err);
        else snprintf(got, sizeof got, "invalid status %d", st);
        int pass;
        if (json_is_number(expect)) {
            double w = json_number_value(expect);
            snprintf(want, sizeof want, "%.17g", w);
            pass = st == RFT_OK && isfinite(score) && fabs(score - w) <= tol;
        } else {
            snprintf(want, sizeof want, "%s", json_string_value(expect) ? json_string_value(expect) : "?");
            pass = (!strcmp(want, "abstain") && st == RFT_ABSTAIN) || (!strcmp(want, "error") && st == RFT_ERROR);
        }
        n++;
        if (!pass) failed++;
        if (!pass || verbose)
            printf("%s:%d: %s: got %s, want %s\n", cases, lineno, pass ? "pass" : "FAIL", got, want);
        json_decref(c);
    }
    free(line);
    fclose(f);
    if (g->destroy) g->destroy(state);
    printf("%s: %d cases, %d passed, %d failed\n", cases, n, n - failed, failed);
    return failed ? 1 : 0;
}
