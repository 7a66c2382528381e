/* text_similarity.c: the built-in `text_similarity` grader (OpenAI text
 * similarity semantics): a similarity in [0, 1] between the expanded input
 * and the expanded reference.
 *
 * YAML:
 *   type: text_similarity
 *   input: "{{sample.output_text}}"     template (required)
 *   reference: "{{item.reference}}"     template (required)
 *   evaluation_metric: fuzzy_match      (required; `metric` is accepted too)
 *   pass_threshold: 0.8                 optional: score 1 when the metric is
 *                                       >= the threshold, else 0
 *
 * Metrics, each equal (within 1e-9, tests/fixtures/graders_<metric>.jsonl)
 * to its reference package; text is decoded from UTF-8 (invalid bytes read
 * as U+FFFD) and handled as Unicode code points like Python strings:
 *   fuzzy_match  rapidfuzz.fuzz.ratio(input, reference) / 100: the Indel
 *                normalized similarity 1 - (n + m - 2 LCS) / (n + m) over
 *                code points (1 when both are empty).
 *   bleu         sacrebleu.sentence_bleu(input, [reference]).score / 100:
 *                the 13a tokenizer (mteval-v13a), n-grams 1..4,
 *                smooth_method "exp", effective order, brevity penalty.
 *   gleu         nltk sentence_gleu([reference.split()], input.split()):
 *                Google BLEU over n-grams 1..4, tokens split on whitespace
 *                (Python str.split()), case kept.
 *   meteor       nltk meteor_score([reference.split()], input.split()) with
 *                alpha 0.9, beta 3, gamma 0.5, words lowered (str.lower),
 *                matched in nltk's three stages: exact, Porter stem (nltk's
 *                PorterStemmer, NLTK extensions), WordNet synonyms (of the
 *                stems, as nltk does; see wordnet.h). The WordNet 3.0
 *                database is read from the `wordnet` key (a directory with
 *                index.noun, data.noun, noun.exc...), or with `wordnet: auto`
 *                (the default) from $RFT_WORDNET or /usr/share/wordnet
 *                (Debian/Ubuntu package wordnet-base); when auto finds none,
 *                a warning is logged and the synonym stage is off, as it is
 *                with `wordnet: none` (scores then equal nltk's with a
 *                WordNet that knows no synonyms, and can be lower).
 *   rouge_1..rouge_5, rouge_l
 *                rouge_score RougeScorer([...]).score(reference,
 *                input).fmeasure with its default tokenizer (lowercase,
 *                every run of characters other than [a-z0-9] is a separator,
 *                no stemming); rouge_l is the LCS F-measure.
 * Limits: fuzzy_match and rouge_l cost O(n m / 64); inputs whose product
 * passes 2^36 (e.g. two texts of 260k code points) are a grader error rather
 * than a stall.
 */
#include "builtin_common.h"
#include "wordnet.h"

#include <pthread.h>

#define G "text_similarity"
#define GB_LCS_MAX_WORK (1ull << 36)

/* WordNet databases are shared by every state of the process that names the
   same directory (loading one takes ~50 ms and ~20 MB). */
static struct wn_shared {
    char dir[1024];
    wn_db *db;
    int refs;
    struct wn_shared *next;
} *wn_cache;
static pthread_mutex_t wn_lock = PTHREAD_MUTEX_INITIALIZER;

static wn_db *wn_acquire(const char *dir, char *err, size_t cap) {
    pthread_mutex_lock(&wn_lock);
    struct wn_shared *e;
    for (e = wn_cache; e; e = e->next)
        if (!strcmp(e->dir, dir)) break;
    if (!e && (e = calloc(1, sizeof *e))) {
        snprintf(e->dir, sizeof e->dir, "%s", dir);
        if (!(e->db = wn_open(dir, err, cap))) { free(e); e = NULL; }
        else { e->next = wn_cache; wn_cache = e; }
    } else if (!e) gb_err(err, cap, "out of memory");
    if (e) e->refs++;
    pthread_mutex_unlock(&wn_lock);
    return e ? e->db : NULL;
}

static void wn_release(wn_db *db) {
    if (!db) return;
    pthread_mutex_lock(&wn_lock);
    for (struct wn_shared **pe = &wn_cache; *pe; pe = &(*pe)->next)
        if ((*pe)->db == db) {
            if (--(*pe)->refs == 0) {
                struct wn_shared *e = *pe;
                *pe = e->next;
                wn_free(e->db);
                free(e);
            }
            break;
        }
    pthread_mutex_unlock(&wn_lock);
}

enum { M_FUZZY, M_BLEU, M_GLEU, M_METEOR, M_ROUGE_N, M_ROUGE_L };

typedef struct {
    const rft_host *host;
    gb_tmpl input, reference;
    int metric, rouge_n;
    int has_threshold;
    double threshold;
    wn_db *wn; /* meteor's synonym stage; NULL: off */
} ts_state;

static void ts_destroy(void *p) {
    ts_state *s = p;
    if (!s) return;
    gb_tmpl_free(&s->input);
    gb_tmpl_free(&s->reference);
    wn_release(s->wn);
    free(s);
}

