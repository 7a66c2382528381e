/* test_builtin_graders.c: conformance of the built-in grader plugins
 * (build/graders/<type>.so) against the reference fixtures
 * tests/fixtures/graders_*.jsonl made by tools/ref_graders.py from the
 * reference packages (rapidfuzz, sacrebleu, nltk, rouge-score) and from the
 * Python versions of the documented semantics.
 *
 * The plugins are loaded with dlopen exactly as a host would; this test is
 * its own small host (item_get / item_json over a jansson object), which is
 * what the ABI says a host offers. Checks:
 *   - every fixture case: the score within 1e-9 (or abstain / error /
 *     create() failure with the expected words in the message);
 *   - each fixture file holds at least 200 cases;
 *   - robustness: every plugin on empty, invalid UTF-8, 300 strings of
 *     random bytes and 1 MB inputs returns a valid status and a finite score;
 *   - thread safety: all fixture cases graded again from 2 threads at once,
 *     both walking the cases in order (so mostly grading the same case on
 *     the same state together), give the same statuses and scores.
 * METEOR cases that name a WordNet directory are left out (with a note) when
 * that directory is missing; tools/install_deps.sh installs wordnet-base.
 * RFT_BUILD (set by CTest) points at the build directory.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rft_grader.h"

/* ---- the test's host: an item is a JSON object plus scratch strings ---- */

struct rft_item {
    json_t *row;
    char *scratch[64];
    int n_scratch;
};

static json_t *path_get(json_t *v, const char *p) {
    while (v && *p) {
        if (*p == '[') {
            char *e;
            long i = strtol(p + 1, &e, 10);
            if (*e != ']' || !json_is_array(v)) return NULL;
            v = json_array_get(v, (size_t)i);
            p = e + 1;
        } else {
            size_t n = strcspn(p, ".[");
            char key[256];
            if (n >= sizeof key || !json_is_object(v)) return NULL;
            memcpy(key, p, n);
            key[n] = 0;
            v = json_object_get(v, key);
            p += n;
        }
        if (*p == '.') p++;
    }
    return v;
}

static const char *keep(rft_item *it, char *s) {
    if (it->n_scratch == 64) { free(s); return NULL; }
    it->scratch[it->n_scratch++] = s;
    return s;
}

static const char *host_item_get(const rft_item *cit, const char *path, size_t *len) {
    rft_item *it = (rft_item *)cit;
    json_t *v = path_get(it->row, path);
    if (!v) return NULL;
    if (json_is_string(v)) {
        if (len) *len = json_string_length(v);
        return json_string_value(v);
    }
    const char *s = keep(it, json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY));
    if (s && len) *len = strlen(s);
    return s;
}

static const char *host_item_json(const rft_item *cit, size_t *len) {
    rft_item *it = (rft_item *)cit;
    const char *s = keep(it, json_dumps(it->row, JSON_COMPACT));
    if (s && len) *len = strlen(s);
    return s;
}

static void host_log(const rft_host *h, int level, const char *msg) { fprintf(stderr, "[grader log %d] %s\n", level, msg); }

static const rft_host HOST = {RFT_GRADER_ABI_VERSION, host_item_get, host_item_json, host_log};

static void item_clear(rft_item *it) {
    for (int i = 0; i < it->n_scratch; i++) free(it->scratch[i]);
    it->n_scratch = 0;
}

/* ---- plugins ---- */

static char build_dir[1024];

typedef struct {
    char type[64];
    const rft_grader *g;
} plugin;
static plugin plugins[16];
static int n_plugins;

static const rft_grader *plugin_get(const char *type) {
    for (int i = 0; i < n_plugins; i++)
        if (!strcmp(plugins[i].type, type)) return plugins[i].g;
    char path[1200];
    snprintf(path, sizeof path, "%s/graders/%s.so", build_dir, type);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "FAIL dlopen %s: %s\n", path, dlerror()); return NULL; }
    const rft_grader *(*entry)(void) = (const rft_grader *(*)(void))dlsym(h, "rft_grader_v1");
    if (!entry) { fprintf(stderr, "FAIL %s: no rft_grader_v1\n", path); return NULL; }
    const rft_grader *g = entry();
    if (!g || g->abi_version != RFT_GRADER_ABI_VERSION || !g->create || !g->grade) {
        fprintf(stderr, "FAIL %s: bad descriptor\n", path);
        return NULL;
    }
    if (n_plugins < 16) {
        snprintf(plugins[n_plugins].type, sizeof plugins[n_plugins].type, "%s", type);
        plugins[n_plugins++].g = g;
    }
    return g;
}

/* ---- cases ---- */

typedef struct {
    char where[600];
    const rft_grader *g;
    void *state;
    json_t *item;
    char *out;
    size_t out_len;
    json_t *expect;
    double got[3];
    int status[3];
} tcase;

