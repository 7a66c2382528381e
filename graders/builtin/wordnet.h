/* wordnet.h: a read-only WordNet 3.0 database (the Princeton "dict" files:
 * index.{noun,verb,adj,adv}, data.*, *.exc, as in Debian's wordnet-base under
 * /usr/share/wordnet) for METEOR's synonym stage, mirroring what nltk's
 * WordNetCorpusReader does for wordnet.synsets(word): for each part of speech
 * n, v, a, r, the forms of nltk's _morphy (exception list, else one round of
 * the detachment rules; the word itself first; only forms indexed for that
 * part of speech), the synsets of each form, their lemma names with any
 * syntactic marker "(a)" removed. Index files are parsed once; data files are
 * mapped and read at the synset's byte offset. Static inline: part of the
 * text_similarity plugin.
 */
#ifndef RFT_WORDNET_H
#define RFT_WORDNET_H

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builtin_common.h"

/* string -> index map over byte strings that live in the caller's buffers */
typedef struct {
    const char **key;
    uint32_t *klen;
    uint32_t *slot; /* id + 1, 0 = empty */
    size_t cap, n, max;
} wn_map;

static inline uint64_t wn_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull ^ n;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 31);
}

static inline int wn_map_init(wn_map *m, size_t max) {
    m->cap = 16;
    while (m->cap < 2 * max + 2) m->cap *= 2;
    m->n = 0;
    m->max = max;
    m->slot = calloc(m->cap, sizeof *m->slot);
    m->key = malloc((max + 1) * sizeof *m->key);
    m->klen = malloc((max + 1) * sizeof *m->klen);
    return m->slot && m->key && m->klen ? 0 : -1;
}
static inline void wn_map_free(wn_map *m) { free(m->slot); free(m->key); free(m->klen); memset(m, 0, sizeof *m); }

/* id of s[0..n), added when absent if add (and room is left); UINT32_MAX otherwise */
static inline uint32_t wn_map_id(const wn_map *mc, const char *s, size_t n, int add) {
    wn_map *m = (wn_map *)mc;
    size_t mask = m->cap - 1, h = (size_t)wn_hash(s, n) & mask;
    for (;;) {
        uint32_t e = m->slot[h];
        if (!e) break;
        if (m->klen[e - 1] == n && !memcmp(m->key[e - 1], s, n)) return e - 1;
        h = (h + 1) & mask;
    }
    if (!add || m->n >= m->max) return UINT32_MAX;
    uint32_t id = (uint32_t)m->n++;
    m->key[id] = s;
    m->klen[id] = (uint32_t)n;
    m->slot[h] = id + 1;
    return id;
}

enum { WN_N, WN_V, WN_A, WN_R, WN_NPOS };
static const char WN_POS_CHAR[WN_NPOS] = {'n', 'v', 'a', 'r'};
static const char *const WN_SUFFIX[WN_NPOS] = {"noun", "verb", "adj", "adv"};

typedef struct {
    char *text[WN_NPOS];      /* index files, in memory (keys point here) */
    char *exc_text[WN_NPOS];  /* exception files */
    const char *data[WN_NPOS]; /* data files, mapped */
    size_t data_len[WN_NPOS];
    wn_map lemmas;
    uint32_t (*span)[WN_NPOS][2]; /* per lemma and pos: first offset index, count */
    uint32_t *offsets;
    size_t n_offsets;
    wn_map exc[WN_NPOS];
    const char **exc_bases[WN_NPOS]; /* base forms, in file order */
    uint32_t *exc_blen[WN_NPOS];
    uint32_t (*exc_ids[WN_NPOS])[2]; /* per inflected form: first base, count */
} wn_db;

static inline void wn_free(wn_db *d) {
    if (!d) return;
    for (int p = 0; p < WN_NPOS; p++) {
        free(d->text[p]);
        free(d->exc_text[p]);
        if (d->data[p]) munmap((void *)d->data[p], d->data_len[p]);
        wn_map_free(&d->exc[p]);
        free(d->exc_bases[p]);
        free(d->exc_blen[p]);
        free(d->exc_ids[p]);
    }
    wn_map_free(&d->lemmas);
    free(d->span);
    free(d->offsets);
    free(d);
}