static int ts_create(const char *config_json, const rft_host *host, void **state, char *err, size_t cap) {
    static const char *const keys[] = {"input", "reference", "evaluation_metric", "metric", "pass_threshold", "wordnet",
                                       "name", NULL};
    *state = NULL;
    json_t *cfg = gb_cfg_parse(config_json, G, err, cap);
    if (!cfg) return RFT_ERROR;
    ts_state *s = calloc(1, sizeof *s);
    const char *in = NULL, *ref = NULL, *m = NULL, *m2 = NULL, *nm = NULL, *wn = NULL;
    int rc = RFT_ERROR;
    if (!s) { gb_err(err, cap, G ": out of memory"); goto out; }
    s->host = host;
    if (gb_cfg_keys(cfg, G, keys, err, cap) || gb_cfg_str(cfg, G, "input", 1, NULL, &in, err, cap) ||
        gb_cfg_str(cfg, G, "reference", 1, NULL, &ref, err, cap) ||
        gb_cfg_str(cfg, G, "evaluation_metric", 0, NULL, &m, err, cap) ||
        gb_cfg_str(cfg, G, "metric", 0, NULL, &m2, err, cap) || gb_cfg_str(cfg, G, "name", 0, NULL, &nm, err, cap) ||
        gb_cfg_str(cfg, G, "wordnet", 0, NULL, &wn, err, cap))
        goto out;
    if (m && m2 && strcmp(m, m2)) { gb_err(err, cap, G ": keys 'evaluation_metric' and 'metric' disagree"); goto out; }
    if (!m) m = m2;
    if (!m) { gb_err(err, cap, G ": missing required key 'evaluation_metric'"); goto out; }
    if (!strcmp(m, "fuzzy_match")) s->metric = M_FUZZY;
    else if (!strcmp(m, "bleu")) s->metric = M_BLEU;
    else if (!strcmp(m, "gleu")) s->metric = M_GLEU;
    else if (!strcmp(m, "meteor")) s->metric = M_METEOR;
    else if (!strcmp(m, "rouge_l")) s->metric = M_ROUGE_L;
    else if (!strncmp(m, "rouge_", 6) && m[6] >= '1' && m[6] <= '5' && !m[7]) {
        s->metric = M_ROUGE_N;
        s->rouge_n = m[6] - '0';
    } else {
        gb_err(err, cap,
               G ": key 'evaluation_metric': unknown metric '%s' (fuzzy_match, bleu, gleu, meteor, rouge_1..rouge_5, "
                 "rouge_l)", m);
        goto out;
    }
    if (wn && s->metric != M_METEOR) { gb_err(err, cap, G ": key 'wordnet' applies to the meteor metric only"); goto out; }
    if (s->metric == M_METEOR && (!wn || strcmp(wn, "none"))) {
        const char *dir = wn && strcmp(wn, "auto") ? wn : NULL;
        char probe[4200];
        if (!dir) { /* auto: $RFT_WORDNET, else Debian's wordnet-base */
            const char *env = getenv("RFT_WORDNET");
            dir = env && *env ? env : "/usr/share/wordnet";
            snprintf(probe, sizeof probe, "%s/index.noun", dir);
            if (access(probe, R_OK)) dir = NULL;
        }
        if (dir) {
            char werr[512];
            if (!(s->wn = wn_acquire(dir, werr, sizeof werr))) { gb_err(err, cap, G ": key 'wordnet': %s", werr); goto out; }
        } else if (host && host->log)
            host->log(host, RFT_LOG_WARN,
                      G ": meteor without WordNet (not found in $RFT_WORDNET or /usr/share/wordnet): the synonym "
                        "stage is off");
    }
    if (json_object_get(cfg, "pass_threshold")) {
        s->has_threshold = 1;
        if (gb_cfg_num(cfg, G, "pass_threshold", 0, &s->threshold, err, cap)) goto out;
    }
    if (gb_tmpl_parse(&s->input, in, G, "input", err, cap)) goto out;
    if (gb_tmpl_parse(&s->reference, ref, G, "reference", err, cap)) goto out;
    *state = s;
    s = NULL;
    rc = RFT_OK;
out:
    ts_destroy(s);
    json_decref(cfg);
    return rc;
}

/* ---------------------------------------------------------------- text */

typedef struct {
    uint32_t *cp; /* code points (owned) */
    size_t n;
    size_t *tok_start, *tok_len; /* tokens as spans of cp */
    size_t ntok;
    uint32_t *ids; /* token ids (shared interner) */
} ts_text;

static void text_free(ts_text *t) {
    free(t->cp); free(t->tok_start); free(t->tok_len); free(t->ids);
    memset(t, 0, sizeof *t);
}

/* Tokens = maximal runs of code points for which keep(c) holds. */
static int text_split(ts_text *t, int (*sep)(uint32_t)) {
    t->tok_start = malloc((t->n / 1 + 1) * sizeof *t->tok_start);
    t->tok_len = malloc((t->n + 1) * sizeof *t->tok_len);
    if (!t->tok_start || !t->tok_len) return -1;
    t->ntok = 0;
    size_t i = 0;
    while (i < t->n) {
        while (i < t->n && sep(t->cp[i])) i++;
        if (i >= t->n) break;
        size_t j = i;
        while (j < t->n && !sep(t->cp[j])) j++;
        t->tok_start[t->ntok] = i;
        t->tok_len[t->ntok] = j - i;
        t->ntok++;
        i = j;
    }
    return 0;
}