/* one state per distinct (grader, config), as a host creates one per grader */
typedef struct {
    const rft_grader *g;
    char *cfg;
    void *state;
} tstate;
static tstate states[4096];
static int n_states;

static tcase *cases;
static size_t n_cases, cap_cases;
static int failures, skipped_wordnet;

static int near(double a, double b) { return fabs(a - b) <= 1e-9; }

static void run_case(tcase *c, int slot) {
    rft_item it = {.row = c->item};
    rft_sample s = {.output_text = c->out, .output_len = c->out_len, .finished = 1};
    char err[512] = "";
    double score = NAN;
    c->status[slot] = c->g->grade(c->state, &s, &it, &score, err, sizeof err);
    c->got[slot] = score;
    item_clear(&it);
    if (slot == 0 && c->status[0] == RFT_ERROR && json_is_string(c->expect) &&
        !strcmp(json_string_value(c->expect), "error"))
        return;
    if (slot == 0 && c->status[0] == RFT_ERROR) fprintf(stderr, "  %s: grade error: %s\n", c->where, err);
}

static int check_case(tcase *c) {
    const char *e = json_is_string(c->expect) ? json_string_value(c->expect) : NULL;
    if (e && !strcmp(e, "abstain")) return c->status[0] == RFT_ABSTAIN;
    if (e && !strcmp(e, "error")) return c->status[0] == RFT_ERROR;
    if (!json_is_number(c->expect)) return 0;
    return c->status[0] == RFT_OK && isfinite(c->got[0]) && near(c->got[0], json_number_value(c->expect));
}

static char *hex_decode(const char *h, size_t *n) {
    size_t l = strlen(h) / 2;
    char *o = malloc(l + 1);
    for (size_t i = 0; i < l; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        o[i] = (char)v;
    }
    o[l] = 0;
    *n = l;
    return o;
}

static int load_fixture(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "FAIL cannot open %s\n", path); return -1; }
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    int lineno = 0, count = 0;
    while ((n = getline(&line, &lcap, f)) > 0) {
        lineno++;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) { fprintf(stderr, "FAIL %s:%d: bad JSON: %s\n", path, lineno, je.text); failures++; continue; }
        count++;
        const char *type = json_string_value(json_object_get(o, "grader"));
        json_t *expect = json_object_get(o, "expect");
        const rft_grader *g = type ? plugin_get(type) : NULL;
        if (!g) { failures++; json_decref(o); continue; }
        /* METEOR with WordNet needs Debian's wordnet-base (tools/install_deps.sh) */
        const char *wnd = json_string_value(json_object_get(json_object_get(o, "config"), "wordnet"));
        const char *es0 = json_string_value(expect);
        if (wnd && wnd[0] == '/' && !(es0 && !strcmp(es0, "create_error"))) {
            char probe[1200];
            snprintf(probe, sizeof probe, "%s/index.noun", wnd);
            if (access(probe, R_OK)) { skipped_wordnet++; json_decref(o); continue; }
        }
        char *cfg = json_dumps(json_object_get(o, "config"), JSON_COMPACT | JSON_SORT_KEYS);
        void *state = NULL;
        char err[512] = "";
        int rc = RFT_ERROR, cached = 0;
        for (int i = 0; i < n_states; i++)
            if (states[i].g == g && !strcmp(states[i].cfg, cfg)) { state = states[i].state; rc = RFT_OK; cached = 1; }
        if (!cached) rc = g->create(cfg, &HOST, &state, err, sizeof err);
        if (!cached && rc == RFT_OK && n_states < 4096) {
            states[n_states].g = g;
            states[n_states].cfg = cfg;
            states[n_states++].state = state;
            cfg = NULL;
        } else if (!cached && rc == RFT_OK) {
            fprintf(stderr, "FAIL %s:%d: too many distinct configs\n", path, lineno);
            failures++;
        }
        free(cfg);
        const char *es = json_string_value(expect);
        if (es && !strcmp(es, "create_error")) {
            const char *words = json_string_value(json_object_get(o, "error_contains"));
            if (rc != RFT_ERROR || (words && !strstr(err, words)) || !err[0]) {
                fprintf(stderr, "FAIL %s:%d: create() should fail (with '%s'), got rc=%d '%s'\n", path, lineno,
                        words ? words : "", rc, err);
                failures++;
            }
            json_decref(o);
            continue;
        }
        if (rc != RFT_OK) {
            fprintf(stderr, "FAIL %s:%d: create() failed: %s\n", path, lineno, err);
            failures++;
            json_decref(o);
            continue;
        }
        if (n_cases == cap_cases) {
            cap_cases = cap_cases ? 2 * cap_cases : 1024;
            cases = realloc(cases, cap_cases * sizeof *cases);
        }
        tcase *c = &cases[n_cases++];
        memset(c, 0, sizeof *c);
        snprintf(c->where, sizeof c->where, "%s:%d", path, lineno);
        c->g = g;
        c->state = state;
        c->item = json_incref(json_object_get(o, "item"));
        if (!c->item) c->item = json_object();
        const char *hex = json_string_value(json_object_get(o, "output_hex"));
        if (hex) c->out = hex_decode(hex, &c->out_len);
        else {
            json_t *ot = json_object_get(o, "output_text");
            c->out = strdup(json_string_value(ot) ? json_string_value(ot) : "");
            c->out_len = json_string_value(ot) ? json_string_length(ot) : 0;
        }
        c->expect = json_incref(expect);
        json_decref(o);
    }
    free(line);
    fclose(f);
    if (count < 200) {
        fprintf(stderr, "FAIL %s: %d cases (< 200)\n", path, count);
        failures++;
    }
    printf("%-50s %4d cases\n", path, count);
    return 0;
}

