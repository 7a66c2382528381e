/* trainer/grader_config.c: parsing `graders:` (built-in type or plugin path,
 * host keys timeout_ms / memory_mb / isolation, everything else handed to the
 * plugin as JSON) and `reward:` (weights or formula, on_error,
 * max_error_rate, workers) from libyaml nodes, with file:line errors. */
#define _GNU_SOURCE
#include "grader_config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "grader_item.h"
#include "util.h"

static int line_of(yaml_node_t *n) { return n ? (int)n->start_mark.line + 1 : 0; }

static const char *scalar(yaml_node_t *n) { return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL; }

static int is_plain(yaml_node_t *n) { return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

/* full-string integer / decimal parse of a plain scalar */
static int parse_int(const char *s, long long *v) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    int base = 10;
    const char *q = s + (*s == '-' || *s == '+');
    if (q[0] == '0' && (q[1] == 'x' || q[1] == 'X')) base = 16;
    else if (q[0] == '0' && q[1] == 'o') return 0;
    *v = strtoll(s, &end, base);
    return *end == 0 && errno == 0;
}

static int parse_real(const char *s, double *v) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return 0; /* no inf/nan/hex */
    if (!strpbrk(s, "0123456789")) return 0;
    char *end;
    *v = strtod(s, &end);
    return *end == 0 && isfinite(*v);
}

json_t *grader_yaml_to_json(yaml_document_t *doc, yaml_node_t *node) {
    if (!node) return json_null();
    switch (node->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)node->data.scalar.value;
        if (!is_plain(node)) return json_stringn(s, node->data.scalar.length);
        long long iv;
        double dv;
        if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
            return json_null();
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return json_true();
        if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return json_false();
        if (parse_int(s, &iv)) return json_integer(iv);
        if (parse_real(s, &dv)) return json_real(dv);
        return json_stringn(s, node->data.scalar.length);
    }
    case YAML_SEQUENCE_NODE: {
        json_t *a = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start; a && it < node->data.sequence.items.top; it++)
            json_array_append_new(a, grader_yaml_to_json(doc, yaml_document_get_node(doc, *it)));
        return a;
    }
    case YAML_MAPPING_NODE: {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; o && p < node->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            const char *ks = scalar(k);
            if (!ks) continue; /* complex keys have no JSON form */
            json_object_set_new(o, ks, grader_yaml_to_json(doc, yaml_document_get_node(doc, p->value)));
        }
        return o;
    }
    default: return json_null();
    }
}

static int get_positive_int(yaml_node_t *v, const char *path, const char *where, long long lo, long long hi,
                            long long *out, char *err, size_t cap) {
    long long x;
    if (!scalar(v) || !is_plain(v) || !parse_int(scalar(v), &x) || x < lo || x > hi)
        return errf(err, cap, "%s:%d: %s: expected an integer from %lld to %lld, got '%s'", path, line_of(v), where, lo,
                    hi, scalar(v) ? scalar(v) : "(not a scalar)");
    *out = x;
    return 0;
}

/* plugin path: absolute, else relative to the config file's directory, else to the working directory */
static int resolve_plugin(const char *cfg_path, const char *plugin, char *out, size_t cap) {
    struct stat st;
    char cand[GRADER_PATH_MAX * 2];
    if (plugin[0] != '/') {
        const char *slash = strrchr(cfg_path, '/');
        if (slash) {
            snprintf(cand, sizeof cand, "%.*s/%s", (int)(slash - cfg_path), cfg_path, plugin);
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) goto found;
        }
    }
    snprintf(cand, sizeof cand, "%s", plugin);
    if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) goto found;
    return -1;
found:;
    char *real = realpath(cand, NULL);
    snprintf(out, cap, "%.4000s", real ? real : cand);
    free(real);
    return 0;
}