/* appends code points to a growable u32 array */
typedef struct {
    uint32_t *p;
    size_t n, cap;
    int oom;
} u32v;

static void u32v_push(u32v *v, uint32_t c) {
    if (v->oom) return;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        uint32_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) { v->oom = 1; return; }
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = c;
}

/* str.replace(pat, rep) on code points (pat, rep ASCII) */
static int replace_all(uint32_t **s, size_t *n, const char *pat, const char *rep) {
    size_t pl = strlen(pat), rl = strlen(rep);
    u32v o = {0};
    size_t i = 0;
    while (i < *n) {
        size_t k = 0;
        if (i + pl <= *n)
            while (k < pl && (*s)[i + k] == (unsigned char)pat[k]) k++;
        if (k == pl && pl) {
            for (size_t r = 0; r < rl; r++) u32v_push(&o, (unsigned char)rep[r]);
            i += pl;
        } else u32v_push(&o, (*s)[i++]);
    }
    if (o.oom) { free(o.p); return -1; }
    free(*s);
    *s = o.p;
    *n = o.n;
    return 0;
}

static int isdig(uint32_t c) { return c >= '0' && c <= '9'; }

/* sacrebleu's 13a tokenizer (Tokenizer13a + TokenizerRegexp), applied to
   sent.rstrip(); result re-split on whitespace by text_split. */