static inline char *wn_read(const char *dir, const char *name, size_t *len, char *err, size_t cap) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) { gb_err(err, cap, "cannot open WordNet file %s", path); return NULL; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        gb_err(err, cap, "cannot read WordNet file %s", path);
        return NULL;
    }
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

static inline int wn_is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* next whitespace-separated token of the line [*p, end): returns its length */
static inline size_t wn_tok(const char **p, const char *end, const char **tok) {
    const char *s = *p;
    while (s < end && wn_is_ws(*s) && *s != '\n') s++;
    const char *t = s;
    while (t < end && !wn_is_ws(*t)) t++;
    *tok = s;
    *p = t;
    return (size_t)(t - s);
}

/* Loads the database from dir; NULL with a message on failure. */
static inline wn_db *wn_open(const char *dir, char *err, size_t cap) {
    wn_db *d = calloc(1, sizeof *d);
    if (!d) { gb_err(err, cap, "out of memory"); return NULL; }
    size_t len[WN_NPOS], lines = 0, total_tokens = 0;
    char name[64];
    for (int p = 0; p < WN_NPOS; p++) {
        snprintf(name, sizeof name, "index.%s", WN_SUFFIX[p]);
        if (!(d->text[p] = wn_read(dir, name, &len[p], err, cap))) goto fail;
        for (size_t i = 0; i < len[p]; i++) {
            lines += d->text[p][i] == '\n';
            total_tokens += !wn_is_ws(d->text[p][i]) && (i == 0 || wn_is_ws(d->text[p][i - 1]));
        }
        snprintf(name, sizeof name, "%s/data.%s", dir, WN_SUFFIX[p]);
        int fd = open(name, O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) || st.st_size == 0) {
            if (fd >= 0) close(fd);
            gb_err(err, cap, "cannot open WordNet file %s", name);
            goto fail;
        }
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (m == MAP_FAILED) { gb_err(err, cap, "cannot map WordNet file %s", name); goto fail; }
        d->data[p] = m;
        d->data_len[p] = (size_t)st.st_size;
    }
    if (wn_map_init(&d->lemmas, lines + 1)) goto oom;
    d->span = calloc(lines + 1, sizeof *d->span);
    d->offsets = malloc((total_tokens + 1) * sizeof *d->offsets);
    if (!d->span || !d->offsets) goto oom;
    for (int p = 0; p < WN_NPOS; p++) {
        const char *s = d->text[p], *end = s + len[p];
        while (s < end) {
            const char *eol = memchr(s, '\n', (size_t)(end - s));
            if (!eol) eol = end;
            if (*s != ' ' && eol > s) {
                const char *q = s, *t;
                size_t ln = wn_tok(&q, eol, &t), k;
                const char *lemma = t;
                const char *tp;
                size_t lp = wn_tok(&q, eol, &tp);
                int pos = -1;
                for (int i = 0; i < WN_NPOS && lp == 1; i++)
                    if (*tp == WN_POS_CHAR[i]) pos = i;
                char num[32];
                long v[3];
                int ok = ln > 0 && pos >= 0;
                /* n_synsets, n_pointers, [pointers], n_senses, tagsense_cnt, offsets */
                for (int f = 0; ok && f < 2; f++) {
                    k = wn_tok(&q, eol, &t);
                    if (!k || k >= sizeof num) { ok = 0; break; }
                    memcpy(num, t, k); num[k] = 0;
                    v[f] = strtol(num, NULL, 10);
                }
                for (long i = 0; ok && i < v[1]; i++) ok = wn_tok(&q, eol, &t) > 0;
                for (int f = 0; ok && f < 2; f++) ok = wn_tok(&q, eol, &t) > 0;
                if (ok && v[0] > 0) {
                    uint32_t id = wn_map_id(&d->lemmas, lemma, ln, 1);
                    if (id == UINT32_MAX) goto oom;
                    uint32_t first = (uint32_t)d->n_offsets;
                    for (long i = 0; i < v[0]; i++) {
                        k = wn_tok(&q, eol, &t);
                        if (!k || k >= sizeof num || d->n_offsets >= total_tokens) break;
                        memcpy(num, t, k); num[k] = 0;
                        d->offsets[d->n_offsets++] = (uint32_t)strtoul(num, NULL, 10);
                    }
                    d->span[id][pos][0] = first;
                    d->span[id][pos][1] = (uint32_t)(d->n_offsets - first);
                }
            }
            s = eol + 1;
        }
    }
    /* exceptions: "inflected base1 base2 ..." */
    for (int p = 0; p < WN_NPOS; p++) {
        size_t n;
        snprintf(name, sizeof name, "%s.exc", WN_SUFFIX[p]);
        if (!(d->exc_text[p] = wn_read(dir, name, &n, err, cap))) goto fail;
        size_t nl = 1, nt = 1;
        for (size_t i = 0; i < n; i++) {
            nl += d->exc_text[p][i] == '\n';
            nt += !wn_is_ws(d->exc_text[p][i]) && (i == 0 || wn_is_ws(d->exc_text[p][i - 1]));
        }
        if (wn_map_init(&d->exc[p], nl)) goto oom;
        d->exc_bases[p] = malloc(nt * sizeof *d->exc_bases[p]);
        d->exc_blen[p] = malloc(nt * sizeof *d->exc_blen[p]);
        d->exc_ids[p] = calloc(nl, sizeof *d->exc_ids[p]);
        if (!d->exc_bases[p] || !d->exc_blen[p] || !d->exc_ids[p]) goto oom;
        size_t nb = 0;
        const char *s = d->exc_text[p], *end = s + n;
        while (s < end) {
            const char *eol = memchr(s, '\n', (size_t)(end - s));
            if (!eol) eol = end;
            const char *q = s, *t;
            size_t k = wn_tok(&q, eol, &t);
            if (k) {
                uint32_t id = wn_map_id(&d->exc[p], t, k, 1);
                if (id == UINT32_MAX) goto oom;
                d->exc_ids[p][id][0] = (uint32_t)nb; /* a later line for the same word replaces it */
                while ((k = wn_tok(&q, eol, &t)) > 0 && nb < nt) {
                    d->exc_bases[p][nb] = t;
                    d->exc_blen[p][nb++] = (uint32_t)k;
                }
                d->exc_ids[p][id][1] = (uint32_t)(nb - d->exc_ids[p][id][0]);
            }
            s = eol + 1;
        }
    }
    return d;
