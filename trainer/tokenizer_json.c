/* trainer/tokenizer_json.c: Hugging Face tokenizer.json (+ tokenizer_config.json)
 * to a tokenizer and back: BPE model (vocab, merges as "a b" strings or [a, b]
 * pairs, ignore_merges, unk_token), added_tokens, the pre-tokenizer config
 * mapped to our names (or "custom" regexes), the TemplateProcessing bos, and
 * the chat template / special token names from tokenizer_config.json. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "tokenizer.h"
#include "util.h"

static const char RX_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RX_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RX_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct pre_list {
    int n;
    char *rx[8];
} pre_list;

static void pre_list_free(pre_list *p) {
    for (int i = 0; i < p->n; i++) free(p->rx[i]);
    p->n = 0;
}

static int pre_add(pre_list *p, const char *rx, const char *name, char *err, size_t cap) {
    if (p->n == 8) return errf(err, cap, "%s: pre_tokenizer: too many steps", name);
    if (!(p->rx[p->n] = strdup(rx))) return errf(err, cap, "out of memory");
    p->n++;
    return 0;
}

/* one pre-tokenizer object -> regex steps */
static int pre_walk(json_t *pt, pre_list *p, const char *name, char *err, size_t cap) {
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type) return errf(err, cap, "%s: pre_tokenizer: missing \"type\"", name);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(pt, "pretokenizers");
        if (!json_is_array(arr)) return errf(err, cap, "%s: pre_tokenizer Sequence: missing \"pretokenizers\"", name);
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) if (pre_walk(e, p, name, err, cap)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(pt, "add_prefix_space")))
            return errf(err, cap, "%s: pre_tokenizer ByteLevel with add_prefix_space=true is not supported", name);
        json_t *ur = json_object_get(pt, "use_regex");
        if (!ur || json_is_true(ur)) return pre_add(p, RX_GPT2, name, err, cap);
        return 0;
    }
    if (!strcmp(type, "Digits")) {
        return pre_add(p, json_is_true(json_object_get(pt, "individual_digits")) ? "\\p{N}" : "\\p{N}+", name, err,
                       cap);
    }
    if (!strcmp(type, "Split")) {
        const char *beh = json_string_value(json_object_get(pt, "behavior"));
        if (!beh || strcmp(beh, "Isolated") || json_is_true(json_object_get(pt, "invert")))
            return errf(err, cap, "%s: pre_tokenizer Split: only behavior Isolated without invert is supported", name);
        json_t *pat = json_object_get(pt, "pattern");
        const char *rx = json_string_value(json_object_get(pat, "Regex"));
        if (rx) return pre_add(p, rx, name, err, cap);
        const char *lit = json_string_value(json_object_get(pat, "String"));
        if (!lit) return errf(err, cap, "%s: pre_tokenizer Split: pattern needs Regex or String", name);
        if (strstr(lit, "\\E")) return errf(err, cap, "%s: pre_tokenizer Split: unsupported String pattern", name);
        char *q = malloc(strlen(lit) + 5);
        if (!q) return errf(err, cap, "out of memory");
        sprintf(q, "\\Q%s\\E", lit);
        int rc = pre_add(p, q, name, err, cap);
        free(q);
        return rc;
    }
    return errf(err, cap, "%s: pre_tokenizer type \"%s\" is not supported (ByteLevel, Digits, Split, Sequence)", name,
                type);
}