static int parse_grader(yaml_document_t *doc, yaml_node_t *key, yaml_node_t *val, const char *path, grader_spec *g,
                        char *err, size_t cap) {
    const char *name = scalar(key);
    char where[GRADER_NAME_MAX + 32];
    snprintf(where, sizeof where, "graders.%s", name ? name : "?");
    if (!val || val->type != YAML_MAPPING_NODE)
        return errf(err, cap, "%s:%d: %s: expected a mapping with `type:` (a built-in grader) or `plugin:` (a .so)",
                    path, line_of(val ? val : key), where);
    g->timeout_ms = GRADER_DEFAULT_TIMEOUT_MS;
    g->memory_mb = GRADER_DEFAULT_MEMORY_MB;
    g->isolation = GRADER_ISOLATION_PROCESS;
    yaml_node_t *type = NULL, *plugin = NULL, *config = NULL;
    json_t *extra = json_object();
    int rc = -1;
    if (!extra) return errf(err, cap, "out of memory");
    for (yaml_node_pair_t *p = val->data.mapping.pairs.start; p < val->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
        const char *ks = scalar(k);
        if (!ks) {
            errf(err, cap, "%s:%d: %s: keys must be plain names", path, line_of(k), where);
            goto done;
        }
        char w2[GRADER_NAME_MAX + 64];
        snprintf(w2, sizeof w2, "%s.%s", where, ks);
        long long x;
        if (!strcmp(ks, "type")) {
            if (!scalar(v) || !*scalar(v)) {
                errf(err, cap, "%s:%d: %s: expected the name of a built-in grader", path, line_of(v), w2);
                goto done;
            }
            type = v;
        } else if (!strcmp(ks, "plugin")) {
            if (!scalar(v) || !*scalar(v)) {
                errf(err, cap, "%s:%d: %s: expected the path of a grader plugin (.so)", path, line_of(v), w2);
                goto done;
            }
            plugin = v;
        } else if (!strcmp(ks, "timeout_ms")) {
            if (get_positive_int(v, path, w2, 1, 24LL * 3600 * 1000, &x, err, cap)) goto done;
            g->timeout_ms = (int)x;
        } else if (!strcmp(ks, "memory_mb")) {
            if (get_positive_int(v, path, w2, 16, 1 << 20, &x, err, cap)) goto done;
            g->memory_mb = (int)x;
        } else if (!strcmp(ks, "isolation")) {
            const char *s = scalar(v);
            if (s && !strcmp(s, "process")) g->isolation = GRADER_ISOLATION_PROCESS;
            else if (s && !strcmp(s, "inline")) g->isolation = GRADER_ISOLATION_INLINE;
            else {
                errf(err, cap, "%s:%d: %s: expected process or inline, got '%s'", path, line_of(v), w2, s ? s : "?");
                goto done;
            }
        } else if (!strcmp(ks, "config")) {
            if (v->type != YAML_MAPPING_NODE && !(is_plain(v) && !*scalar(v))) { /* empty = {} */
                errf(err, cap, "%s:%d: %s: expected a mapping", path, line_of(v), w2);
                goto done;
            }
            config = v;
        } else {
            json_object_set_new(extra, ks, grader_yaml_to_json(doc, v));
        }
    }
    if (type && plugin) {
        errf(err, cap, "%s:%d: %s: give either `type:` (built-in) or `plugin:` (a .so), not both", path, line_of(val),
             where);
        goto done;
    }
    if (!type && !plugin) {
        errf(err, cap,
             "%s:%d: %s: missing `type:` (a built-in grader: string_check, text_similarity, regex, numeric, json) or "
             "`plugin:` (path to a grader .so)",
             path, line_of(val), where);
        goto done;
    }
    json_t *cfg = config && config->type == YAML_MAPPING_NODE ? grader_yaml_to_json(doc, config) : json_object();
    if (type) {
        char e2[600];
        snprintf(g->type, sizeof g->type, "%s", scalar(type));
        if (grader_find_builtin(scalar(type), g->path, sizeof g->path, e2, sizeof e2)) {
            json_decref(cfg);
            errf(err, cap, "%s:%d: %s.type: %s", path, line_of(type), where, e2);
            goto done;
        }
        /* built-in: every non-host key, plus any `config:` entries */
        json_object_update(extra, cfg);
        json_decref(cfg);
        g->config_json = grader_json_compact(extra, NULL);
    } else {
        if (json_object_size(extra)) {
            const char *k0 = json_object_iter_key(json_object_iter(extra));
            json_decref(cfg);
            errf(err, cap,
                 "%s:%d: %s: unknown key '%s' for a plugin grader (plugin settings go under `config:`; host keys: "
                 "plugin, config, timeout_ms, memory_mb, isolation)",
                 path, line_of(val), where, k0);
            goto done;
        }
        if (resolve_plugin(path, scalar(plugin), g->path, sizeof g->path)) {
            json_decref(cfg);
            errf(err, cap, "%s:%d: %s.plugin: grader plugin '%s' not found (relative paths are tried from the config "
                           "file's directory, then the working directory)",
                 path, line_of(plugin), where, scalar(plugin));
            goto done;
        }
        g->config_json = grader_json_compact(cfg, NULL);
        json_decref(cfg);
    }
    if (!g->config_json) {
        errf(err, cap, "out of memory");
        goto done;
    }
    rc = 0;
done:
    json_decref(extra);
    return rc;
}