oom:
    gb_err(err, cap, "out of memory loading WordNet");
fail:
    wn_free(d);
    return NULL;
}

/* a set of names (pointers into the mapped data files), small and linear */
typedef struct {
    const char **s;
    uint32_t *n;
    size_t len, cap;
    int oom;
} wn_names;

static inline void wn_names_add(wn_names *v, const char *s, size_t n) {
    for (size_t i = 0; i < v->len; i++)
        if (v->n[i] == n && !memcmp(v->s[i], s, n)) return;
    if (v->len == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 32;
        const char **a = realloc(v->s, cap * sizeof *a);
        if (a) v->s = a;
        uint32_t *b = realloc(v->n, cap * sizeof *b);
        if (b) v->n = b;
        if (!a || !b) { v->oom = 1; return; }
        v->cap = cap;
    }
    v->s[v->len] = s;
    v->n[v->len++] = (uint32_t)n;
}

/* lemma names (without '_') of the synset at byte offset off of data.<pos> */
static inline void wn_synset_names(const wn_db *d, int pos, uint32_t off, wn_names *out) {
    if (off >= d->data_len[pos]) return;
    const char *s = d->data[pos] + off, *end = d->data[pos] + d->data_len[pos];
    const char *eol = memchr(s, '\n', (size_t)(end - s));
    if (!eol) eol = end;
    const char *bar = memchr(s, '|', (size_t)(eol - s));
    if (bar) eol = bar;
    const char *q = s, *t;
    for (int f = 0; f < 3; f++)
        if (!wn_tok(&q, eol, &t)) return; /* offset, lex file, type */
    size_t k = wn_tok(&q, eol, &t);
    if (!k || k > 8) return;
    char num[16];
    memcpy(num, t, k); num[k] = 0;
    long n = strtol(num, NULL, 16);
    for (long i = 0; i < n; i++) {
        k = wn_tok(&q, eol, &t);
        if (!k) return;
        const char *name = t;
        size_t nl = k;
        /* (.*?)(\([^()]*\))?$ : drop a trailing "(...)" marker without parens inside */
        if (name[nl - 1] == ')') {
            size_t j = nl - 1;
            while (j > 0 && name[j - 1] != '(' && name[j - 1] != ')') j--;
            if (j > 0 && name[j - 1] == '(') nl = j - 1;
        }
        if (!memchr(name, '_', nl)) wn_names_add(out, name, nl);
        if (!wn_tok(&q, eol, &t)) return; /* lex_id */
    }
}

