/* trainer/dataset.c: JSONL loading, validation and tokenization of rows (see
 * dataset.h), and the seeded epoch permutation. */
#include "dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "grader_item.h"
#include "util.h"

static const char *const ROLES[] = {"system", "user", "assistant", "tool", "developer", NULL};

static int role_ok(const char *r) {
    for (int i = 0; ROLES[i]; i++)
        if (!strcmp(r, ROLES[i])) return 1;
    return 0;
}

/* Every "{{item.PATH}}" in the strings of v must resolve in row. */
static int check_templates(const json_t *v, const json_t *row, char *missing, size_t cap) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        while ((s = strstr(s, "{{"))) {
            const char *e = strstr(s, "}}");
            if (!e) break;
            const char *p = s + 2;
            while (p < e && *p == ' ') p++;
            if (!strncmp(p, "item.", 5)) {
                char path[256];
                const char *q = p + 5, *qe = e;
                while (qe > q && qe[-1] == ' ') qe--;
                size_t n = (size_t)(qe - q);
                if (n < sizeof path) {
                    memcpy(path, q, n);
                    path[n] = 0;
                    if (!grader_json_path(row, path)) {
                        snprintf(missing, cap, "%s", path);
                        return -1;
                    }
                }
            }
            s = e + 2;
        }
        return 0;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (check_templates(x, row, missing, cap)) return -1;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (check_templates(x, row, missing, cap)) return -1;
    }
    return 0;
}

/* Tokenizes one validated row. */
static int row_encode(const tokenizer *tok, const dataset_opts *o, json_t *row, data_row *r, const char *path,
                      int line, char *err, size_t cap) {
    tok_ids ids = {0}, ans = {0};
    char why[512];
    json_t *msgs = json_object_get(row, "messages"), *prompt = json_object_get(row, "prompt");
    const char *answer = NULL;
    if (msgs) {
        size_t n = json_array_size(msgs);
        chat_msg *cm = calloc(n ? n : 1, sizeof *cm);
        if (!cm) return errf(err, cap, "%s:%d: out of memory", path, line);
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(msgs, i);
            cm[i].role = json_string_value(json_object_get(m, "role"));
            cm[i].content = json_string_value(json_object_get(m, "content"));
        }
        size_t n_prompt = n;
        if (!strcmp(cm[n - 1].role, "assistant")) {
            answer = cm[n - 1].content;
            n_prompt = n - 1;
        }
        int rc = n_prompt ? chat_encode(tok, cm, n_prompt, 1, &ids, why, sizeof why) : -1;
        if (!n_prompt) snprintf(why, sizeof why, "no prompt turns before the answer");
        free(cm);
        if (rc) return errf(err, cap, "%s:%d: messages: %s", path, line, why);
    } else {
        const char *p = json_string_value(prompt);
        if (tokenizer_encode(tok, p, strlen(p), TOK_ALLOW_SPECIAL | TOK_ADD_SPECIAL, &ids, why, sizeof why))
            return errf(err, cap, "%s:%d: prompt: %s", path, line, why);
        answer = json_string_value(json_object_get(row, "completion"));
    }
    if (ids.n == 0) {
        free(ids.ids);
        return errf(err, cap, "%s:%d: %s: the prompt tokenizes to nothing", path, line, msgs ? "messages" : "prompt");
    }
    if ((int)ids.n > o->max_prompt_tokens || (int)ids.n + 1 > o->max_seq) {
        int lim = o->max_prompt_tokens < o->max_seq - 1 ? o->max_prompt_tokens : o->max_seq - 1;
        free(ids.ids);
        return errf(err, cap, "%s:%d: %s: prompt has %zu tokens, more than %d (data.max_prompt_tokens / model context)",
                    path, line, msgs ? "messages" : "prompt", ids.n, lim);
    }
    if (o->need_answer && !answer) {
        free(ids.ids);
        return errf(err, cap, "%s:%d: %s: sft needs an answer (a final assistant turn, or a completion field)", path,
                    line, msgs ? "messages" : "completion");
    }
    if (answer) {
        if (tokenizer_encode(tok, answer, strlen(answer), 0, &ans, why, sizeof why)) {
            free(ids.ids);
            return errf(err, cap, "%s:%d: answer: %s", path, line, why);
        }
        if (o->end_of_turn >= 0) {
            int32_t *np = realloc(ans.ids, (ans.n + 1) * sizeof(int32_t));
            if (!np) {
                free(ids.ids), free(ans.ids);
                return errf(err, cap, "out of memory");
            }
            ans.ids = np;
            ans.ids[ans.n++] = o->end_of_turn;
        }
        if ((int)(ids.n + ans.n) > o->max_seq) {
            free(ids.ids), free(ans.ids);
            return errf(err, cap, "%s:%d: answer: prompt + answer have %zu tokens, more than the context %d", path,
                        line, ids.n + ans.n, o->max_seq);
        }
        r->answer = ans.ids;
        r->n_answer = (int)ans.n;
    }
    r->prompt = ids.ids;
    r->n_prompt = (int)ids.n;
    return 0;
}

