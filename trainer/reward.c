/* trainer/reward.c: the reward formula compiler (recursive descent to a
 * postfix stack program, errors with the column), its evaluator (domain
 * errors reported, never a crash), the weighted sum, masking and the
 * per-batch error-rate policy. */
#define _GNU_SOURCE
#include "reward.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum {
    OP_CONST, OP_VAR, OP_NEG, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW,
    OP_MIN, OP_MAX, OP_ABS, OP_FLOOR, OP_CEIL, OP_EXP, OP_SQRT, OP_LOG, OP_CLIP
};

typedef struct rf_op {
    int op;
    int arg;     /* OP_VAR: name index; OP_MIN/OP_MAX: argument count */
    int col;     /* 1-based column, for evaluation errors */
    double value;
} rf_op;

struct reward_formula {
    rf_op *ops;
    int n_ops, cap_ops;
    int max_depth;
    int n_names;
    unsigned char *uses; /* [n_names] */
};

/* ---- parser ---- */
typedef struct parser {
    const char *s;
    size_t pos;
    const char *const *names;
    int n_names;
    reward_formula *f;
    char *err;
    size_t err_cap;
    int failed;
    int depth, max_depth;
} parser;

static void skip_ws(parser *p) {
    while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r') p->pos++;
}

static int fail(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parser *p, size_t pos, const char *fmt, ...) {
    if (p->failed) return -1;
    p->failed = 1;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    errf(p->err, p->err_cap, "column %zu: %s", pos + 1, msg);
    return -1;
}

static int emit(parser *p, int op, int arg, double value, size_t pos, int stack_delta) {
    reward_formula *f = p->f;
    if (f->n_ops == f->cap_ops) {
        int cap = f->cap_ops ? f->cap_ops * 2 : 16;
        rf_op *q = realloc(f->ops, sizeof *q * cap);
        if (!q) return fail(p, pos, "out of memory");
        f->ops = q, f->cap_ops = cap;
    }
    f->ops[f->n_ops++] = (rf_op){op, arg, (int)pos + 1, value};
    p->depth += stack_delta;
    if (p->depth > p->max_depth) p->max_depth = p->depth;
    return 0;
}

static int parse_expr(parser *p);

static const struct {
    const char *name;
    int op, min_args, max_args;
} functions[] = {
    {"min", OP_MIN, 1, 1000}, {"max", OP_MAX, 1, 1000}, {"abs", OP_ABS, 1, 1},   {"floor", OP_FLOOR, 1, 1},
    {"ceil", OP_CEIL, 1, 1},  {"exp", OP_EXP, 1, 1},    {"sqrt", OP_SQRT, 1, 1}, {"log", OP_LOG, 1, 1},
    {"clip", OP_CLIP, 3, 3},
};

static void names_list(parser *p, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < p->n_names && used + 4 < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", p->names[i]);
}