static int parse_reward(yaml_document_t *doc, yaml_node_t *reward, const char *path, grader_config *c, char *err,
                        size_t cap) {
    reward_spec *s = &c->reward;
    if (reward_spec_default(s, c->names, c->n_graders, err, cap)) return -1;
    if (!reward || (reward->type == YAML_SCALAR_NODE && is_plain(reward) && !*scalar(reward))) return 0;
    if (reward->type != YAML_MAPPING_NODE)
        return errf(err, cap, "%s:%d: reward: expected a mapping (weights or formula, on_error, max_error_rate)", path,
                    line_of(reward));
    yaml_node_t *weights = NULL, *formula = NULL;
    char names[600] = "";
    for (int g = 0; g < c->n_graders; g++)
        if (strlen(names) + strlen(c->names[g]) + 3 < sizeof names) {
            if (g) strcat(names, ", ");
            strcat(names, c->names[g]);
        }
    for (yaml_node_pair_t *p = reward->data.mapping.pairs.start; p < reward->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
        const char *ks = scalar(k);
        if (!ks) return errf(err, cap, "%s:%d: reward: keys must be plain names", path, line_of(k));
        if (!strcmp(ks, "weights")) {
            if (v->type != YAML_MAPPING_NODE)
                return errf(err, cap, "%s:%d: reward.weights: expected a mapping {grader: weight}", path, line_of(v));
            weights = v;
        } else if (!strcmp(ks, "formula")) {
            if (!scalar(v)) return errf(err, cap, "%s:%d: reward.formula: expected a string", path, line_of(v));
            formula = v;
        } else if (!strcmp(ks, "on_error")) {
            const char *x = scalar(v);
            if (x && !strcmp(x, "mask")) s->on_error = REWARD_ON_ERROR_MASK;
            else if (x && !strcmp(x, "zero")) s->on_error = REWARD_ON_ERROR_ZERO;
            else if (x && !strcmp(x, "abort")) s->on_error = REWARD_ON_ERROR_ABORT;
            else
                return errf(err, cap, "%s:%d: reward.on_error: expected mask, zero or abort, got '%s'", path,
                            line_of(v), x ? x : "?");
        } else if (!strcmp(ks, "max_error_rate")) {
            double x;
            if (!scalar(v) || !is_plain(v) || !parse_real(scalar(v), &x) || x < 0 || x > 1)
                return errf(err, cap, "%s:%d: reward.max_error_rate: expected a number from 0 to 1, got '%s'", path,
                            line_of(v), scalar(v) ? scalar(v) : "?");
            s->max_error_rate = x;
        } else if (!strcmp(ks, "workers")) {
            long long x;
            if (get_positive_int(v, path, "reward.workers", 1, 1024, &x, err, cap)) return -1;
            c->workers = (int)x;
        } else {
            return errf(err, cap,
                        "%s:%d: reward: unknown key '%s' (keys: weights, formula, on_error, max_error_rate, workers)",
                        path, line_of(k), ks);
        }
    }
    if (weights && formula)
        return errf(err, cap, "%s:%d: reward: give either weights or formula, not both", path, line_of(formula));
    if (weights) {
        for (int g = 0; g < c->n_graders; g++) s->weights[g] = 0, s->used[g] = 0;
        for (yaml_node_pair_t *p = weights->data.mapping.pairs.start; p < weights->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
            const char *ks = scalar(k);
            int g = -1;
            for (int j = 0; ks && j < c->n_graders; j++)
                if (!strcmp(c->names[j], ks)) g = j;
            if (g < 0)
                return errf(err, cap, "%s:%d: reward.weights: unknown grader '%s' (graders: %s)", path, line_of(k),
                            ks ? ks : "?", names);
            double w;
            if (!scalar(v) || !is_plain(v) || !parse_real(scalar(v), &w))
                return errf(err, cap, "%s:%d: reward.weights.%s: expected a number, got '%s'", path, line_of(v), ks,
                            scalar(v) ? scalar(v) : "?");
            s->weights[g] = w;
            s->used[g] = w != 0;
        }
    }
    if (formula) {
        char e2[600];
        s->formula = reward_formula_parse(scalar(formula), c->names, c->n_graders, e2, sizeof e2);
        if (!s->formula) {
            int line = line_of(formula);
            return errf(err, cap, "%s:%d: reward.formula: %s", path, line, e2);
        }
        for (int g = 0; g < c->n_graders; g++) s->used[g] = (unsigned char)reward_formula_uses(s->formula, g);
        free(s->weights);
        s->weights = NULL;
    }
    return 0;
}