/* both threads walk all cases in the same order, so they mostly grade the
   same case, on the same state, at the same time */
static void *thread_main(void *arg) {
    int slot = (int)(size_t)arg;
    for (size_t i = 0; i < n_cases; i++) run_case(&cases[i], slot);
    return NULL;
}

/* robustness: odd inputs against every plugin, config input = output_text */
static void robustness(void) {
    static const struct { const char *type, *cfg; } cfgs[] = {
        {"string_check", "{\"input\":\"{{sample.output_text}}\",\"reference\":\"abc\",\"operation\":\"ilike\"}"},
        {"text_similarity", "{\"input\":\"{{sample.output_text}}\",\"reference\":\"the cat sat\",\"evaluation_metric\":\"fuzzy_match\"}"},
        {"text_similarity", "{\"input\":\"{{sample.output_text}}\",\"reference\":\"the cat sat\",\"evaluation_metric\":\"bleu\"}"},
        {"text_similarity", "{\"input\":\"{{sample.output_text}}\",\"reference\":\"the cat sat\",\"evaluation_metric\":\"gleu\"}"},
        {"text_similarity", "{\"input\":\"{{sample.output_text}}\",\"reference\":\"the cat sat\",\"evaluation_metric\":\"meteor\"}"},
        {"text_similarity", "{\"input\":\"{{sample.output_text}}\",\"reference\":\"the cat sat\",\"evaluation_metric\":\"rouge_l\"}"},
        {"text_similarity", "{\"input\":\"{{sample.output_text}}\",\"reference\":\"the cat sat\",\"evaluation_metric\":\"rouge_3\"}"},
        {"regex", "{\"input\":\"{{sample.output_text}}\",\"pattern\":\"(a+)+b\"}"},
        {"numeric", "{\"input\":\"{{sample.output_text}}\",\"reference\":\"42\"}"},
        {"json", "{\"input\":\"{{sample.output_text}}\",\"reference\":{\"a\":1},\"fields\":[\"a\"]}"},
        {"json", "{\"input\":\"{{sample.output_json.a}}\",\"reference\":{\"a\":1},\"fields\":[\"a\"]}"},
    };
    size_t big = 1 << 20;
    char *huge = malloc(big + 1);
    for (size_t i = 0; i < big; i++) huge[i] = "ab c1,.-e9/\xc3\xa9"[i % 13];
    huge[big] = 0;
    char *words = malloc(big + 1);
    for (size_t i = 0; i < big; i++) words[i] = (i % 7 == 6) ? ' ' : (char)('a' + (i * 2654435761u >> 7) % 26);
    words[big] = 0;
    const char *odd[] = {"", "\xff\xfe\xc3", "\xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf", "{\"a\": [1, {\"b\":", "{{item.x}}",
                         "1e999999 -0 1/0 0/0 ,,, 1,2,3 .5. --3 1e", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        const rft_grader *g = NULL;
        for (int i = 0; i < n_plugins; i++)
            if (!strcmp(plugins[i].type, cfgs[k].type)) g = plugins[i].g;
        if (!g) continue; /* only the graders the fixtures cover */
        void *st = NULL;
        char err[512];
        if (g->create(cfgs[k].cfg, &HOST, &st, err, sizeof err) != RFT_OK) {
            fprintf(stderr, "FAIL robustness create %s: %s\n", cfgs[k].cfg, err);
            failures++;
            continue;
        }
        size_t n_odd = sizeof odd / sizeof odd[0];
        char junk[700];
        for (size_t t = 0; t < n_odd + 2 + 300; t++) {
            const char *txt = t < n_odd ? odd[t] : t == n_odd ? huge : t == n_odd + 1 ? words : junk;
            if (t >= n_odd + 2) { /* random bytes, biased to UTF-8 lead/continuation bytes, digits and JSON */
                size_t len = (size_t)((t * 2654435761u) % (sizeof junk - 1));
                uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);
                for (size_t i = 0; i < len; i++) {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                    static const char alpha[] = "\xc3\xa9\xe6\x9d\xb1\xf0\x9f\x98\x80\x80\xbf\xff 09.,-/e{}[]\":<>\\aZ";
                    junk[i] = (x >> 40) % 4 ? alpha[(x >> 8) % (sizeof alpha - 1)] : (char)(x >> 24);
                    if (!junk[i]) junk[i] = ' ';
                }
                junk[len] = 0;
            }
            rft_item it = {.row = json_object()};
            rft_sample s = {.output_text = txt, .output_len = strlen(txt)};
            double sc = NAN;
            int rc = g->grade(st, &s, &it, &sc, err, sizeof err);
            if (!(rc == RFT_ABSTAIN || rc == RFT_ERROR || (rc == RFT_OK && isfinite(sc)))) {
                fprintf(stderr, "FAIL robustness %s on input %zu: rc=%d score=%g\n", cfgs[k].cfg, t, rc, sc);
                failures++;
            }
            item_clear(&it);
            json_decref(it.row);
        }
        if (g->destroy) g->destroy(st);
    }
    free(huge);
    free(words);
}