static int parse_primary(parser *p) {
    skip_ws(p);
    size_t start = p->pos;
    char c = p->s[p->pos];
    if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)p->s[p->pos + 1]))) {
        char *end;
        double v = strtod(p->s + p->pos, &end);
        size_t len = (size_t)(end - (p->s + p->pos));
        /* strtod also takes hex, inf, nan: only plain decimal numbers here */
        for (size_t i = 0; i < len; i++) {
            char d = p->s[p->pos + i];
            if (!(isdigit((unsigned char)d) || d == '.' || d == 'e' || d == 'E' || d == '+' || d == '-'))
                return fail(p, start, "malformed number");
        }
        p->pos += len;
        if (isalpha((unsigned char)p->s[p->pos]) || p->s[p->pos] == '_')
            return fail(p, start, "malformed number");
        return emit(p, OP_CONST, 0, v, start, 1);
    }
    if (isalpha((unsigned char)c) || c == '_') {
        while (isalnum((unsigned char)p->s[p->pos]) || p->s[p->pos] == '_') p->pos++;
        size_t len = p->pos - start;
        char name[GRADER_NAME_MAX];
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), p->s + start);
        size_t after = p->pos;
        skip_ws(p);
        if (p->s[p->pos] == '(') { /* function call */
            int fi = -1;
            for (size_t k = 0; k < sizeof functions / sizeof functions[0]; k++)
                if (strlen(functions[k].name) == len && !strncmp(functions[k].name, p->s + start, len)) fi = (int)k;
            if (fi < 0)
                return fail(p, start,
                            "unknown function '%s' (functions: min, max, abs, floor, ceil, exp, sqrt, log, clip)",
                            name);
            p->pos++;
            int nargs = 0;
            skip_ws(p);
            if (p->s[p->pos] == ')') return fail(p, p->pos, "%s() needs an argument", name);
            for (;;) {
                if (parse_expr(p)) return -1;
                nargs++;
                skip_ws(p);
                if (p->s[p->pos] == ',') {
                    p->pos++;
                    continue;
                }
                if (p->s[p->pos] == ')') {
                    p->pos++;
                    break;
                }
                if (!p->s[p->pos]) return fail(p, p->pos, "expected ')' to close %s( at column %zu", name, start + 1);
                return fail(p, p->pos, "expected ',' or ')' in the arguments of %s, found '%c'", name, p->s[p->pos]);
            }
            if (nargs < functions[fi].min_args || nargs > functions[fi].max_args) {
                if (functions[fi].min_args == functions[fi].max_args)
                    return fail(p, start, "%s takes %d argument%s, got %d", name, functions[fi].min_args,
                                functions[fi].min_args == 1 ? "" : "s", nargs);
                return fail(p, start, "%s takes at least %d argument, got %d", name, functions[fi].min_args, nargs);
            }
            return emit(p, functions[fi].op, nargs, 0, start, 1 - nargs);
        }
        p->pos = after;
        for (int i = 0; i < p->n_names; i++)
            if (strlen(p->names[i]) == len && !strncmp(p->names[i], p->s + start, len)) {
                p->f->uses[i] = 1;
                return emit(p, OP_VAR, i, 0, start, 1);
            }
        for (size_t k = 0; k < sizeof functions / sizeof functions[0]; k++)
            if (strlen(functions[k].name) == len && !strncmp(functions[k].name, p->s + start, len))
                return fail(p, start, "%s is a function: write %s(...)", name, name);
        char list[300];
        names_list(p, list, sizeof list);
        return fail(p, start, "unknown name '%s' (graders: %s)", name, list[0] ? list : "none");
    }
    if (c == '(') {
        p->pos++;
        if (parse_expr(p)) return -1;
        skip_ws(p);
        if (p->s[p->pos] != ')') {
            if (!p->s[p->pos]) return fail(p, p->pos, "expected ')' to close the '(' at column %zu", start + 1);
            return fail(p, p->pos, "expected ')', found '%c'", p->s[p->pos]);
        }
        p->pos++;
        return 0;
    }
    if (!c) return fail(p, start, "unexpected end of the formula");
    if (strchr("+-*/^),", c)) return fail(p, start, "expected a number, grader name or '(' before '%c'", c);
    return fail(p, start, "unexpected character '%c'", c);
}

static int parse_unary(parser *p);

/* power := primary ('^' unary)?   right-associative, binds tighter than unary minus on its left */
static int parse_power(parser *p) {
    if (parse_primary(p)) return -1;
    skip_ws(p);
    size_t at = p->pos;
    int is_pow = p->s[p->pos] == '^' || (p->s[p->pos] == '*' && p->s[p->pos + 1] == '*');
    if (is_pow) {
        p->pos += p->s[p->pos] == '^' ? 1 : 2;
        if (parse_unary(p)) return -1;
        return emit(p, OP_POW, 0, 0, at, -1);
    }
    return 0;
}

static int parse_unary(parser *p) {
    skip_ws(p);
    size_t at = p->pos;
    if (p->s[p->pos] == '-') {
        p->pos++;
        if (parse_unary(p)) return -1;
        return emit(p, OP_NEG, 0, 0, at, 0);
    }
    if (p->s[p->pos] == '+') {
        p->pos++;
        return parse_unary(p);
    }
    return parse_power(p);
}

static int parse_term(parser *p) {
    if (parse_unary(p)) return -1;
    for (;;) {
        skip_ws(p);
        char c = p->s[p->pos];
        size_t at = p->pos;
        if ((c == '*' && p->s[p->pos + 1] != '*') || c == '/') {
            p->pos++;
            if (parse_unary(p)) return -1;
            if (emit(p, c == '*' ? OP_MUL : OP_DIV, 0, 0, at, -1)) return -1;
        } else {
            return 0;
        }
    }
}

static int parse_expr(parser *p) {
    if (parse_term(p)) return -1;
    for (;;) {
        skip_ws(p);
        char c = p->s[p->pos];
        size_t at = p->pos;
        if (c == '+' || c == '-') {
            p->pos++;
            if (parse_term(p)) return -1;
            if (emit(p, c == '+' ? OP_ADD : OP_SUB, 0, 0, at, -1)) return -1;
        } else {
            return 0;
        }
    }
}