/* a token name in tokenizer_config.json: "text" or {"content": "text", ...} */
static const char *cfg_token(json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

typedef struct vent {
    const char *s;
    size_t len;
} vent;

tokenizer *tokenizer_parse_json(const char *text, size_t len, const char *name, const char *config_text,
                                size_t config_len, char *err, size_t cap) {
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je), *cfg = NULL;
    tokenizer *t = NULL;
    vent *v = NULL;
    int32_t *types = NULL;
    const char **strs = NULL, **merge_pairs = NULL;
    size_t *lens = NULL;
    tok_added *added = NULL;
    char **split_merges = NULL;
    pre_list pl = {0};
    int32_t nmerge = 0;
    if (!root) return errf(err, cap, "%s:%d: invalid JSON: %s", name, je.line, je.text), NULL;
    if (config_text) {
        cfg = json_loadb(config_text, config_len, 0, &je);
        if (!cfg) { errf(err, cap, "tokenizer_config.json:%d: invalid JSON: %s", je.line, je.text); goto done; }
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) { errf(err, cap, "%s: missing \"model\"", name); goto done; }
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE")) { errf(err, cap, "%s: model.type \"%s\" is not supported (BPE)", name, mtype); goto done; }
    if (json_is_true(json_object_get(model, "byte_fallback"))) {
        errf(err, cap, "%s: model.byte_fallback (SentencePiece-style BPE) is not supported", name);
        goto done;
    }
    const char *csp = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *ews = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if ((csp && *csp) || (ews && *ews)) {
        errf(err, cap, "%s: model.continuing_subword_prefix / end_of_word_suffix are not supported", name);
        goto done;
    }
    json_t *norm = json_object_get(root, "normalizer");
    const char *normalizer = "none";
    if (norm && !json_is_null(norm)) {
        const char *nt = json_string_value(json_object_get(norm, "type"));
        if (!nt || strcmp(nt, "NFC")) {
            errf(err, cap, "%s: normalizer \"%s\" is not supported (null, NFC)", name, nt ? nt : "?");
            goto done;
        }
        normalizer = "nfc";
    }

    /* vocab: id -> string */
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) { errf(err, cap, "%s: model.vocab must be an object", name); goto done; }
    int64_t maxid = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24)) {
            errf(err, cap, "%s: model.vocab[\"%.40s\"]: id must be an integer in [0, 2^24)", name, key);
            goto done;
        }
        if (json_integer_value(val) > maxid) maxid = json_integer_value(val);
    }
    json_t *at = json_object_get(root, "added_tokens");
    if (at && !json_is_array(at)) { errf(err, cap, "%s: added_tokens must be an array", name); goto done; }
    size_t na = json_array_size(at);
    added = calloc(na + 1, sizeof *added);
    if (!added) { errf(err, cap, "out of memory"); goto done; }
    for (size_t i = 0; i < na; i++) {
        json_t *a = json_array_get(at, i);
        json_t *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 24) ||
            !json_is_string(c) || json_string_length(c) == 0) {
            errf(err, cap, "%s: added_tokens[%zu]: needs an integer id in [0, 2^24) and a non-empty content", name, i);
            goto done;
        }
        if (json_is_true(json_object_get(a, "lstrip")) || json_is_true(json_object_get(a, "rstrip")) ||
            json_is_true(json_object_get(a, "single_word"))) {
            errf(err, cap, "%s: added_tokens[%zu] (\"%s\"): lstrip/rstrip/single_word are not supported", name, i,
                 json_string_value(c));
            goto done;
        }
        added[i].id = (int32_t)json_integer_value(id);
        added[i].content = json_string_value(c);
        added[i].len = json_string_length(c);
        added[i].special = json_is_true(json_object_get(a, "special"));
        if (added[i].id > maxid) maxid = added[i].id;
    }
    if (maxid < 0) { errf(err, cap, "%s: empty vocabulary", name); goto done; }
    /* ids are dense in real files; a few stray large ids must not cost gigabytes */
    size_t n_entries = json_object_size(vocab) + na;
    if ((uint64_t)maxid > 2 * (uint64_t)n_entries + 1024) {
        errf(err, cap, "%s: token id %lld is far beyond the %zu tokens defined (ids must be dense)", name,
             (long long)maxid, n_entries);
        goto done;
    }
    int32_t nv = (int32_t)maxid + 1;
    v = calloc((size_t)nv, sizeof *v);
    strs = calloc((size_t)nv, sizeof *strs);
    lens = calloc((size_t)nv, sizeof *lens);
    types = calloc((size_t)nv, sizeof *types);
    if (!v || !strs || !lens || !types) { errf(err, cap, "out of memory"); goto done; }
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (v[id].s) { errf(err, cap, "%s: model.vocab: id %d appears twice", name, id); goto done; }
        v[id].s = key;
        v[id].len = strlen(key);
    }
    for (int32_t i = 0; i < nv; i++) {
        strs[i] = v[i].s ? v[i].s : "";
        lens[i] = v[i].len;
        types[i] = v[i].s ? TOK_TYPE_NORMAL : TOK_TYPE_UNUSED;
    }

    /* merges */
    json_t *merges = json_object_get(model, "merges");
    if (merges && !json_is_array(merges)) { errf(err, cap, "%s: model.merges must be an array", name); goto done; }
    nmerge = (int32_t)json_array_size(merges);
    merge_pairs = calloc(2 * (size_t)nmerge + 1, sizeof *merge_pairs);
    split_merges = calloc((size_t)nmerge + 1, sizeof *split_merges);
    if (!merge_pairs || !split_merges) { errf(err, cap, "out of memory"); goto done; }
    for (int32_t i = 0; i < nmerge; i++) {
        json_t *m = json_array_get(merges, (size_t)i);
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                errf(err, cap, "%s: model.merges[%d] (\"%.60s\") is not \"left right\"", name, i, s);
                goto done;
            }
            if (!(split_merges[i] = strdup(s))) { errf(err, cap, "out of memory"); goto done; }
            split_merges[i][sp - s] = 0;
            merge_pairs[2 * i] = split_merges[i];
            merge_pairs[2 * i + 1] = split_merges[i] + (sp - s) + 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            merge_pairs[2 * i] = json_string_value(json_array_get(m, 0));
            merge_pairs[2 * i + 1] = json_string_value(json_array_get(m, 1));
        } else {
            errf(err, cap, "%s: model.merges[%d] must be \"left right\" or [left, right]", name, i);
            goto done;
        }
    }

    /* pre-tokenizer */
    json_t *pt = json_object_get(root, "pre_tokenizer");
    if (!pt || json_is_null(pt)) { errf(err, cap, "%s: pre_tokenizer is null (byte-level BPE needs one)", name); goto done; }
    if (pre_walk(pt, &pl, name, err, cap)) goto done;
    tokenizer_spec sp;
    tokenizer_spec_init(&sp);
    if (pl.n == 1 && !strcmp(pl.rx[0], RX_GPT2)) sp.pretokenizer = "gpt2";
    else if (pl.n == 2 && !strcmp(pl.rx[0], "\\p{N}") && !strcmp(pl.rx[1], RX_GPT2)) sp.pretokenizer = "smollm";
    else if (pl.n == 1 && !strcmp(pl.rx[0], RX_LLAMA3)) sp.pretokenizer = "llama3";
    else if (pl.n == 1 && !strcmp(pl.rx[0], RX_QWEN2)) sp.pretokenizer = "qwen2";
    else if (pl.n >= 1 && pl.n <= TOK_MAX_PRE_STEPS) {
        sp.pretokenizer = "custom";
        sp.pre_regex = (const char *const *)pl.rx;
        sp.n_pre_regex = pl.n;
    } else {
        errf(err, cap, "%s: pre_tokenizer has %d split steps (1..%d supported)", name, pl.n, TOK_MAX_PRE_STEPS);
        goto done;
    }
    sp.n_vocab = nv;
    sp.tokens = strs;
    sp.token_lens = lens;
    sp.token_types = types;
    sp.n_merges = nmerge;
    sp.merge_pairs = merge_pairs;
    sp.n_added = (int32_t)na;
    sp.added = added;
    sp.ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    sp.normalizer = normalizer;

    /* ids of named tokens: unk from the model, bos from a TemplateProcessing
       post-processor, the rest from tokenizer_config.json */
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    json_t *pp = json_object_get(root, "post_processor");
    const char *ppt = json_string_value(json_object_get(pp, "type"));
    const char *bos_name = NULL;
    if (ppt && !strcmp(ppt, "Sequence")) {
        json_t *ps = json_object_get(pp, "processors");
        size_t i;
        json_t *e;
        json_array_foreach(ps, i, e) {
            const char *ty = json_string_value(json_object_get(e, "type"));
            if (ty && !strcmp(ty, "TemplateProcessing")) { pp = e; ppt = ty; }
        }
    }
    if (ppt && !strcmp(ppt, "TemplateProcessing")) {
        json_t *single = json_object_get(pp, "single");
        json_t *first = json_array_get(single, 0);
        json_t *stok = json_object_get(first, "SpecialToken");
        if (stok) {
            bos_name = json_string_value(json_object_get(stok, "id"));
            sp.add_bos = bos_name != NULL;
        }
    }
    const char *cb = cfg_token(cfg, "bos_token"), *ce = cfg_token(cfg, "eos_token"), *cp = cfg_token(cfg, "pad_token");
    const char *cu = cfg_token(cfg, "unk_token");
    if (cb) bos_name = cb;
    if (cu) unk = cu;
    json_t *ab = json_object_get(cfg, "add_bos_token");
    if (json_is_boolean(ab)) sp.add_bos = json_is_true(ab);
    const char *chat = NULL;
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct)) chat = json_string_value(ct);
    else if (json_is_array(ct)) {   /* [{"name": "default", "template": ...}, ...] */
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e) {
            const char *nm = json_string_value(json_object_get(e, "name"));
            if (!chat || (nm && !strcmp(nm, "default"))) chat = json_string_value(json_object_get(e, "template"));
        }
    }
    sp.chat_template = chat;
    t = tokenizer_create(&sp, err, cap);
    if (!t) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", err ? err : "");
        errf(err, cap, "%s: %s", name, tmp);
        goto done;
    }
    /* resolve the names against the built vocabulary, then rebuild with the ids */
    struct { const char *nm; const char *what; } named[4];
    int32_t ids[4] = {-1, -1, -1, -1};
    named[0].nm = bos_name; named[0].what = "bos_token";
    named[1].nm = ce; named[1].what = "eos_token";
    named[2].nm = cp; named[2].what = "pad_token";
    named[3].nm = unk; named[3].what = "unk_token";
    for (int i = 0; i < 4; i++) {
        if (!named[i].nm) continue;
        ids[i] = tokenizer_token_to_id(t, named[i].nm, strlen(named[i].nm));
        if (ids[i] < 0) {
            errf(err, cap, "%s: %s \"%s\" is not in the vocabulary", i == 3 ? name : "tokenizer_config.json",
                 named[i].what, named[i].nm);
            tokenizer_free(t);
            t = NULL;
            goto done;
        }
    }
    if (ids[0] >= 0 || ids[1] >= 0 || ids[2] >= 0 || ids[3] >= 0) {
        tokenizer_free(t);
        sp.bos_id = ids[0]; sp.eos_id = ids[1]; sp.pad_id = ids[2]; sp.unk_id = ids[3];
        t = tokenizer_create(&sp, err, cap);
    }