int main(void) {
    const char *b = getenv("RFT_BUILD");
    snprintf(build_dir, sizeof build_dir, "%s", b ? b : "build");
    DIR *d = opendir("tests/fixtures");
    if (!d) { fprintf(stderr, "FAIL: run from the source root (tests/fixtures)\n"); return 1; }
    char *names[64];
    int nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 64)
        if (!strncmp(e->d_name, "graders_", 8) && strstr(e->d_name, ".jsonl")) names[nn++] = strdup(e->d_name);
    closedir(d);
    for (int i = 0; i < nn; i++)
        for (int j = i + 1; j < nn; j++)
            if (strcmp(names[i], names[j]) > 0) { char *t = names[i]; names[i] = names[j]; names[j] = t; }
    if (nn == 0) { fprintf(stderr, "FAIL: no tests/fixtures/graders_*.jsonl\n"); return 1; }
    for (int i = 0; i < nn; i++) {
        char path[512];
        snprintf(path, sizeof path, "tests/fixtures/%s", names[i]);
        if (load_fixture(path)) failures++;
        free(names[i]);
    }
    int bad = 0;
    double max_diff = 0;
    for (size_t i = 0; i < n_cases; i++) {
        run_case(&cases[i], 0);
        if (json_is_number(cases[i].expect) && cases[i].status[0] == RFT_OK &&
            fabs(cases[i].got[0] - json_number_value(cases[i].expect)) > max_diff)
            max_diff = fabs(cases[i].got[0] - json_number_value(cases[i].expect));
        if (!check_case(&cases[i])) {
            char *es = json_dumps(cases[i].expect, JSON_ENCODE_ANY);
            if (bad < 30)
                fprintf(stderr, "FAIL %s: expected %s, got status %d score %.9f\n", cases[i].where, es,
                        cases[i].status[0], cases[i].got[0]);
            free(es);
            bad++;
        }
    }
    /* the same cases again, from 2 threads at once, on the same states */
    pthread_t th[2];
    for (size_t t = 0; t < 2; t++) pthread_create(&th[t], NULL, thread_main, (void *)(t + 1));
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    int racy = 0;
    for (size_t i = 0; i < n_cases; i++)
        if (cases[i].status[0] != cases[i].status[1] || cases[i].status[0] != cases[i].status[2] ||
            (cases[i].status[0] == RFT_OK && (cases[i].got[0] != cases[i].got[1] || cases[i].got[0] != cases[i].got[2]))) {
            if (racy < 10) fprintf(stderr, "FAIL %s: threaded run differs\n", cases[i].where);
            racy++;
        }
    robustness();
    failures += bad + racy;
    printf("%zu cases, %d wrong, %d differ when threaded; largest |score - reference| %.3g\n", n_cases, bad, racy,
           max_diff);
    if (skipped_wordnet)
        printf("NOTE: %d METEOR cases with WordNet not run: no WordNet database (apt-get install wordnet-base)\n",
               skipped_wordnet);
    for (int i = 0; i < n_states; i++) {
        if (states[i].g->destroy) states[i].g->destroy(states[i].state);
        free(states[i].cfg);
    }
    for (size_t i = 0; i < n_cases; i++) {
        json_decref(cases[i].item);
        json_decref(cases[i].expect);
        free(cases[i].out);
    }
    free(cases);
    return failures ? 1 : 0;
}