reward_formula *reward_formula_parse(const char *text, const char *const *names, int n_names, char *err,
                                     size_t err_cap) {
    reward_formula *f = xcalloc(1, sizeof *f, err, err_cap);
    if (!f) return NULL;
    f->n_names = n_names;
    f->uses = xcalloc(n_names + 1, 1, err, err_cap);
    if (!f->uses) {
        reward_formula_free(f);
        return NULL;
    }
    parser p = {.s = text ? text : "", .names = names, .n_names = n_names, .f = f, .err = err, .err_cap = err_cap};
    skip_ws(&p);
    if (!p.s[p.pos]) {
        fail(&p, p.pos, "empty formula");
    } else if (parse_expr(&p) == 0) {
        skip_ws(&p);
        if (p.s[p.pos]) {
            if (p.s[p.pos] == ')')
                fail(&p, p.pos, "unmatched ')'");
            else
                fail(&p, p.pos, "unexpected '%c' after a complete expression (missing operator?)", p.s[p.pos]);
        }
    }
    if (p.failed) {
        reward_formula_free(f);
        return NULL;
    }
    f->max_depth = p.max_depth;
    return f;
}

int reward_formula_uses(const reward_formula *f, int i) { return i >= 0 && i < f->n_names && f->uses[i]; }

void reward_formula_free(reward_formula *f) {
    if (!f) return;
    free(f->ops);
    free(f->uses);
    free(f);
}

/* ---- evaluation ---- */
int reward_formula_eval(const reward_formula *f, const double *values, double *out, char *err, size_t err_cap) {
    double small[64];
    double *st = f->max_depth <= 64 ? small : malloc(sizeof *st * f->max_depth);
    if (!st) return errf(err, err_cap, "out of memory");
    int sp = 0, rc = 0;
    for (int k = 0; k < f->n_ops && rc == 0; k++) {
        const rf_op *o = &f->ops[k];
        double a, b;
        switch (o->op) {
        case OP_CONST: st[sp++] = o->value; break;
        case OP_VAR: st[sp++] = values[o->arg]; break;
        case OP_NEG: st[sp - 1] = -st[sp - 1]; break;
        case OP_ADD: sp--, st[sp - 1] += st[sp]; break;
        case OP_SUB: sp--, st[sp - 1] -= st[sp]; break;
        case OP_MUL: sp--, st[sp - 1] *= st[sp]; break;
        case OP_DIV:
            sp--;
            if (st[sp] == 0) rc = errf(err, err_cap, "division by zero (column %d)", o->col);
            else st[sp - 1] /= st[sp];
            break;
        case OP_POW:
            sp--;
            a = st[sp - 1], b = st[sp];
            if (a == 0 && b < 0) rc = errf(err, err_cap, "division by zero: 0 to a negative power (column %d)", o->col);
            else if (a < 0 && b != floor(b))
                rc = errf(err, err_cap, "negative number to a fractional power (column %d)", o->col);
            else st[sp - 1] = pow(a, b);
            break;
        case OP_MIN:
        case OP_MAX: {
            int n = o->arg;
            double m = st[sp - n];
            for (int i = 1; i < n; i++) {
                double v = st[sp - n + i];
                if (o->op == OP_MIN ? v < m : v > m) m = v;
            }
            sp -= n;
            st[sp++] = m;
            break;
        }
        case OP_ABS: st[sp - 1] = fabs(st[sp - 1]); break;
        case OP_FLOOR: st[sp - 1] = floor(st[sp - 1]); break;
        case OP_CEIL: st[sp - 1] = ceil(st[sp - 1]); break;
        case OP_EXP: st[sp - 1] = exp(st[sp - 1]); break;
        case OP_SQRT:
            if (st[sp - 1] < 0) rc = errf(err, err_cap, "sqrt of a negative number (column %d)", o->col);
            else st[sp - 1] = sqrt(st[sp - 1]);
            break;
        case OP_LOG:
            if (st[sp - 1] <= 0) rc = errf(err, err_cap, "log of a non-positive number (column %d)", o->col);
            else st[sp - 1] = log(st[sp - 1]);
            break;
        case OP_CLIP:
            sp -= 2;
            a = st[sp - 1];
            if (a < st[sp]) a = st[sp];
            if (a > st[sp + 1]) a = st[sp + 1];
            st[sp - 1] = a;
            break;
        }
        if (rc == 0 && sp > 0 && !isfinite(st[sp - 1]))
            rc = errf(err, err_cap, "non-finite value (column %d)", o->col);
    }
    if (rc == 0) *out = st[0];
    if (st != small) free(st);
    return rc;
}

