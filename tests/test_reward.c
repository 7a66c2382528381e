/* tests/test_reward.c: the reward formula language (precedence, associativity,
 * functions, errors with their column, evaluation errors such as division by
 * zero reported instead of crashing) and the combination policy (weights,
 * masking of abstentions and errors, on_error zero, max_error_rate). Expected
 * values are the same expressions written in C. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "reward.h"

#include "check.h"

static const char *names[] = {"correct", "format", "len_penalty", "x2"};

static void expect_value(const char *text, const double *vals, double want) {
    char err[300];
    reward_formula *f = reward_formula_parse(text, names, 4, err, sizeof err);
    CHECK(f != NULL, "'%s' did not parse: %s", text, err);
    if (!f) return;
    double got = NAN;
    int rc = reward_formula_eval(f, vals, &got, err, sizeof err);
    CHECK(rc == 0 && fabs(got - want) <= 1e-12 * (1 + fabs(want)), "'%s' = %.17g (rc %d %s), want %.17g", text, got,
          rc, rc ? err : "", want);
    reward_formula_free(f);
}

static void expect_parse_error(const char *text, const char *want) {
    char err[300] = "";
    reward_formula *f = reward_formula_parse(text, names, 4, err, sizeof err);
    CHECK(f == NULL, "'%s' parsed but should fail with '%s'", text, want);
    CHECK(strstr(err, want) != NULL, "'%s': error '%s' does not contain '%s'", text, err, want);
    reward_formula_free(f);
}

static void expect_eval_error(const char *text, const double *vals, const char *want) {
    char err[300] = "";
    reward_formula *f = reward_formula_parse(text, names, 4, err, sizeof err);
    CHECK(f != NULL, "'%s' did not parse: %s", text, err);
    if (!f) return;
    double got = 12345;
    int rc = reward_formula_eval(f, vals, &got, err, sizeof err);
    CHECK(rc == -1 && strstr(err, want), "'%s': rc %d err '%s' (want '%s'), value %g", text, rc, err, want, got);
    reward_formula_free(f);
}

static grade_result ok(double s) { return (grade_result){.score = s, .status = GRADE_OK}; }

int main(void) {
    const double v[4] = {1.0, 0.5, 0.25, -3.0};
    const double c = v[0], f = v[1], l = v[2], x = v[3];
    /* precedence and associativity */
    expect_value("1 + 2 * 3", v, 7);
    expect_value("(1 + 2) * 3", v, 9);
    expect_value("10 - 4 - 3", v, 3);
    expect_value("64 / 4 / 2", v, 8);
    expect_value("2 ^ 3 ^ 2", v, 512);
    expect_value("2 ** 3", v, 8);
    expect_value("-2 ^ 2", v, -4);
    expect_value("2 ^ -1", v, 0.5);
    expect_value("- -3", v, 3);
    expect_value("+4 - -2", v, 6);
    expect_value("2 * 3 ^ 2", v, 18);
    expect_value("1.5e1 + .5", v, 15.5);
    /* names and the design doc's example */
    expect_value("correct * (0.9 + 0.1 * format)", v, c * (0.9 + 0.1 * f));
    expect_value("correct - len_penalty * x2", v, c - l * x);
    expect_value("x2^2", v, x * x);
    expect_value("-x2^2", v, -(x * x));
    /* functions */
    expect_value("min(correct, format, len_penalty)", v, l);
    expect_value("max(format, x2)", v, f);
    expect_value("min(7)", v, 7);
    expect_value("abs(x2) + floor(2.7) + ceil(2.1)", v, 3 + 2 + 3);
    expect_value("exp(1)", v, exp(1));
    expect_value("sqrt(16) * log(exp(2))", v, 8);
    expect_value("clip(x2, 0, 1) + clip(5, 0, 1) + clip(format, 0, 1)", v, 0 + 1 + f);
    expect_value("  clip( correct*2 ,0,1.5 )", v, 1.5);
    expect_value("max(min(correct, 0.3), format / 2)", v, 0.3);

    /* parse errors point at the column */
    expect_parse_error("corect + format", "column 1: unknown name 'corect' (graders: correct, format, len_penalty, x2)");
    expect_parse_error("correct + 0.1 * frmat", "column 17: unknown name 'frmat'");
    expect_parse_error("1 +", "column 4: unexpected end of the formula");
    expect_parse_error("(1 + 2", "column 7: expected ')' to close the '(' at column 1");
    expect_parse_error("1 + 2)", "column 6: unmatched ')'");
    expect_parse_error("correct format", "column 9: unexpected 'f' after a complete expression");
    expect_parse_error("1 + # 2", "column 5: unexpected character '#'");
    expect_parse_error("foo(1)", "column 1: unknown function 'foo'");
    expect_parse_error("clip(1, 2)", "column 1: clip takes 3 arguments, got 2");
    expect_parse_error("sqrt(1, 2)", "sqrt takes 1 argument, got 2");
    expect_parse_error("max()", "column 5: max() needs an argument");
    expect_parse_error("2 * max", "column 5: max is a function");
    expect_parse_error("", "column 1: empty formula");
    expect_parse_error("1 * * 2", "column 5: expected a number");
    expect_parse_error("3correct", "column 1: malformed number");
    expect_parse_error("0x10", "column 1: malformed number");

    /* evaluation errors are errors, not crashes or NaN */
    expect_eval_error("correct / (format - 0.5)", v, "division by zero (column 9)");
    expect_eval_error("log(format - 0.5)", v, "log of a non-positive number");
    expect_eval_error("log(x2)", v, "log of a non-positive number");
    expect_eval_error("sqrt(x2)", v, "sqrt of a negative number");
    expect_eval_error("x2 ^ 0.5", v, "negative number to a fractional power");
    expect_eval_error("0 ^ -1", v, "division by zero");
    expect_eval_error("exp(1000)", v, "non-finite value");
    expect_eval_error("10 ^ 400", v, "non-finite value");

    /* random text never crashes the parser; what parses evaluates to a finite
       value or a reported error, never NaN (counter-based generator: fixed cases) */
    {
        const char alphabet[] = "0123456789.e+-*/^(),  correct format x2 min max clip log sqrt abs #";
        unsigned long long st = 0x9E3779B97F4A7C15ull;
        int parsed = 0;
        for (int t = 0; t < 20000; t++) {
            char text[40];
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            int len = 1 + (int)((st >> 33) % 30);
            for (int i = 0; i < len; i++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                text[i] = alphabet[(st >> 33) % (sizeof alphabet - 1)];
            }
            text[len] = 0;
            char err[300];
            reward_formula *fm = reward_formula_parse(text, names, 4, err, sizeof err);
            if (!fm) {
                CHECK(!strncmp(err, "column ", 7), "'%s': error without a column: %s", text, err);
                continue;
            }
            parsed++;
            double got = 0;
            int rc = reward_formula_eval(fm, v, &got, err, sizeof err);
            CHECK(rc == -1 || isfinite(got), "'%s' evaluated to %g", text, got);
            reward_formula_free(fm);
        }
        CHECK(parsed > 100, "only %d random formulas parsed", parsed);
    }

    /* uses */
    {
        char err[200];
        reward_formula *fm = reward_formula_parse("correct + 2 * x2", names, 4, err, sizeof err);
        CHECK(fm && reward_formula_uses(fm, 0) && !reward_formula_uses(fm, 1) && reward_formula_uses(fm, 3),
              "uses() wrong");
        reward_formula_free(fm);
    }

    /* combination: weights, masking, on_error */
    reward_spec s;
    char err[300], why[200];
    CHECK(reward_spec_default(&s, names, 4, err, sizeof err) == 0, "default spec");
    s.weights[0] = 1.0, s.weights[1] = 0.1, s.weights[2] = -1.0, s.used[3] = 0;
    grade_result row[4] = {ok(1), ok(0.5), ok(0.2), ok(99)};
    double r = 0;
    int ferr;
    CHECK(reward_combine(&s, row, &r, &ferr, why, sizeof why) == REWARD_OK && fabs(r - (1 + 0.05 - 0.2)) < 1e-15,
          "weighted sum %g", r);
    row[3].status = GRADE_ERROR; /* not used: no effect */
    CHECK(reward_combine(&s, row, &r, &ferr, why, sizeof why) == REWARD_OK, "unused grader error masked the reward");
    row[1].status = GRADE_ABSTAIN;
    CHECK(reward_combine(&s, row, &r, &ferr, why, sizeof why) == REWARD_MASKED && !strcmp(why, "format: abstained"),
          "abstain must mask: %s", why);
    row[1] = ok(0.5);
    row[2].status = GRADE_ERROR, row[2].kind = GRADE_KIND_TIMEOUT;
    CHECK(reward_combine(&s, row, &r, &ferr, why, sizeof why) == REWARD_MASKED &&
              !strcmp(why, "len_penalty: timeout error"),
          "error must mask: %s", why);
    s.on_error = REWARD_ON_ERROR_ZERO;
    CHECK(reward_combine(&s, row, &r, &ferr, why, sizeof why) == REWARD_OK && fabs(r - 1.05) < 1e-15,
          "on_error zero: %g", r);
    row[1].status = GRADE_ABSTAIN; /* abstain stays masked with on_error zero */
    CHECK(reward_combine(&s, row, &r, &ferr, why, sizeof why) == REWARD_MASKED, "abstain with on_error zero");
    /* formula */
    s.on_error = REWARD_ON_ERROR_MASK;
    s.formula = reward_formula_parse("correct / format", names, 4, err, sizeof err);
    memset(s.used, 0, 4);
    s.used[0] = s.used[1] = 1;
    grade_result row2[4] = {ok(1), ok(0), ok(0), ok(0)};
    CHECK(reward_combine(&s, row2, &r, &ferr, why, sizeof why) == REWARD_MASKED && ferr &&
              strstr(why, "reward.formula: division by zero"),
          "formula error must mask: %s", why);
    row2[1] = ok(4);
    CHECK(reward_combine(&s, row2, &r, &ferr, why, sizeof why) == REWARD_OK && r == 0.25 && !ferr, "formula %g", r);

    /* a batch: rewards and the validity mask */
    {
        grade_result rows[3 * 4] = {ok(1), ok(4), ok(0), ok(0), ok(1), ok(0), ok(0), ok(0), ok(2), ok(8), ok(0), ok(0)};
        rows[2 * 4 + 3].status = GRADE_ERROR; /* unused grader: no effect */
        double rw[3];
        unsigned char valid[3];
        int fe = reward_batch(&s, rows, 3, rw, valid);
        CHECK(fe == 1 && valid[0] && rw[0] == 0.25 && !valid[1] && rw[1] == 0 && valid[2] && rw[2] == 0.25,
              "reward_batch: %d %d %g %d %g %d %g", fe, valid[0], rw[0], valid[1], rw[1], valid[2], rw[2]);
    }

    /* max_error_rate and abort */
    grade_result batch[100 * 4];
    for (int i = 0; i < 100; i++)
        for (int g = 0; g < 4; g++) batch[i * 4 + g] = ok(1);
    s.max_error_rate = 0.05;
    for (int i = 0; i < 5; i++) batch[i * 4 + 2] = (grade_result){.status = GRADE_ERROR, .kind = GRADE_KIND_CRASH};
    CHECK(reward_check_errors(&s, batch, 100, 0, err, sizeof err) == 0, "5%% errors must pass: %s", err);
    batch[50 * 4 + 2] = (grade_result){.status = GRADE_ERROR, .kind = GRADE_KIND_CRASH};
    CHECK(reward_check_errors(&s, batch, 100, 0, err, sizeof err) == -1 &&
              strstr(err, "grader 'len_penalty' failed on 6 of 100 samples (6.0%)"),
          "6%% errors must stop: %s", err);
    CHECK(reward_check_errors(&s, batch, 1, 0, err, sizeof err) == -1, "1 of 1");
    s.max_error_rate = 1;
    CHECK(reward_check_errors(&s, batch, 100, 0, err, sizeof err) == 0, "rate 1 never stops");
    s.on_error = REWARD_ON_ERROR_ABORT;
    CHECK(reward_check_errors(&s, batch, 100, 0, err, sizeof err) == -1 && strstr(err, "'len_penalty'") &&
              strstr(err, "abort"),
          "abort: %s", err);
    s.on_error = REWARD_ON_ERROR_MASK, s.max_error_rate = 0.05;
    for (int i = 0; i < 100; i++) batch[i * 4 + 2] = ok(1);
    CHECK(reward_check_errors(&s, batch, 100, 10, err, sizeof err) == -1 && strstr(err, "reward formula"),
          "formula error rate: %s", err);
    reward_spec_free(&s);

    if (fails) {
        fprintf(stderr, "%d failures\n", fails);
        return 1;
    }
    printf("ok\n");
    return 0;
}