int grader_config_parse(yaml_document_t *doc, yaml_node_t *graders, yaml_node_t *reward, const char *path,
                        grader_config *out, char *err, size_t err_cap) {
    memset(out, 0, sizeof *out);
    if (!graders || graders->type != YAML_MAPPING_NODE ||
        graders->data.mapping.pairs.top == graders->data.mapping.pairs.start)
        return errf(err, err_cap, "%s:%d: graders: expected a mapping of at least one grader (name: {type: ...})", path,
                    line_of(graders));
    int n = (int)(graders->data.mapping.pairs.top - graders->data.mapping.pairs.start);
    out->graders = xcalloc(n, sizeof *out->graders, err, err_cap);
    out->names = xcalloc(n, sizeof *out->names, err, err_cap);
    if (!out->graders || !out->names) goto fail;
    for (int g = 0; g < n; g++) {
        yaml_node_pair_t *p = &graders->data.mapping.pairs.start[g];
        yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
        const char *name = scalar(k);
        if (!name || !*name || strlen(name) >= GRADER_NAME_MAX) {
            errf(err, err_cap, "%s:%d: graders: a grader name must be a non-empty string under %d characters", path,
                 line_of(k), GRADER_NAME_MAX);
            goto fail;
        }
        for (int j = 0; j < g; j++)
            if (!strcmp(out->graders[j].name, name)) {
                errf(err, err_cap, "%s:%d: graders.%s: defined twice", path, line_of(k), name);
                goto fail;
            }
        snprintf(out->graders[g].name, GRADER_NAME_MAX, "%s", name);
        out->n_graders = g + 1;
        out->names[g] = out->graders[g].name;
        if (parse_grader(doc, k, v, path, &out->graders[g], err, err_cap)) goto fail;
    }
    if (parse_reward(doc, reward, path, out, err, err_cap)) goto fail;
    return 0;
fail:
    grader_config_free(out);
    return -1;
}

int grader_config_load(const char *path, grader_config *out, char *err, size_t err_cap) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return errf(err, err_cap, "%s: cannot open: %s", path, strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = -1;
    if (!yaml_parser_load(&parser, &doc)) {
        errf(err, err_cap, "%s:%d: YAML syntax error: %s%s%s", path, (int)parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "?", parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        errf(err, err_cap, "%s:%d: expected a mapping of sections (graders:, reward:, ...)", path, line_of(root));
        goto done;
    }
    yaml_node_t *graders = NULL, *reward = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(&doc, p->key));
        if (k && !strcmp(k, "graders")) graders = yaml_document_get_node(&doc, p->value);
        if (k && !strcmp(k, "reward")) reward = yaml_document_get_node(&doc, p->value);
    }
    if (!graders) {
        errf(err, err_cap, "%s: no `graders:` section", path);
        goto done;
    }
    rc = grader_config_parse(&doc, graders, reward, path, out, err, err_cap);
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

void grader_config_free(grader_config *c) {
    if (c->graders)
        for (int g = 0; g < c->n_graders; g++) free(c->graders[g].config_json);
    free(c->graders);
    free(c->names);
    reward_spec_free(&c->reward);
    memset(c, 0, sizeof *c);
}