/* ---- combination ---- */
int reward_spec_default(reward_spec *s, const char **names, int n, char *err, size_t err_cap) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->names = names;
    s->weights = xcalloc(n + 1, sizeof *s->weights, err, err_cap);
    s->used = xcalloc(n + 1, 1, err, err_cap);
    if (!s->weights || !s->used) {
        reward_spec_free(s);
        return -1;
    }
    for (int g = 0; g < n; g++) s->weights[g] = 1.0, s->used[g] = 1;
    s->on_error = REWARD_ON_ERROR_MASK;
    s->max_error_rate = REWARD_DEFAULT_MAX_ERROR_RATE;
    return 0;
}

void reward_spec_free(reward_spec *s) {
    free(s->weights);
    free(s->used);
    reward_formula_free(s->formula);
    memset(s, 0, sizeof *s);
}

int reward_combine(const reward_spec *s, const grade_result *results, double *reward, int *formula_error, char *why,
                   size_t why_cap) {
    double small[64];
    double *v = s->n <= 64 ? small : malloc(sizeof *v * s->n);
    if (formula_error) *formula_error = 0;
    if (!v) {
        errf(why, why_cap, "out of memory");
        return REWARD_MASKED;
    }
    int masked = 0;
    for (int g = 0; g < s->n; g++) {
        const grade_result *r = &results[g];
        v[g] = r->status == GRADE_OK ? r->score : 0;
        if (!s->used[g] || r->status == GRADE_OK) continue;
        if (r->status == GRADE_ERROR && s->on_error == REWARD_ON_ERROR_ZERO) continue;
        if (!masked) {
            if (r->status == GRADE_ABSTAIN)
                errf(why, why_cap, "%s: abstained", s->names[g]);
            else
                errf(why, why_cap, "%s: %s error", s->names[g], grade_kind_name(r->kind));
        }
        masked = 1;
    }
    int rc = REWARD_OK;
    if (masked) {
        rc = REWARD_MASKED;
    } else if (s->formula) {
        char e[200];
        if (reward_formula_eval(s->formula, v, reward, e, sizeof e)) {
            errf(why, why_cap, "reward.formula: %s", e);
            if (formula_error) *formula_error = 1;
            rc = REWARD_MASKED;
        }
    } else {
        double sum = 0;
        for (int g = 0; g < s->n; g++)
            if (s->used[g]) sum += s->weights[g] * v[g];
        if (!isfinite(sum)) {
            errf(why, why_cap, "reward.weights: non-finite weighted sum");
            if (formula_error) *formula_error = 1;
            rc = REWARD_MASKED;
        } else {
            *reward = sum;
        }
    }
    if (v != small) free(v);
    return rc;
}

int reward_batch(const reward_spec *s, const grade_result *results, int n, double *reward, unsigned char *valid) {
    int formula_errors = 0;
    for (int i = 0; i < n; i++) {
        int ferr = 0;
        char why[8];
        reward[i] = 0;
        valid[i] = reward_combine(s, results + (size_t)i * s->n, &reward[i], &ferr, why, sizeof why) == REWARD_OK;
        if (!valid[i]) reward[i] = 0;
        formula_errors += ferr;
    }
    return formula_errors;
}

int reward_check_errors(const reward_spec *s, const grade_result *results, int n, int n_formula_errors, char *err,
                        size_t err_cap) {
    if (n <= 0) return 0;
    for (int g = 0; g < s->n; g++) {
        int errors = 0, first = -1;
        for (int i = 0; i < n; i++)
            if (results[(size_t)i * s->n + g].status == GRADE_ERROR) {
                if (first < 0) first = i;
                errors++;
            }
        if (!errors) continue;
        const grade_result *r = &results[(size_t)first * s->n + g];
        if (s->on_error == REWARD_ON_ERROR_ABORT)
            return errf(err, err_cap, "grader '%s' failed and reward.on_error is abort: %s: %s", s->names[g],
                        grade_kind_name(r->kind), r->msg);
        double rate = (double)errors / n;
        if (rate > s->max_error_rate)
            return errf(err, err_cap,
                        "grader '%s' failed on %d of %d samples (%.1f%%), above reward.max_error_rate %g; first "
                        "error: %s: %s",
                        s->names[g], errors, n, 100.0 * rate, s->max_error_rate, grade_kind_name(r->kind), r->msg);
    }
    if (n_formula_errors && (double)n_formula_errors / n > s->max_error_rate)
        return errf(err, err_cap, "reward formula failed on %d of %d samples (%.1f%%), above reward.max_error_rate %g",
                    n_formula_errors, n, 100.0 * n_formula_errors / n, s->max_error_rate);
    return 0;
}