done:
    pre_list_free(&pl);
    if (split_merges)
        for (int32_t i = 0; i < nmerge; i++) free(split_merges[i]);
    free(split_merges); free(merge_pairs);
    free(v); free(strs); free(lens); free(types); free(added);
    json_decref(root);
    json_decref(cfg);
    return t;
}

tokenizer *tokenizer_load_json(const char *path, const char *config_path, char *err, size_t cap) {
    size_t len, clen = 0;
    char *text = read_file(path, &len, err, cap), *ctext = NULL;
    if (!text) return NULL;
    if (config_path) {
        ctext = read_file(config_path, &clen, err, cap);
        if (!ctext) { free(text); return NULL; }
    }
    tokenizer *t = tokenizer_parse_json(text, len, path, ctext, clen, err, cap);
    free(text);
    free(ctext);
    return t;
}

/* ---------------------------------------------------------------- writer */

static json_t *pre_json(const tokenizer *t) {
    const char *nm = tokenizer_pretokenizer(t);
    json_t *bl = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                           "use_regex", !strcmp(nm, "gpt2") || !strcmp(nm, "smollm"));
    if (!strcmp(nm, "gpt2")) return bl;
    json_t *seq = json_array();
    if (!strcmp(nm, "smollm")) {
        json_array_append_new(seq, json_pack("{s:s,s:b}", "type", "Digits", "individual_digits", 1));
    } else {
        const char *const *rx = NULL;
        int n = 1;
        const char *one[1] = {!strcmp(nm, "llama3") ? RX_LLAMA3 : RX_QWEN2};
        if (!strcmp(nm, "custom")) n = tokenizer_pre_regex(t, &rx);
        else rx = one;
        for (int i = 0; i < n; i++)
            json_array_append_new(seq, json_pack("{s:s,s:{s:s},s:s,s:b}", "type", "Split", "pattern", "Regex", rx[i],
                                                 "behavior", "Isolated", "invert", 0));
    }
    json_array_append_new(seq, bl);
    return json_pack("{s:s,s:o}", "type", "Sequence", "pretokenizers", seq);
}