static inline void wn_add_form_synsets(const wn_db *d, int pos, const char *form, size_t n, wn_names *out) {
    uint32_t id = wn_map_id(&d->lemmas, form, n, 0);
    if (id == UINT32_MAX) return;
    for (uint32_t i = 0; i < d->span[id][pos][1]; i++) wn_synset_names(d, pos, d->offsets[d->span[id][pos][0] + i], out);
}

static inline int wn_indexed(const wn_db *d, int pos, const char *form, size_t n) {
    uint32_t id = wn_map_id(&d->lemmas, form, n, 0);
    return id != UINT32_MAX && d->span[id][pos][1] > 0;
}

/* Adds the lemma names of every synset of word (nltk wordnet.synsets(word))
   that hold no '_' to out. */
static inline void wn_synonyms(const wn_db *d, const char *w, size_t n, wn_names *out) {
    static const char *const subs[WN_NPOS][9][2] = {
        {{"s", ""}, {"ses", "s"}, {"ves", "f"}, {"xes", "x"}, {"zes", "z"}, {"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"}},
        {{"s", ""}, {"ies", "y"}, {"es", "e"}, {"es", ""}, {"ed", "e"}, {"ed", ""}, {"ing", "e"}, {"ing", ""}, {NULL, NULL}},
        {{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}, {NULL, NULL}},
        {{NULL, NULL}},
    };
    if (n == 0 || n > 200) return;
    for (int p = 0; p < WN_NPOS; p++) {
        /* candidate forms: the word, then exceptions or rule outputs; keep indexed ones, first occurrence */
        char buf[12][256];
        const char *form[12];
        size_t flen[12], nf = 0;
        form[nf] = w; flen[nf++] = n;
        uint32_t e = wn_map_id(&d->exc[p], w, n, 0);
        if (e != UINT32_MAX) {
            for (uint32_t i = 0; i < d->exc_ids[p][e][1] && nf < 12; i++) {
                form[nf] = d->exc_bases[p][d->exc_ids[p][e][0] + i];
                flen[nf++] = d->exc_blen[p][d->exc_ids[p][e][0] + i];
            }
        } else {
            for (int r = 0; r < 9 && subs[p][r][0] && nf < 12; r++) {
                size_t ol = strlen(subs[p][r][0]), nl = strlen(subs[p][r][1]);
                if (ol > n || memcmp(w + n - ol, subs[p][r][0], ol)) continue;
                memcpy(buf[nf], w, n - ol);
                memcpy(buf[nf] + n - ol, subs[p][r][1], nl);
                form[nf] = buf[nf];
                flen[nf++] = n - ol + nl;
            }
        }
        for (size_t i = 0; i < nf; i++) {
            int dup = 0;
            for (size_t j = 0; j < i && !dup; j++) dup = flen[j] == flen[i] && !memcmp(form[j], form[i], flen[i]);
            if (dup || !wn_indexed(d, p, form[i], flen[i])) continue;
            wn_add_form_synsets(d, p, form[i], flen[i], out);
        }
    }
}

#endif