/* Structural checks of one parsed row. */
/* cfgs[g]: grader g's parsed config (parsed once per file, NULL if absent) */
static int row_check(const json_t *row, const dataset_opts *o, json_t *const *cfgs, const char *path, int line, char *err,
                     size_t cap) {
    if (!json_is_object(row)) return errf(err, cap, "%s:%d: a row must be a JSON object", path, line);
    json_t *msgs = json_object_get(row, "messages"), *prompt = json_object_get(row, "prompt");
    if (msgs && prompt) return errf(err, cap, "%s:%d: give either messages or prompt, not both", path, line);
    if (!msgs && !prompt) return errf(err, cap, "%s:%d: messages: missing (or a prompt string)", path, line);
    if (prompt && !json_is_string(prompt)) return errf(err, cap, "%s:%d: prompt: must be a string", path, line);
    if (prompt && !json_string_length(prompt)) return errf(err, cap, "%s:%d: prompt: is empty", path, line);
    if (msgs) {
        if (!json_is_array(msgs) || !json_array_size(msgs))
            return errf(err, cap, "%s:%d: messages: must be a non-empty array", path, line);
        size_t n = json_array_size(msgs);
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(msgs, i);
            json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
            if (!json_is_object(m)) return errf(err, cap, "%s:%d: messages[%zu]: must be an object", path, line, i);
            if (!json_is_string(role)) return errf(err, cap, "%s:%d: messages[%zu].role: missing", path, line, i);
            if (!role_ok(json_string_value(role)))
                return errf(err, cap, "%s:%d: messages[%zu].role: '%s' is not system, user, assistant, tool or developer",
                            path, line, i, json_string_value(role));
            if (!json_is_string(content))
                return errf(err, cap, "%s:%d: messages[%zu].content: must be a string", path, line, i);
        }
        const char *last = json_string_value(json_object_get(json_array_get(msgs, n - 1), "role"));
        if (o->need_answer ? strcmp(last, "assistant") && strcmp(last, "user") : strcmp(last, "user") != 0)
            return errf(err, cap, "%s:%d: messages[%zu].role: the last turn must be from the user (is '%s')", path,
                        line, n - 1, last);
    }
    for (int g = 0; g < o->n_graders && g < 64; g++) {
        char missing[256];
        if (cfgs[g] && check_templates(cfgs[g], row, missing, sizeof missing))
            return errf(err, cap, "%s:%d: %s: missing, but grader '%s' reads {{item.%s}}", path, line, missing,
                        o->graders[g].name, missing);
    }
    return 0;
}

int dataset_load(const char *path, const tokenizer *tok, const dataset_opts *o, dataset *d, char *err, size_t cap) {
    memset(d, 0, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return errf(err, cap, "%s: %s", path, strerror(errno));
    json_t *cfgs[64] = {0};
    int n_cfg = o->n_graders < 64 ? o->n_graders : 64;
    for (int g = 0; g < n_cfg; g++) cfgs[g] = json_loads(o->graders[g].config_json, 0, NULL);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int lineno = 0, cap_rows = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        size_t k = 0;
        while ((ssize_t)k < len && (line[k] == ' ' || line[k] == '\t')) k++;
        if ((ssize_t)k == len) continue; /* blank line */
        json_error_t je;
        json_t *row = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
        if (!row) {
            errf(err, cap, "%s:%d: invalid JSON at column %d: %s", path, lineno, je.column, je.text);
            goto fail;
        }
        if (row_check(row, o, cfgs, path, lineno, err, cap)) {
            json_decref(row);
            goto fail;
        }
        if (d->n == cap_rows) {
            cap_rows = cap_rows ? cap_rows * 2 : 256;
            data_row *nr = realloc(d->rows, cap_rows * sizeof *nr);
            if (!nr) {
                json_decref(row);
                errf(err, cap, "%s: out of memory", path);
                goto fail;
            }
            d->rows = nr;
        }
        data_row *r = &d->rows[d->n];
        memset(r, 0, sizeof *r);
        r->json = row;
        r->line = lineno;
        if (row_encode(tok, o, row, r, path, lineno, err, cap)) {
            json_decref(row);
            goto fail;
        }
        d->n++;
    }
    free(line);
    line = NULL;
    if (ferror(f)) {
        errf(err, cap, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    for (int g = 0; g < n_cfg; g++) json_decref(cfgs[g]);
    if (d->n == 0) {
        dataset_free(d);
        return errf(err, cap, "%s: no rows", path);
    }
    return 0;
fail:
    free(line);
    fclose(f);
    for (int g = 0; g < n_cfg; g++) json_decref(cfgs[g]);
    dataset_free(d);
    return -1;
}

void dataset_free(dataset *d) {
    for (int i = 0; i < d->n; i++) {
        json_decref(d->rows[i].json);
        free(d->rows[i].prompt);
        free(d->rows[i].answer);
    }
    free(d->rows);
    d->rows = NULL;
    d->n = 0;
}

void dataset_epoch_order(int n, uint64_t seed, int epoch, int32_t *perm) {
    for (int i = 0; i < n; i++) perm[i] = i;
    uint64_t key = rng_key(seed, 0xDA7A, (uint64_t)epoch, 0);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_u64(key, (uint64_t)i) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