int tokenizer_save_json(const tokenizer *t, const char *path, const char *config_path, char *err, size_t cap) {
    int32_t nv = tokenizer_vocab_size(t);
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    for (int32_t i = 0; i < nv; i++) {
        size_t l;
        const char *s = tokenizer_id_to_token(t, i, &l);
        int ty = tokenizer_token_type(t, i);
        if (l == 0) continue;
        json_t *sv = json_stringn(s, l);
        if (!sv) {
            json_decref(vocab); json_decref(merges); json_decref(added);
            return errf(err, cap, "%s: token %d is not valid UTF-8", path, i);
        }
        json_decref(sv);
        if (!json_object_getn(vocab, s, l)) json_object_setn_new(vocab, s, l, json_integer(i));
        if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED)
            json_array_append_new(added, json_pack("{s:i,s:s%,s:b,s:b,s:b,s:b,s:b}", "id", (int)i, "content", s,
                                                   l, "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized",
                                                   ty == TOK_TYPE_USER_DEFINED, "special", ty == TOK_TYPE_CONTROL));
    }
    for (int32_t i = 0; i < tokenizer_n_merges(t); i++) {
        int32_t a, b;
        size_t la, lb;
        tokenizer_merge(t, i, &a, &b);
        const char *sa = tokenizer_id_to_token(t, a, &la), *sb = tokenizer_id_to_token(t, b, &lb);
        json_array_append_new(merges, json_pack("[s%,s%]", sa, la, sb, lb));
    }
    int32_t unk = tokenizer_unk_id(t), bos = tokenizer_bos_id(t);
    json_t *post;
    if (tokenizer_add_bos(t) && bos >= 0) {
        const char *bs = tokenizer_id_to_token(t, bos, NULL);
        post = json_pack("{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:[{s:{s:s,s:i}},{s:{s:s,s:i}},{s:{s:s,s:i}},{s:{s:s,s:i}}],"
                         "s:{s:{s:s,s:[i],s:[s]}}}",
                         "type", "TemplateProcessing",
                         "single", "SpecialToken", "id", bs, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                         "pair", "SpecialToken", "id", bs, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                         "SpecialToken", "id", bs, "type_id", 1, "Sequence", "id", "B", "type_id", 1,
                         "special_tokens", bs, "id", bs, "ids", (int)bos, "tokens", bs);
    } else {
        post = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
                         "use_regex", 0);
    }
    json_t *model = json_pack("{s:s,s:n,s:o,s:n,s:n,s:b,s:b,s:b,s:o,s:o}", "type", "BPE", "dropout",
                              "unk_token", unk >= 0 ? json_string(tokenizer_id_to_token(t, unk, NULL)) : json_null(),
                              "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                              "ignore_merges", tokenizer_ignore_merges(t), "vocab", vocab, "merges", merges);
    json_t *norm = !strcmp(tokenizer_normalizer(t), "nfc") ? json_pack("{s:s}", "type", "NFC") : json_null();
    json_t *root = json_pack("{s:s,s:n,s:n,s:o,s:o,s:o,s:o,s:{s:s,s:b,s:b,s:b},s:o}", "version", "1.0", "truncation",
                             "padding", "added_tokens", added, "normalizer", norm, "pre_tokenizer", pre_json(t),
                             "post_processor", post, "decoder", "type", "ByteLevel", "add_prefix_space", 1,
                             "trim_offsets", 1, "use_regex", 1, "model", model);
    if (!root) return errf(err, cap, "%s: could not build the JSON document", path);
    int rc = json_dump_file(root, path, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(root);
    if (rc) return errf(err, cap, "%s: write failed", path);
    if (!config_path) return 0;

    const char *ct = tokenizer_chat_template_text(t);
    char *own = NULL;
    if (!ct || chat_template_detect(ct) == NULL || strcmp(chat_template_detect(ct), tokenizer_chat_template_name(t))) {
        char *sys = chat_template_default_system(ct);
        own = chat_template_jinja(tokenizer_chat_template_name(t), sys);
        free(sys);
        if (!own) return errf(err, cap, "out of memory");
        ct = own;
    }
    json_t *cfg = json_pack("{s:b,s:b,s:s,s:s,s:i}", "add_bos_token", tokenizer_add_bos(t), "add_eos_token", 0,
                            "tokenizer_class", "PreTrainedTokenizerFast", "chat_template", ct, "model_max_length",
                            131072);
    free(own);
    json_object_set_new(cfg, "clean_up_tokenization_spaces", json_false());
    const char *keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    int32_t ids[4] = {bos, tokenizer_eos_id(t), tokenizer_pad_id(t), unk};
    for (int i = 0; i < 4; i++)
        if (ids[i] >= 0) json_object_set_new(cfg, keys[i], json_string(tokenizer_id_to_token(t, ids[i], NULL)));
    rc = json_dump_file(cfg, config_path, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(cfg);
    if (rc) return errf(err, cap, "%s: write failed", config_path);
    return 0;
}