static int tok13a(ts_text *t) {
    size_t n = t->n;
    while (n > 0 && gb_isspace(t->cp[n - 1])) n--;
    t->n = n;
    if (replace_all(&t->cp, &t->n, "<skipped>", "") || replace_all(&t->cp, &t->n, "-\n", "") ||
        replace_all(&t->cp, &t->n, "\n", " "))
        return -1;
    int amp = 0;
    for (size_t i = 0; i < t->n; i++) amp |= t->cp[i] == '&';
    if (amp && (replace_all(&t->cp, &t->n, "&quot;", "\"") || replace_all(&t->cp, &t->n, "&amp;", "&") ||
                replace_all(&t->cp, &t->n, "&lt;", "<") || replace_all(&t->cp, &t->n, "&gt;", ">")))
        return -1;
    /* pass 1: ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> ' \1 ' */
    u32v a = {0};
    for (int k = 0; k < 3; k++) u32v_push(&a, ' ');
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->cp[i];
        int hit = (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
                  (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == 0x2F;
        if (hit) { u32v_push(&a, ' '); u32v_push(&a, c); u32v_push(&a, ' '); }
        else u32v_push(&a, c);
    }
    for (int k = 0; k < 3; k++) u32v_push(&a, ' '); /* f' {line} ', each space padded by pass 1 */
    /* pass 2: ([^0-9])([\.,]) -> '\1 \2 ' (non-overlapping, left to right) */
    u32v b = {0};
    for (size_t i = 0; i < a.n;) {
        if (i + 1 < a.n && !isdig(a.p[i]) && (a.p[i + 1] == '.' || a.p[i + 1] == ',')) {
            u32v_push(&b, a.p[i]); u32v_push(&b, ' '); u32v_push(&b, a.p[i + 1]); u32v_push(&b, ' ');
            i += 2;
        } else u32v_push(&b, a.p[i++]);
    }
    /* pass 3: ([\.,])([^0-9]) -> ' \1 \2' */
    u32v c3 = {0};
    for (size_t i = 0; i < b.n;) {
        if (i + 1 < b.n && (b.p[i] == '.' || b.p[i] == ',') && !isdig(b.p[i + 1])) {
            u32v_push(&c3, ' '); u32v_push(&c3, b.p[i]); u32v_push(&c3, ' '); u32v_push(&c3, b.p[i + 1]);
            i += 2;
        } else u32v_push(&c3, b.p[i++]);
    }
    /* pass 4: ([0-9])(-) -> '\1 \2 ' */
    u32v d = {0};
    for (size_t i = 0; i < c3.n;) {
        if (i + 1 < c3.n && isdig(c3.p[i]) && c3.p[i + 1] == '-') {
            u32v_push(&d, c3.p[i]); u32v_push(&d, ' '); u32v_push(&d, '-'); u32v_push(&d, ' ');
            i += 2;
        } else u32v_push(&d, c3.p[i++]);
    }
    int oom = a.oom || b.oom || c3.oom || d.oom;
    free(a.p); free(b.p); free(c3.p);
    if (oom) { free(d.p); return -1; }
    free(t->cp);
    t->cp = d.p;
    t->n = d.n;
    return text_split(t, gb_isspace);
}

static int rouge_sep(uint32_t c) { return !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')); }

/* rouge_score's tokenizer: text.lower(), [^a-z0-9]+ -> ' ', split. Only
   A-Z, U+212A (KELVIN SIGN -> k) and U+0130 (-> i U+0307) lower into
   [a-z]; everything else outside [a-z0-9] is a separator. */
static int tok_rouge(ts_text *t) {
    u32v o = {0};
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->cp[i];
        if (c >= 'A' && c <= 'Z') u32v_push(&o, c + 32);
        else if (c == 0x212A) u32v_push(&o, 'k');
        else if (c == 0x130) { u32v_push(&o, 'i'); u32v_push(&o, ' '); }
        else u32v_push(&o, c);
    }
    if (o.oom) { free(o.p); return -1; }
    free(t->cp);
    t->cp = o.p;
    t->n = o.n;
    return text_split(t, rouge_sep);
}

/* gives tokens of a and b ids from one interner */
static int text_ids(ts_text *a, ts_text *b, gb_intern *in) {
    if (gb_intern_init(in, a->ntok + b->ntok)) return -1;
    ts_text *ts[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        ts[k]->ids = malloc((ts[k]->ntok + 1) * sizeof *ts[k]->ids);
        if (!ts[k]->ids) return -1;
        for (size_t i = 0; i < ts[k]->ntok; i++)
            ts[k]->ids[i] = gb_intern_id(in, ts[k]->cp + ts[k]->tok_start[i], ts[k]->tok_len[i], 1);
    }
    return 0;
}

/* n-gram statistics of order k: *total_a, *total_b = n-gram counts,
   *overlap = sum over n-grams of min(count in a, count in b). */
static int ngram_stats(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t k, long *total_a,
                       long *total_b, long *overlap) {
    size_t ga = na >= k ? na - k + 1 : 0, gbn = nb >= k ? nb - k + 1 : 0;
    *total_a = (long)ga;
    *total_b = (long)gbn;
    *overlap = 0;
    if (!ga || !gbn) return 0;
    gb_intern in;
    if (gb_intern_init(&in, ga + gbn)) return -1;
    long *ca = calloc(ga + gbn, sizeof *ca), *cb = calloc(ga + gbn, sizeof *cb);
    if (!ca || !cb) { free(ca); free(cb); gb_intern_free(&in); return -1; }
    for (size_t i = 0; i < ga; i++) ca[gb_intern_id(&in, a + i, k, 1)]++;
    for (size_t i = 0; i < gbn; i++) cb[gb_intern_id(&in, b + i, k, 1)]++;
    for (size_t id = 0; id < in.n; id++) *overlap += ca[id] < cb[id] ? ca[id] : cb[id];
    free(ca); free(cb);
    gb_intern_free(&in);
    return 0;
}

static double fmeasure(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }

/* ---------------------------------------------------------------- Porter */

/* nltk.stem.porter.PorterStemmer(mode=NLTK_EXTENSIONS).stem, on code points. */
typedef struct {
    uint32_t *s;
    size_t n;
} word;

static int p_vowel(uint32_t c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

static int p_cons(const uint32_t *w, size_t i) {
    if (p_vowel(w[i])) return 0;
    if (w[i] == 'y') {
        int negate = 0;
        while (i > 0 && w[i] == 'y') { negate = !negate; i--; }
        return (!p_vowel(w[i])) != negate;
    }
    return 1;
}

static int p_measure(const uint32_t *w, size_t n) {
    int m = 0, prev = 0;
    for (size_t i = 0; i < n; i++) {
        int f;
        if (p_vowel(w[i])) f = 0;
        else if (w[i] == 'y') f = i == 0 ? 1 : !prev;
        else f = 1;
        if (i > 0 && !prev && f) m++;
        prev = f;
    }
    return m;
}

static int p_has_vowel(const uint32_t *w, size_t n) {
    int prev = 0;
    for (size_t i = 0; i < n; i++) {
        int f;
        if (p_vowel(w[i])) f = 0;
        else if (w[i] == 'y') f = i == 0 ? 1 : !prev;
        else f = 1;
        if (!f) return 1;
        prev = f;
    }
    return 0;
}

static int p_double_cons(const uint32_t *w, size_t n) { return n >= 2 && w[n - 1] == w[n - 2] && p_cons(w, n - 1); }

static int p_cvc(const uint32_t *w, size_t n) {
    if (n >= 3 && p_cons(w, n - 3) && !p_cons(w, n - 2) && p_cons(w, n - 1) && w[n - 1] != 'w' && w[n - 1] != 'x' &&
        w[n - 1] != 'y')
        return 1;
    return n == 2 && !p_cons(w, 0) && p_cons(w, 1);
}

static int p_ends(const word *w, const char *suf) {
    size_t k = strlen(suf);
    if (k > w->n) return 0;
    for (size_t i = 0; i < k; i++)
        if (w->s[w->n - k + i] != (unsigned char)suf[i]) return 0;
    return 1;
}

/* w = w[:-cut] + rep (w->s has room) */
static void p_set(word *w, size_t cut, const char *rep) {
    w->n -= cut;
    for (const char *r = rep; *r; r++) w->s[w->n++] = (unsigned char)*r;
}

enum { C_NONE, C_M0, C_M1, C_ION, C_LOGI };

typedef struct {
    const char *suf, *rep;
    int cond;
} p_rule;

/* _apply_rule_list for plain suffix rules: the first rule whose suffix
   matches decides (condition fails: the word is returned unchanged). */
static void p_rules(word *w, const p_rule *r, size_t nr) {
    for (size_t i = 0; i < nr; i++) {
        if (!p_ends(w, r[i].suf)) continue;
        size_t k = strlen(r[i].suf), sn = w->n - k;
        int ok;
        switch (r[i].cond) {
        case C_NONE: ok = 1; break;
        case C_M0: ok = p_measure(w->s, sn) > 0; break;
        case C_M1: ok = p_measure(w->s, sn) > 1; break;
        case C_ION: ok = p_measure(w->s, sn) > 1 && (w->s[sn - 1] == 's' || w->s[sn - 1] == 't'); break;
        default: ok = p_measure(w->s, w->n - 3) > 0; break; /* logi: word[:-3] */
        }
        if (ok) p_set(w, k, r[i].rep);
        return;
    }
}

static void p_step1b(word *w) {
    if (p_ends(w, "ied")) { p_set(w, 3, w->n == 4 ? "ie" : "i"); return; }
    if (p_ends(w, "eed")) {
        if (p_measure(w->s, w->n - 3) > 0) p_set(w, 3, "ee");
        return;
    }
    size_t k = 0;
    if (p_ends(w, "ed") && p_has_vowel(w->s, w->n - 2)) k = 2;
    else if (p_ends(w, "ing") && p_has_vowel(w->s, w->n - 3)) k = 3;
    if (!k) return;
    w->n -= k; /* intermediate stem */
    if (p_ends(w, "at")) { p_set(w, 2, "ate"); return; }
    if (p_ends(w, "bl")) { p_set(w, 2, "ble"); return; }
    if (p_ends(w, "iz")) { p_set(w, 2, "ize"); return; }
    uint32_t last = w->s[w->n - 1];
    if (p_double_cons(w->s, w->n)) {
        if (last != 'l' && last != 's' && last != 'z') w->n -= 1;
        return;
    }
    if (p_ends(w, "*d")) { /* nltk compares the literal suffix "*d" too */
        w->n -= 2;
        w->s[w->n++] = last;
        return;
    }
    if (p_measure(w->s, w->n) == 1 && p_cvc(w->s, w->n)) p_set(w, 0, "e");
}

static void p_step2(word *w) {
    static const p_rule r[] = {
        {"ational", "ate", C_M0}, {"tional", "tion", C_M0}, {"enci", "ence", C_M0}, {"anci", "ance", C_M0},
        {"izer", "ize", C_M0},    {"bli", "ble", C_M0},     {"alli", "al", C_M0},   {"entli", "ent", C_M0},
        {"eli", "e", C_M0},       {"ousli", "ous", C_M0},   {"ization", "ize", C_M0}, {"ation", "ate", C_M0},
        {"ator", "ate", C_M0},    {"alism", "al", C_M0},    {"iveness", "ive", C_M0}, {"fulness", "ful", C_M0},
        {"ousness", "ous", C_M0}, {"aliti", "al", C_M0},    {"iviti", "ive", C_M0}, {"biliti", "ble", C_M0},
        {"fulli", "ful", C_M0},   {"logi", "log", C_LOGI},
    };
    while (p_ends(w, "alli") && p_measure(w->s, w->n - 4) > 0) p_set(w, 4, "al");
    p_rules(w, r, sizeof r / sizeof r[0]);
}

static const char *const P_POOL[][2] = {
    {"sky", "sky"},         {"skies", "sky"},       {"dying", "die"},       {"lying", "lie"},
    {"tying", "tie"},       {"news", "news"},       {"innings", "inning"},  {"inning", "inning"},
    {"outings", "outing"},  {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
    {"howe", "howe"},       {"proceed", "proceed"}, {"exceed", "exceed"},   {"succeed", "succeed"},
};

/* stems w in place; w->s must have room for w->n + 2 code points */
static void porter_stem(word *w, size_t orig_len) {
    for (size_t k = 0; k < sizeof P_POOL / sizeof P_POOL[0]; k++) {
        size_t l = strlen(P_POOL[k][0]);
        if (l == w->n && p_ends(w, P_POOL[k][0])) { w->n = 0; p_set(w, 0, P_POOL[k][1]); return; }
    }
    if (orig_len <= 2) return;
    /* step 1a */
    if (p_ends(w, "ies") && w->n == 4) p_set(w, 3, "ie");
    else {
        static const p_rule r1a[] = {{"sses", "ss", C_NONE}, {"ies", "i", C_NONE}, {"ss", "ss", C_NONE}, {"s", "", C_NONE}};
        p_rules(w, r1a, 4);
    }
    p_step1b(w);
    /* step 1c: y -> i when the stem is longer than 1 and ends in a consonant */
    if (p_ends(w, "y") && w->n - 1 > 1 && p_cons(w->s, w->n - 2)) w->s[w->n - 1] = 'i';
    p_step2(w);
    static const p_rule r3[] = {{"icate", "ic", C_M0}, {"ative", "", C_M0}, {"alize", "al", C_M0}, {"iciti", "ic", C_M0},
                                {"ical", "ic", C_M0},  {"ful", "", C_M0},   {"ness", "", C_M0}};
    p_rules(w, r3, sizeof r3 / sizeof r3[0]);
    static const p_rule r4[] = {{"al", "", C_M1},   {"ance", "", C_M1}, {"ence", "", C_M1}, {"er", "", C_M1},
                                {"ic", "", C_M1},   {"able", "", C_M1}, {"ible", "", C_M1}, {"ant", "", C_M1},
                                {"ement", "", C_M1}, {"ment", "", C_M1}, {"ent", "", C_M1}, {"ion", "", C_ION},
                                {"ou", "", C_M1},   {"ism", "", C_M1},  {"ate", "", C_M1},  {"iti", "", C_M1},
                                {"ous", "", C_M1},  {"ive", "", C_M1},  {"ize", "", C_M1}};
    p_rules(w, r4, sizeof r4 / sizeof r4[0]);
    /* step 5a */
    if (p_ends(w, "e")) {
        int m = p_measure(w->s, w->n - 1);
        if (m > 1 || (m == 1 && !p_cvc(w->s, w->n - 1))) w->n -= 1;
    }
    /* step 5b */
    if (p_ends(w, "ll") && p_measure(w->s, w->n - 1) > 1) w->n -= 1;
}

/* ---------------------------------------------------------------- METEOR */

/* _match_enums: hyp/ref hold word ids of the still-unmatched words (hi/ri
   their original positions); matched pairs are appended to mh/mr and
   removed from the lists. */
static int meteor_match(uint32_t *hw, size_t *hi, size_t *nh, uint32_t *rw, size_t *ri, size_t *nr, size_t nid,
                        size_t *mh, size_t *mr, size_t *nm) {
    long *head = malloc((nid + 1) * sizeof *head), *prev = malloc((*nr + 1) * sizeof *prev);
    char *hused = calloc(*nh + 1, 1), *rused = calloc(*nr + 1, 1);
    if (!head || !prev || !hused || !rused) { free(head); free(prev); free(hused); free(rused); return -1; }
    for (size_t i = 0; i < nid; i++) head[i] = -1;
    for (size_t j = 0; j < *nr; j++) { prev[j] = head[rw[j]]; head[rw[j]] = (long)j; }
    for (size_t i = *nh; i-- > 0;) {
        long j = head[hw[i]];
        if (j < 0) continue;
        head[hw[i]] = prev[j];
        hused[i] = rused[j] = 1;
        mh[*nm] = hi[i];
        mr[*nm] = ri[j];
        (*nm)++;
    }
    size_t k = 0;
    for (size_t i = 0; i < *nh; i++)
        if (!hused[i]) { hw[k] = hw[i]; hi[k] = hi[i]; k++; }
    *nh = k;
    k = 0;
    for (size_t j = 0; j < *nr; j++)
        if (!rused[j]) { rw[k] = rw[j]; ri[k] = ri[j]; k++; }
    *nr = k;
    free(head); free(prev); free(hused); free(rused);
    return 0;
}

/* nltk's _enum_wordnetsyn_match on the words left after the stem stage
   (hw/rw: stem ids, hi/ri: original positions; stems: all stems, hyp then
   ref): each hypothesis word, from the last, matches the remaining reference
   word at the highest position among its WordNet synonyms and itself. */
static int meteor_synonyms(const wn_db *wn, const word *stems, gb_intern *ins, const uint32_t *hw, const size_t *hi,
                           size_t hn, const uint32_t *rw, const size_t *ri, size_t rn, size_t *mh, size_t *mr, size_t *nm) {
    if (!hn || !rn) return 0;
    long *head = malloc((ins->n + 1) * sizeof *head), *prev = malloc((rn + 1) * sizeof *prev);
    gb_buf u = {0};
    wn_names names = {0};
    int rc = -1;
    if (!head || !prev) goto done;
    for (size_t i = 0; i < ins->n; i++) head[i] = -1;
    for (size_t j = 0; j < rn; j++) { prev[j] = head[rw[j]]; head[rw[j]] = (long)j; }
    for (size_t i = hn; i-- > 0;) {
        const word *w = &stems[hi[i]];
        gb_buf_reset(&u);
        gb_buf_put(&u, "", 0);
        for (size_t k = 0; k < w->n; k++) gb_utf8_put(&u, w->s[k]);
        if (u.oom) goto done;
        names.len = 0;
        wn_synonyms(wn, u.p, u.len, &names);
        if (names.oom) goto done;
        long best_j = head[hw[i]];
        uint32_t best_id = hw[i];
        for (size_t k = 0; k < names.len; k++) {
            uint32_t *c = NULL;
            size_t nc = 0;
            if (gb_utf8_decode(names.s[k], names.n[k], &c, &nc)) goto done;
            uint32_t id = gb_intern_id(ins, c, nc, 0);
            free(c);
            if (id != UINT32_MAX && head[id] > best_j) { best_j = head[id]; best_id = id; }
        }
        if (best_j < 0) continue;
        head[best_id] = prev[best_j];
        mh[*nm] = hi[i];
        mr[*nm] = ri[best_j];
        (*nm)++;
    }
    rc = 0;
done:
    free(head); free(prev); free(names.s); free(names.n);
    gb_buf_free(&u);
    return rc;
}

static int meteor(const wn_db *wn, ts_text *h, ts_text *r, double *score) {
    size_t nh = h->ntok, nr = r->ntok, nt = nh + nr;
    *score = 0;
    if (nh == 0 || nr == 0) return 0;
    /* lowered words, then their stems, all in one arena */
    ts_text *ts[2] = {h, r};
    size_t total = 0;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < ts[k]->ntok; i++) total += 2 * ts[k]->tok_len[i] + 4;
    uint32_t *arena = malloc(2 * total * sizeof *arena);
    word *low = malloc(nt * sizeof *low), *stem = malloc(nt * sizeof *stem);
    uint32_t *wid = malloc(nt * sizeof *wid), *sid = malloc(nt * sizeof *sid);
    size_t *idx = malloc(nt * sizeof *idx), *mh = malloc(nt * sizeof *mh), *mr = malloc(nt * sizeof *mr);
    gb_intern in = {0}, ins = {0};
    int rc = -1, in_ok = 0, ins_ok = 0;
    if (!arena || !low || !stem || !wid || !sid || !idx || !mh || !mr) goto done;
    size_t off = 0, w = 0;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < ts[k]->ntok; i++, w++) {
            const uint32_t *src = ts[k]->cp + ts[k]->tok_start[i];
            size_t len = ts[k]->tok_len[i], ln = 0;
            low[w].s = arena + off;
            for (size_t c = 0; c < len; c++) { /* str.lower() of the token, final sigma included */
                if (src[c] == 0x3A3) low[w].s[ln++] = gb_final_sigma(src, len, c) ? 0x3C2 : 0x3C3;
                else ln += (size_t)gb_lower(src[c], low[w].s + ln);
            }
            low[w].n = ln;
            off += 2 * len + 4;
            stem[w].s = arena + off;
            memcpy(stem[w].s, low[w].s, ln * sizeof *arena);
            stem[w].n = ln;
            off += 2 * len + 4;
            /* stem(word): word is the lowered token; lower() again is the identity */
            porter_stem(&stem[w], ln);
        }
    if (gb_intern_init(&in, nt)) goto done;
    in_ok = 1;
    if (gb_intern_init(&ins, nt)) goto done;
    ins_ok = 1;
    for (size_t i = 0; i < nt; i++) {
        wid[i] = gb_intern_id(&in, low[i].s, low[i].n, 1);
        sid[i] = gb_intern_id(&ins, stem[i].s, stem[i].n, 1);
        idx[i] = i < nh ? i : i - nh;
    }
    /* stage 1 (exact) on wid, stage 2 (stem) on sid of the words left */
    size_t nm = 0, hn = nh, rn = nr;
    uint32_t *hw = wid, *rw = wid + nh;
    size_t *hi = idx, *ri = idx + nh;
    if (meteor_match(hw, hi, &hn, rw, ri, &rn, in.n, mh, mr, &nm)) goto done;
    for (size_t i = 0; i < hn; i++) hw[i] = sid[hi[i]];
    for (size_t j = 0; j < rn; j++) rw[j] = sid[nh + ri[j]];
    if (meteor_match(hw, hi, &hn, rw, ri, &rn, ins.n, mh, mr, &nm)) goto done;
    if (wn && meteor_synonyms(wn, stem, &ins, hw, hi, hn, rw, ri, rn, mh, mr, &nm)) goto done;
    rc = 0;
    if (nm == 0) goto done; /* nltk: ZeroDivisionError -> 0.0 */
    /* sort matches by hypothesis position (unique), count chunks */
    size_t *ord = malloc(nh * sizeof *ord);
    if (!ord) { rc = -1; goto done; }
    for (size_t i = 0; i < nh; i++) ord[i] = SIZE_MAX;
    for (size_t k = 0; k < nm; k++) ord[mh[k]] = mr[k];
    long chunks = 1;
    size_t prev_h = SIZE_MAX, prev_r = 0;
    for (size_t i = 0; i < nh; i++) {
        if (ord[i] == SIZE_MAX) continue;
        if (prev_h != SIZE_MAX && !(i == prev_h + 1 && ord[i] == prev_r + 1)) chunks++;
        prev_h = i;
        prev_r = ord[i];
    }
    free(ord);
    const double alpha = 0.9, beta = 3.0, gamma = 0.5;
    double precision = (double)nm / (double)nh, recall = (double)nm / (double)nr;
    double fmean = (precision * recall) / (alpha * precision + (1 - alpha) * recall);
    double frag = (double)chunks / (double)nm;
    double penalty = gamma * pow(frag, beta);
    *score = (1 - penalty) * fmean;
done:
    if (in_ok) gb_intern_free(&in);
    if (ins_ok) gb_intern_free(&ins);
    free(arena); free(low); free(stem); free(wid); free(sid); free(idx); free(mh); free(mr);
    return rc;
}

/* ---------------------------------------------------------------- grade */

static double my_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

static int ts_score(const ts_state *s, ts_text *h, ts_text *r, double *score, char *err, size_t cap) {
    gb_intern in = {0};
    int have_in = 0, rc = RFT_ERROR;
    switch (s->metric) {
    case M_FUZZY: {
        size_t lo = h->n <= r->n ? h->n : r->n, hi = h->n <= r->n ? r->n : h->n;
        if ((unsigned long long)((lo + 63) / 64) * hi > GB_LCS_MAX_WORK)
            return gb_err(err, cap, G ": fuzzy_match: texts too long (%zu x %zu code points)", h->n, r->n);
        long l = h->n <= r->n ? gb_lcs(h->cp, h->n, r->cp, r->n) : gb_lcs(r->cp, r->n, h->cp, h->n);
        if (l < 0) goto oom;
        size_t sum = h->n + r->n;
        *score = sum == 0 ? 1.0 : 1.0 - (double)(sum - 2 * (size_t)l) / (double)sum;
        return RFT_OK;
    }
    case M_BLEU:
        if (tok13a(h) || tok13a(r)) goto oom;
        break;
    case M_GLEU:
    case M_METEOR:
        if (text_split(h, gb_isspace) || text_split(r, gb_isspace)) goto oom;
        break;
    default:
        if (tok_rouge(h) || tok_rouge(r)) goto oom;
        break;
    }
    if (s->metric == M_METEOR) {
        if (meteor(s->wn, h, r, score)) goto oom;
        return RFT_OK;
    }
    have_in = 1;
    if (text_ids(h, r, &in)) goto oom;
    switch (s->metric) {
    case M_BLEU: {
        long correct[4], total[4], tr, ov;
        int any = 0;
        for (int n = 1; n <= 4; n++) {
            if (ngram_stats(h->ids, h->ntok, r->ids, r->ntok, (size_t)n, &total[n - 1], &tr, &ov)) goto oom;
            correct[n - 1] = ov;
            any |= ov != 0;
        }
        double sys = (double)h->ntok, ref = (double)r->ntok, bp = 1.0;
        if (h->ntok < r->ntok) bp = h->ntok > 0 ? exp(1 - ref / sys) : 0.0;
        if (!any) { *score = 0; break; }
        double prec[4] = {0, 0, 0, 0}, smooth = 1.0;
        int eff = 4;
        for (int n = 1; n <= 4; n++) {
            if (total[n - 1] == 0) break;
            eff = n;
            if (correct[n - 1] == 0) {
                smooth *= 2;
                prec[n - 1] = 100. / (smooth * (double)total[n - 1]);
            } else prec[n - 1] = 100. * (double)correct[n - 1] / (double)total[n - 1];
        }
        double sum = 0;
        for (int n = 0; n < eff; n++) sum += my_log(prec[n]);
        *score = bp * exp(sum / eff) / 100.0;
        break;
    }
    case M_GLEU: {
        long tpfp = 0, tpfn = 0, tp = 0;
        for (size_t n = 1; n <= 4; n++) {
            long a, b, o;
            if (ngram_stats(h->ids, h->ntok, r->ids, r->ntok, n, &a, &b, &o)) goto oom;
            tpfp += a; tpfn += b; tp += o;
        }
        long all = tpfp > tpfn ? tpfp : tpfn;
        *score = all > 0 ? (double)tp / (double)all : 0.0;
        break;
    }
    case M_ROUGE_N: {
        long pc, tc, ov;
        if (ngram_stats(h->ids, h->ntok, r->ids, r->ntok, (size_t)s->rouge_n, &pc, &tc, &ov)) goto oom;
        double p = (double)ov / (double)(pc > 1 ? pc : 1), rr = (double)ov / (double)(tc > 1 ? tc : 1);
        *score = fmeasure(p, rr);
        break;
    }
    case M_ROUGE_L: {
        if (!h->ntok || !r->ntok) { *score = 0; break; }
        size_t lo = h->ntok <= r->ntok ? h->ntok : r->ntok, hi = h->ntok <= r->ntok ? r->ntok : h->ntok;
        if ((unsigned long long)((lo + 63) / 64) * hi > GB_LCS_MAX_WORK) {
            gb_intern_free(&in);
            return gb_err(err, cap, G ": rouge_l: texts too long (%zu x %zu tokens)", h->ntok, r->ntok);
        }
        long l = h->ntok <= r->ntok ? gb_lcs(h->ids, h->ntok, r->ids, r->ntok) : gb_lcs(r->ids, r->ntok, h->ids, h->ntok);
        if (l < 0) goto oom;
        *score = fmeasure((double)l / (double)h->ntok, (double)l / (double)r->ntok);
        break;
    }
    }
    rc = RFT_OK;
    gb_intern_free(&in);
    return rc;
oom:
    if (have_in && in.slot) gb_intern_free(&in);
    return gb_err(err, cap, G ": out of memory");
}

static int ts_grade(void *p, const rft_sample *sample, const rft_item *item, double *score, char *err, size_t cap) {
    ts_state *s = p;
    gb_ctx c;
    gb_buf a = {0}, b = {0};
    ts_text h = {0}, r = {0};
    int rc = RFT_ERROR;
    gb_ctx_init(&c, s->host, sample, item);
    if (gb_tmpl_expand(&s->input, &c, &a, G, err, cap) || gb_tmpl_expand(&s->reference, &c, &b, G, err, cap))
        goto out;
    if (gb_utf8_decode(a.p, a.len, &h.cp, &h.n) || gb_utf8_decode(b.p, b.len, &r.cp, &r.n)) {
        gb_err(err, cap, G ": out of memory");
        goto out;
    }
    double v = 0;
    rc = ts_score(s, &h, &r, &v, err, cap);
    if (rc == RFT_OK) *score = s->has_threshold ? (v >= s->threshold ? 1.0 : 0.0) : v;
out:
    text_free(&h);
    text_free(&r);
    gb_buf_free(&a);
    gb_buf_free(&b);
    gb_ctx_free(&c);
    return rc;
}

static const rft_grader ts_grader = {
    .abi_version = RFT_GRADER_ABI_VERSION,
    .name = G,
    .flags = RFT_GRADER_THREADSAFE,
    .create = ts_create,
    .grade = ts_grade,
    .destroy = ts_destroy,
};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &ts_grader; }
